/**
 * The batch metrics of a batching node, one definition for every node that batches (infer's own batcher, and any
 * node's `ctx.serveBatch`): batch sizes, queue wait, and gauges of the queue and the batch fill read at scrape
 * time. Autoscaling (queueDepth, batchFill) and the alert rules read these names.
 */
import client from "prom-client";
import type { BatchStatsData } from "../subjects/stats.ts";
import { registry, SECONDS_BUCKETS } from "./metrics.ts";

/** What the batch gauges read at scrape time, once the node's batcher exists. */
export interface BatchGaugeSource {
  node: string;
  queueDepth: () => number;
  maxQueueSize: number;
  /** Mean batch size of the recent batches over the max batch size, 0..1. */
  fill: () => number;
}

export interface BatchMetrics {
  size: client.Histogram<"node">;
  queueWait: client.Histogram<"node">;
  /** Points the gauges at this process's batcher (one batching endpoint per replica is what they report). */
  report(s: BatchGaugeSource): void;
}

let metrics: BatchMetrics | undefined;

/**
 * The batch metrics, registered on first use: a process that never batches exports none of them (its /metrics
 * lists what it measures, nothing it cannot).
 */
export function batchMetrics(): BatchMetrics {
  if (metrics) return metrics;
  let source: BatchGaugeSource | undefined;
  const size = new client.Histogram({
    name: "sg_batch_size",
    help: "Requests per forward pass.",
    labelNames: ["node"] as const,
    buckets: [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128],
    registers: [registry],
  });
  const queueWait = new client.Histogram({
    name: "sg_batch_queue_wait_seconds",
    help: "Time a request waited in the batch queue before its forward pass.",
    labelNames: ["node"] as const,
    buckets: SECONDS_BUCKETS,
    registers: [registry],
  });
  new client.Gauge({
    name: "sg_batch_queue_depth",
    help: "Requests waiting in the batch queue now.",
    labelNames: ["node"] as const,
    registers: [registry],
    collect() {
      if (source) this.labels(source.node).set(source.queueDepth());
    },
  });
  new client.Gauge({
    name: "sg_batch_queue_limit",
    help: "Requests the batch queue holds (maxQueueSize); one more is answered QUEUE_FULL.",
    labelNames: ["node"] as const,
    registers: [registry],
    collect() {
      if (source) this.labels(source.node).set(source.maxQueueSize);
    },
  });
  new client.Gauge({
    name: "sg_batch_fill_ratio",
    help: "Mean batch size of the recent forward passes over the max batch size, 0..1 (0 before the first): the batch fill of `servegraph status`.",
    labelNames: ["node"] as const,
    registers: [registry],
    collect() {
      if (source) this.labels(source.node).set(source.fill());
    },
  });
  metrics = {
    size,
    queueWait,
    report: (s) => {
      source = s;
    },
  };
  return metrics;
}

/** Sizes of the last 512 batches: their mean is the batch fill of $SRV.STATS and sg_batch_fill_ratio. */
export function recentBatchSizes(limit = 512): { push(size: number): void; mean(): number; count(): number } {
  const sizes: number[] = [];
  return {
    push(size) {
      sizes.push(size);
      if (sizes.length > limit) sizes.shift();
    },
    mean: () => (sizes.length ? sizes.reduce((a, c) => a + c, 0) / sizes.length : 0),
    count: () => sizes.length,
  };
}

/** What a batching node counts of its batches: the metrics, and its figures for $SRV.STATS and the gauges. */
export interface BatchTally {
  /** One dispatched batch (the batcher's onBatch). */
  record(info: { size: number; queueWaitMs: readonly number[] }): void;
  /** Mean recent batch size over the max batch size, 0..1. */
  fill(): number;
  /** The batch figures of $SRV.STATS (subjects/stats.ts), with the queue's depth now. */
  stats(
    queueDepth: number,
    knobs: { maxBatchSize: number; maxQueueDelayMs: number; maxConcurrentBatches: number },
  ): BatchStatsData;
}

export function createBatchTally(node: string, maxBatchSize: number): BatchTally {
  const m = batchMetrics();
  const sizeOf = m.size.labels(node);
  const waitOf = m.queueWait.labels(node);
  const recent = recentBatchSizes();
  let batches = 0;
  let batched = 0;
  const fill = (): number => recent.mean() / maxBatchSize;
  return {
    record(info) {
      batches++;
      batched += info.size;
      recent.push(info.size);
      sizeOf.observe(info.size);
      for (const w of info.queueWaitMs) waitOf.observe(w / 1000);
    },
    fill,
    stats: (queueDepth, k) => ({
      batches,
      batched_requests: batched,
      recent_batches: recent.count(),
      queue_depth: queueDepth,
      avg_batch_size: recent.mean(),
      batch_fill: fill(),
      max_batch_size: k.maxBatchSize,
      max_queue_delay_ms: k.maxQueueDelayMs,
      max_concurrent_batches: k.maxConcurrentBatches,
    }),
  };
}
