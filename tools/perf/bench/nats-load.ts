/**
 * Closed-loop load over NATS request-reply, in the bench process: `concurrency` lanes, each sending its next
 * request as soon as the previous answer (or error) came back, until `durationS` passes, `maxRequests` were
 * sent or the signal aborts. The HTTP levels' counterpart (load.ts) for a node called straight over NATS.
 *
 * Latency is the time from the call to its settled promise (`performance.now()`), answers only; throughput is
 * answers per second of wall time. Failures are counted by their GraphError code (anything else: its name).
 */
import { GraphError } from "../../../subjects/errors.ts";
import { summarize, type LatencySummary } from "./load.ts";

export interface NatsLevelOptions {
  concurrency: number;
  durationS: number;
  maxRequests: number;
  /** One request: resolves with its answer, rejects on failure. `i` counts the requests sent, from 0. */
  send: (i: number) => Promise<unknown>;
  signal?: AbortSignal | undefined;
}

export interface NatsLevelResult {
  concurrency: number;
  /** Wall time of the level, seconds. */
  durationS: number;
  /** Requests answered without an error. */
  ok: number;
  /** Answers per second. */
  rps: number;
  latencyMs: LatencySummary | null;
  errors: number;
  /** Failures by code. */
  errorCodes: Record<string, number>;
}

const codeOf = (err: unknown): string =>
  err instanceof GraphError ? err.code : err instanceof Error ? err.name : "unknown";

export async function runNatsLevel(o: NatsLevelOptions): Promise<NatsLevelResult> {
  let lat = new Float64Array(1 << 14);
  let ok = 0;
  let sent = 0;
  let errors = 0;
  const errorCodes: Record<string, number> = {};
  const t0 = performance.now();
  const endAt = t0 + o.durationS * 1000;
  const lane = async (): Promise<void> => {
    while (sent < o.maxRequests && performance.now() < endAt && !o.signal?.aborted) {
      const s = performance.now();
      try {
        await o.send(sent++);
      } catch (err) {
        errors++;
        const c = codeOf(err);
        errorCodes[c] = (errorCodes[c] ?? 0) + 1;
        continue;
      }
      if (ok === lat.length) {
        const grown = new Float64Array(lat.length * 2);
        grown.set(lat);
        lat = grown;
      }
      lat[ok++] = performance.now() - s;
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, lane));
  const wallS = (performance.now() - t0) / 1000;
  return {
    concurrency: o.concurrency,
    durationS: wallS,
    ok,
    rps: ok / wallS,
    latencyMs: summarize(lat.subarray(0, ok)),
    errors,
    errorCodes,
  };
}
