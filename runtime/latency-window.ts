/**
 * The latency window every figure of "p50/p99 now" comes from, one definition: the most recent RECENT_SAMPLES
 * durations of an endpoint (runtime/service.ts, for $SRV.STATS) or of the ingress's HTTP answers (its dashboard
 * card). An empty window has no percentiles (null), not a latency of 0 ms.
 */

/** Durations a window keeps: its most recent ones. */
export const RECENT_SAMPLES = 2048;

export interface LatencyWindow {
  record(ms: number): void;
  /** Durations in the window now (at most its size). */
  count(): number;
  /** Nearest-rank percentiles of the window; null when it is empty. */
  percentiles(): { p50_ms: number | null; p99_ms: number | null };
}

export function createLatencyWindow(size = RECENT_SAMPLES): LatencyWindow {
  const ring = new Float64Array(size);
  let n = 0;
  const at = (sorted: Float64Array, q: number): number | null =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : null;
  return {
    record(ms) {
      ring[n++ % size] = ms;
    },
    count: () => Math.min(n, size),
    percentiles() {
      const sorted = ring.slice(0, Math.min(n, size)).sort();
      return { p50_ms: at(sorted, 0.5), p99_ms: at(sorted, 0.99) };
    },
  };
}
