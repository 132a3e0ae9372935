/**
 * infer's batching knobs for the execution provider it got, chosen once at start-up. graph.config.ts may set any
 * of them (`batching`); the ones it leaves out come from here:
 *
 * - CPU (BATCHING_DEFAULTS): maxBatchSize 32, maxQueueDelayMs 0, one batch at a time. A CPU forward pass costs
 *   about the same per image at any batch size (~7 ms for ResNet18 on 2 cores), so waiting to fill a batch only
 *   adds latency; requests that arrive during a pass form the next batch.
 * - A GPU (cuda, webgpu): maxBatchSize 64, maxQueueDelayMs 2, two batches in flight. A GPU pass costs little more
 *   for 64 images than for 1, so a few ms of waiting buys a much bigger batch, and with two batches in flight one
 *   is being filled (and copied in) while the other computes.
 */
import { BATCHING_DEFAULTS, type ResolvedNode } from "../../../runtime/index.ts";
import type { ExecutionProvider } from "./providers.ts";

export type BatchingKnobs = NonNullable<ResolvedNode["batching"]>;

export const GPU_BATCHING: BatchingKnobs = Object.freeze({
  maxBatchSize: 64,
  maxQueueDelayMs: 2,
  maxQueueSize: 256,
  maxConcurrentBatches: 2,
});

/** The defaults of `provider` under what graph.config.ts declares. */
export function batchingFor(
  provider: ExecutionProvider,
  declared: Readonly<Partial<BatchingKnobs>> = {},
): BatchingKnobs {
  const defaults = provider === "cpu" ? BATCHING_DEFAULTS : GPU_BATCHING;
  const b = { ...defaults, ...declared };
  // A declared queue smaller than the provider's default batch bounds the batch (config validation checks the
  // pair only when both are declared).
  if (declared.maxBatchSize === undefined && b.maxBatchSize > b.maxQueueSize) b.maxBatchSize = b.maxQueueSize;
  return Object.freeze(b);
}
