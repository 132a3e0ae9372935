/**
 * The `data` of a replica's $SRV.STATS answer (ADR-32 leaves it to the service), defined once: what servegraph's
 * replicas report and what `servegraph status`, the autoscaler and the dashboard read. Writers: the service wrapper
 * (in-flight figures, each endpoint's latency), a batching node (`ctx.serveBatch`, or a batcher of its own like
 * infer's) the batch figures, infer its execution provider, ab-router its routing decisions. Readers go through
 * {@link readStatsData}: a field of the wrong type reads as absent, never as a crash.
 */
import { z } from "zod";

const count = z.number().int().nonnegative();
const ms = z.number().nonnegative();

/** A batching node's figures (the same on every endpoint of the replica). */
export const BatchStatsData = z.object({
  batches: count.describe("Batches run since start."),
  batched_requests: count.describe("Requests in those batches."),
  /** Batches the averages below are over (the most recent ones, at most a few hundred). */
  recent_batches: count,
  queue_depth: count.describe("Requests waiting in the batch queue now."),
  avg_batch_size: z.number().nonnegative().describe("Mean size of the recent batches."),
  batch_fill: z.number().min(0).max(1).describe("avg_batch_size / max_batch_size."),
  max_batch_size: count,
  max_queue_delay_ms: ms,
  max_concurrent_batches: count,
});
export type BatchStatsData = z.infer<typeof BatchStatsData>;

export const ProviderFallback = z.object({ provider: z.string(), reason: z.string() });

export const StatsData = z.object({
  // every replica (runtime/service.ts)
  in_flight: count,
  max_in_flight: count,
  /** This endpoint's latency over its recent requests. */
  p50_ms: ms.nullable(),
  p99_ms: ms.nullable(),
  ...BatchStatsData.shape,
  // infer
  execution_provider: z.string(),
  /** What a GPU provider runs on, "software: lavapipe (...)" or "hardware: /dev/nvidia0"; absent on the CPU. */
  adapter: z.string(),
  provider_fallbacks: z.array(ProviderFallback),
  inputs_by_dtype: z.record(z.string(), count),
  batch_slots: count,
  // ab-router: its decisions by variant, counted where they are made (the A/B split)
  ab_decisions: z.record(z.string(), count),
});
export type StatsData = Partial<z.infer<typeof StatsData>>;

/** Every field optional, and one of the wrong type dropped alone. */
const Lenient = z.object(
  Object.fromEntries(
    Object.entries(StatsData.shape).map(([k, v]) => [k, (v as z.ZodType).optional().catch(undefined)]),
  ),
);

/** A replica's stats `data` as the contract types it (unknown fields kept out, malformed ones absent). */
export function readStatsData(data: unknown): StatsData {
  const r = Lenient.safeParse(data ?? {});
  if (!r.success) return {};
  return Object.fromEntries(Object.entries(r.data).filter(([, v]) => v !== undefined)) as StatsData;
}
