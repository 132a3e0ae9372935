/**
 * This ingress replica's HTTP answers, for its own card on the dashboard: how many, how many failed (status 400 and
 * up, as a node counts every error reply), the last failure, and p50/p99 of the most recent {@link RECENT} durations
 * (as runtime/service.ts keeps them for NATS endpoints). The dashboard's own requests are not counted.
 */
import type { HttpFigures } from "./live.ts";

const RECENT = 2048;

export interface HttpCounter {
  record(statusCode: number, durationMs: number, what: string): void;
  figures(): HttpFigures;
}

export function createHttpCounter(): HttpCounter {
  const recent = new Float64Array(RECENT);
  let n = 0;
  let errors = 0;
  let lastError: string | null = null;
  const pct = (sorted: Float64Array, q: number): number | null => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : null);
  return {
    record(statusCode, durationMs, what) {
      recent[n++ % RECENT] = durationMs;
      if (statusCode >= 400) {
        errors++;
        lastError = `${statusCode}:${what}`;
      }
    },
    figures() {
      const sorted = recent.slice(0, Math.min(n, RECENT)).sort();
      return { requests: n, errors, p50_ms: pct(sorted, 0.5), p99_ms: pct(sorted, 0.99), last_error: lastError };
    },
  };
}
