/**
 * The load: closed-loop HTTP levels against the ingress, one per concurrency, for each target.
 *
 * One level: `connections` HTTP/1.1 keep-alive connections (autocannon), each sending its next request as soon
 * as the previous answer arrives, until `durationS` passes or `maxRequests` answers came back, whichever is
 * first. Latency percentiles are computed here from every 2xx response time (autocannon's own histogram rounds
 * to whole milliseconds, too coarse for a 1 ms hop). Throughput is answers per second of wall time.
 *
 * Each target gets one unrecorded warm-up level (at the highest concurrency) first, then its levels in the
 * order given; an aborted signal ends the current level early and skips the rest.
 *  - chain:    GET /greeting/<name> (here)
 *  - classify: POST /classify with the raw bytes of each image in turn, the graph and the one-process composition
 *              interleaved, in passes (compare.ts)
 */
import { readdirSync, readFileSync } from "node:fs";
import { extname, join } from "node:path";
import autocannon from "autocannon";
import type { LevelBatches } from "./batches.ts";
import type { Comparison, OneProcessReport } from "./compare.ts";
import { startCpuSample, type CpuUse } from "./cpu.ts";

/** What `--target` chooses. */
export const Target = { CHAIN: "chain", CLASSIFY: "classify" } as const;
export type Target = (typeof Target)[keyof typeof Target];

/** The chain's performance goals: twice the seed's FastAPI chain (742 req/s with a persistent client). */
export const CHAIN_GOALS = { seedRps: 742, minRpsAtC16: 1484, maxP50MsAtC1: 2 } as const;

const IMAGE_TYPES: Record<string, string> = {
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".png": "image/png",
  ".webp": "image/webp",
  ".gif": "image/gif",
  ".tif": "image/tiff",
  ".tiff": "image/tiff",
};

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
  return {
    p50: percentile(s, 0.5),
    p90: percentile(s, 0.9),
    p99: percentile(s, 0.99),
    mean: sum / s.length,
    max: s[s.length - 1]!,
  };
}

export function runLevel(o: LoadLevelOptions, signal?: AbortSignal): Promise<LoadLevelResult> {
  return runLevelWithSamples(o, signal).then((r) => r.result);
}

/** {@link runLevel}, with the response time of every 2xx answer (ms, in arrival order), to merge passes. */
export function runLevelWithSamples(
  o: LoadLevelOptions,
  signal?: AbortSignal,
): Promise<{ result: LoadLevelResult; latencies: Float64Array }> {
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
    const inst = autocannon(
      {
        url: o.url,
        connections: o.connections,
        duration: o.durationS,
        timeout: o.timeoutS ?? 30,
        requests: [request],
      },
      (err: unknown, r: autocannon.Result) => {
        signal?.removeEventListener("abort", stop);
        if (err) return reject(err instanceof Error ? err : new Error(String(err)));
        const wallS = (performance.now() - t0) / 1000;
        const statusCodes: Record<string, number> = {};
        for (const [code, v] of Object.entries(r.statusCodeStats ?? {})) statusCodes[code] = v.count ?? 0;
        const latencies = lat.subarray(0, ok);
        resolve({
          result: {
            concurrency: o.connections,
            durationS: wallS,
            ok,
            rps: ok / wallS,
            latencyMs: summarize(latencies),
            non2xx: r.non2xx,
            errors: r.errors,
            timeouts: r.timeouts,
            statusCodes,
          },
          latencies,
        });
      },
    );
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

export interface MeasuredLevel extends LoadLevelResult {
  /** CPU use during the level (Linux): whole machine, graph + bench, and other processes. */
  cpu: CpuUse | null;
}

/** A level of a system measured in passes (compare.ts): the passes merged. */
export interface PassedLevel extends MeasuredLevel {
  /** CPU milliseconds per answer of the processes under test (the graph's, or the one process), the bench excluded. */
  cpuMsPerImage: number | null;
  /** The rate of each pass, in order. */
  passRps: number[];
}

export interface ClassifyLevel extends PassedLevel {
  batches: LevelBatches | null;
  /** End-to-end images/s over the stage limit for this level's batch mix (set by the stage measurement). */
  fractionOfLimit: number | null;
  limitImagesPerS: number | null;
}

export interface ChainReport {
  route: string;
  levels: MeasuredLevel[];
  goals: {
    minRpsAtC16: number;
    maxP50MsAtC1: number;
    seedRps: number;
    rpsAtC16: number | null;
    p50MsAtC1: number | null;
    rpsMet: boolean | null;
    p50Met: boolean | null;
  };
}

export interface ClassifyReport {
  route: string;
  imagesDir: string;
  images: string[];
  maxBatchSize: number | null;
  /** How the levels ran: passes, seconds per pass, the order. */
  schedule: string;
  levels: ClassifyLevel[];
  /** The same parts in one process (one-process/server.ts), measured at the same levels; null when it could not run. */
  oneProcess: OneProcessReport | null;
  /** The graph as a fraction of the one-process composition: the headline. */
  comparison: Comparison | null;
}

export interface LoadPlan {
  ingressUrl: string;
  concurrency: readonly number[];
  durationS: number;
  warmupS: number;
  maxRequests: number;
  signal: AbortSignal;
  /** The graph's processes, sampled with the bench's own for each level's CPU split. */
  graphPids: () => Promise<number[]>;
  progress: (line: string) => void;
}

export interface ImageSet {
  /** File names, sorted. */
  names: string[];
  files: string[];
  bodies: RequestBody[];
}

/** The images of `dir` (by extension), sorted by name. */
export function loadImages(dir: string): ImageSet {
  const names = readdirSync(dir)
    .filter((f) => IMAGE_TYPES[extname(f).toLowerCase()])
    .sort();
  const files = names.map((f) => join(dir, f));
  return {
    names,
    files,
    bodies: files.map((f) => ({ body: readFileSync(f), contentType: IMAGE_TYPES[extname(f).toLowerCase()]! })),
  };
}

async function measuredLevel(plan: LoadPlan, o: LoadLevelOptions): Promise<MeasuredLevel> {
  const sample = startCpuSample(await plan.graphPids());
  const l = await runLevel(o, plan.signal);
  return { ...l, cpu: sample.stop() };
}

async function warmUp(
  plan: LoadPlan,
  req: Pick<LoadLevelOptions, "url" | "method" | "path" | "bodies">,
): Promise<void> {
  if (plan.warmupS > 0)
    await runLevel(
      { ...req, connections: Math.max(...plan.concurrency), durationS: plan.warmupS, maxRequests: plan.maxRequests },
      plan.signal,
    );
}

export async function runChain(plan: LoadPlan): Promise<ChainReport> {
  const req = { url: plan.ingressUrl, method: "GET" as const, path: "/greeting/bench" };
  await warmUp(plan, req);
  const levels: MeasuredLevel[] = [];
  for (const c of plan.concurrency) {
    if (plan.signal.aborted) break;
    plan.progress(`chain C=${c} for ${plan.durationS} s`);
    levels.push(
      await measuredLevel(plan, { ...req, connections: c, durationS: plan.durationS, maxRequests: plan.maxRequests }),
    );
  }
  const at = (c: number) => levels.find((l) => l.concurrency === c);
  const rpsAtC16 = at(16)?.rps ?? null;
  const p50MsAtC1 = at(1)?.latencyMs?.p50 ?? null;
  return {
    route: "GET /greeting/<name>",
    levels,
    goals: {
      ...CHAIN_GOALS,
      rpsAtC16,
      p50MsAtC1,
      rpsMet: rpsAtC16 === null ? null : rpsAtC16 >= CHAIN_GOALS.minRpsAtC16,
      p50Met: p50MsAtC1 === null ? null : p50MsAtC1 < CHAIN_GOALS.maxP50MsAtC1,
    },
  };
}
