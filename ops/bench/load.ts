/**
 * One closed-loop load level: `connections` HTTP/1.1 keep-alive connections (autocannon), each sending its
 * next request as soon as the previous answer arrives, until `durationS` passes or `maxRequests` answers
 * came back, whichever is first.
 *
 * Latency percentiles are computed here from every 2xx response time (autocannon's own histogram rounds to
 * whole milliseconds, too coarse for a 1 ms hop). Throughput is answers per second of wall time.
 */
import autocannon from "autocannon";

export interface RequestBody {
  body: Buffer;
  contentType: string;
}

export interface LoadLevelOptions {
  /** Origin, e.g. http://127.0.0.1:8080 */
  url: string;
  method: "GET" | "POST";
  path: string;
  /** Request bodies, used in turn (request i sends bodies[i % n]). */
  bodies?: readonly RequestBody[];
  connections: number;
  durationS: number;
  maxRequests: number;
  /** Per-request timeout (seconds) before autocannon counts an error. */
  timeoutS?: number;
}

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  max: number;
}

export interface LoadLevelResult {
  concurrency: number;
  /** Wall time of the level, seconds. */
  durationS: number;
  /** Responses with a 2xx status. */
  ok: number;
  /** 2xx responses per second. */
  rps: number;
  /** Milliseconds, 2xx responses only; null when there were none. */
  latencyMs: LatencySummary | null;
  non2xx: number;
  /** Connection errors and timeouts (no HTTP answer at all). */
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(latencies: Float64Array): LatencySummary | null {
  if (latencies.length === 0) return null;
  const s = latencies.slice().sort();
  let sum = 0;
  for (const v of s) sum += v;
  return { p50: percentile(s, 0.5), p90: percentile(s, 0.9), p99: percentile(s, 0.99), mean: sum / s.length, max: s[s.length - 1]! };
}

export function runLevel(o: LoadLevelOptions, signal?: AbortSignal): Promise<LoadLevelResult> {
  let lat = new Float64Array(1 << 16);
  let ok = 0;
  let answered = 0;
  const bodies = o.bodies ?? [];
  let next = 0;
  const request: autocannon.Request = { method: o.method, path: o.path };
  if (bodies.length) {
    request.setupRequest = (req) => {
      const b = bodies[next++ % bodies.length]!;
      return { ...req, body: b.body, headers: { ...req.headers, "content-type": b.contentType } };
    };
  }
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const inst = autocannon({
      url: o.url,
      connections: o.connections,
      duration: o.durationS,
      timeout: o.timeoutS ?? 30,
      requests: [request],
    }, (err: unknown, r: autocannon.Result) => {
      signal?.removeEventListener("abort", stop);
      if (err) return reject(err instanceof Error ? err : new Error(String(err)));
      const wallS = (performance.now() - t0) / 1000;
      const statusCodes: Record<string, number> = {};
      for (const [code, v] of Object.entries(r.statusCodeStats ?? {})) statusCodes[code] = v.count ?? 0;
      resolve({
        concurrency: o.connections,
        durationS: wallS,
        ok,
        rps: ok / wallS,
        latencyMs: summarize(lat.subarray(0, ok)),
        non2xx: r.non2xx,
        errors: r.errors,
        timeouts: r.timeouts,
        statusCodes,
      });
    });
    const stop = (): void => inst.stop();
    signal?.addEventListener("abort", stop, { once: true });
    inst.on("response", (_client, statusCode, _bytes, responseTimeMs) => {
      answered++;
      if (statusCode >= 200 && statusCode < 300) {
        if (ok === lat.length) {
          const grown = new Float64Array(lat.length * 2);
          grown.set(lat);
          lat = grown;
        }
        lat[ok++] = responseTimeMs;
      }
      if (answered === o.maxRequests) inst.stop();
    });
  });
}
