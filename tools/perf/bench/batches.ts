/**
 * What infer did during a classify level: the batch sizes it formed, from the difference of its
 * `sg_batch_size` histogram before and after the level (/metrics of every replica, found through $SRV.INFO
 * metadata `metrics_url`), or, when no /metrics answers, from the cumulative totals in $SRV.STATS (mean only).
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { BATCHING_DEFAULTS, gather, type ResolvedGraph, subjectFor } from "../../../runtime/index.ts";
import { Discovery } from "../../../subjects/names.ts";
import { addHistograms, diffHistogram, parseHistogram, type HistogramBucket, type HistogramSnapshot } from "./prom.ts";

/** One running infer replica, from its $SRV.INFO metadata. */
export interface InferReplica {
  metricsUrl?: string | undefined;
  /** The model file it loaded. */
  model?: string | undefined;
  /** The execution provider its session runs on (cpu, cuda or webgpu). */
  executionProvider?: string | undefined;
  /** Its process id (metadata `pid`), to read its CPU time from /proc. */
  pid?: number | undefined;
}

export interface LevelBatches {
  /** Forward passes during the level and the requests they held (all infer replicas). */
  count: number;
  requests: number;
  meanSize: number | null;
  /** Non-cumulative buckets of the `sg_batch_size` histogram; empty when infer's metrics were unreachable. */
  histogram: HistogramBucket[];
}

/**
 * The infer replicas and the batch limit they run with: infer's `info` endpoint when it answers, else the
 * graph's `batching` of infer (the schema's defaults when it declares none); null when the graph has no infer.
 */
export async function discoverInfer(
  nc: NatsConnection | undefined,
  graph: ResolvedGraph,
  warnings: string[],
): Promise<{ replicas: InferReplica[]; maxBatchSize: number | null }> {
  const node = graph.nodes.infer;
  let maxBatchSize: number | null = node ? (node.batching ?? BATCHING_DEFAULTS).maxBatchSize : null;
  if (!nc) return { replicas: [], maxBatchSize };
  const infos = await gather<{ metadata?: Record<string, string> }>(nc, Discovery.info("infer"), 300);
  const replicas = infos.map((i) => {
    const pid = Number(i.metadata?.pid);
    return {
      metricsUrl: i.metadata?.metrics_url,
      model: i.metadata?.model,
      executionProvider: i.metadata?.execution_provider,
      pid: Number.isInteger(pid) && pid > 0 ? pid : undefined,
    };
  });
  if (node) {
    const info = await nc.request(subjectFor(graph, "infer", "info"), "{}", { timeout: 2000 }).catch(() => undefined);
    const mbs = info ? (info.json() as { max_batch_size?: unknown }).max_batch_size : undefined;
    if (typeof mbs === "number") maxBatchSize = mbs;
  }
  if (!replicas.some((r) => r.metricsUrl))
    warnings.push("no infer replica advertises metrics_url: batch sizes from $SRV.STATS (mean only)");
  return { replicas, maxBatchSize };
}

async function scrapeBatchSizes(replicas: readonly InferReplica[]): Promise<HistogramSnapshot | undefined> {
  const snaps = await Promise.all(
    replicas
      .filter((r) => r.metricsUrl)
      .map(async (r) => {
        try {
          const res = await fetch(r.metricsUrl!, { signal: AbortSignal.timeout(3000) });
          return parseHistogram(await res.text(), "sg_batch_size");
        } catch {
          return undefined;
        }
      }),
  );
  return addHistograms(snaps.filter((s): s is HistogramSnapshot => s !== undefined));
}

/** Cumulative batches and batched requests over every replica, from $SRV.STATS. */
async function batchTotals(nc: NatsConnection): Promise<{ batches: number; requests: number } | undefined> {
  const stats = await gather<{ endpoints?: { data?: { batches?: number; batched_requests?: number } }[] }>(
    nc,
    Discovery.stats("infer"),
    300,
  );
  let batches = 0;
  let requests = 0;
  let seen = false;
  for (const s of stats) {
    const d = s.endpoints?.[0]?.data;
    if (typeof d?.batches === "number" && typeof d.batched_requests === "number") {
      batches += d.batches;
      requests += d.batched_requests;
      seen = true;
    }
  }
  return seen ? { batches, requests } : undefined;
}

/**
 * Reads infer's counters now; the function it returns reads them again and gives the batches in between
 * (null when neither /metrics nor $SRV.STATS answered).
 */
export async function startBatchCount(
  nc: NatsConnection | undefined,
  replicas: readonly InferReplica[],
): Promise<() => Promise<LevelBatches | null>> {
  const histBefore = await scrapeBatchSizes(replicas);
  const totalsBefore = !histBefore && nc ? await batchTotals(nc) : undefined;
  return async () => {
    const histAfter = await scrapeBatchSizes(replicas);
    if (histAfter) {
      const d = diffHistogram(histBefore, histAfter);
      return { count: d.count, requests: d.sum, meanSize: d.count ? d.sum / d.count : null, histogram: d.buckets };
    }
    if (!totalsBefore || !nc) return null;
    const after = await batchTotals(nc);
    if (!after) return null;
    const count = after.batches - totalsBefore.batches;
    const requests = after.requests - totalsBefore.requests;
    return { count, requests, meanSize: count > 0 ? requests / count : null, histogram: [] };
  };
}

/**
 * The batch sizes to time the model at for a level, with how often each occurred: each histogram bucket
 * stands for its upper end, capped at the batch limit (`maxBatchSize`, else the schema's default).
 */
export function batchMix(batches: LevelBatches | null, maxBatchSize: number | null): { size: number; count: number }[] {
  const cap = maxBatchSize ?? BATCHING_DEFAULTS.maxBatchSize;
  return (batches?.histogram ?? [])
    .filter((b) => b.count > 0)
    .map((b) => ({ size: Math.min(b.max === Infinity ? cap : b.max, cap), count: b.count }));
}

/** Two levels' batches together (two passes at one concurrency): counts and histogram buckets added. */
export function addBatches(a: LevelBatches | null, b: LevelBatches | null): LevelBatches | null {
  if (!a || !b) return a ?? b;
  const count = a.count + b.count;
  const requests = a.requests + b.requests;
  const histogram = a.histogram.map((x) => ({ ...x }));
  for (const y of b.histogram) {
    const x = histogram.find((h) => h.range === y.range);
    if (x) x.count += y.count;
    else histogram.push({ ...y });
  }
  histogram.sort((x, y) => x.min - y.min);
  return { count, requests, meanSize: count > 0 ? requests / count : null, histogram };
}
