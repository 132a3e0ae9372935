/**
 * infer: one model per replica, hosted in a worker thread, fed by a micro-batcher. Requests carry one
 * image tensor each (the `run` endpoint's definition: float32 1x3x224x224, shape in headers) from any number
 * of preprocess replicas; the batcher
 * groups them (maxBatchSize / maxQueueDelayMs / maxQueueSize from graph.config.ts) and every caller gets
 * its own row of logits back. A full queue answers QUEUE_FULL (429) at once; a request whose deadline
 * passed while queued is dropped before compute (DEADLINE_EXCEEDED). If the model worker dies, the replica
 * leaves its queue group and exits (ctx.fail) so that it is replaced, instead of failing every request.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { trace, type SpanContext } from "@opentelemetry/api";
import client from "prom-client";
import { GraphError, IMAGE_TENSOR_SHAPE, InferInfoEndpoint, InferLabels, InferRun, encodeFloat32, firstNonFinite, formatShape } from "../../../subjects/index.ts";
import {
  ATTR_MESSAGING_DESTINATION_NAME, ATTR_MESSAGING_OPERATION_TYPE, ATTR_MESSAGING_SYSTEM_NAME, BATCHING_DEFAULTS, MESSAGING_SYSTEM_NATS, MS_BUCKETS,
  createBatcher, recordSpanError, registry, runNode, startBatchSpan,
} from "../../../runtime/index.ts";
import { ensureGeneratedModel } from "./model-gen.ts";
import { createModelHost } from "./model-host.ts";
import Params from "./params.ts";

interface Item {
  /** The request's tensor bytes, checked but not copied (msg.data views are never reused by nats.js). */
  input: Uint8Array;
  enqueuedAt: number;
  spanContext: SpanContext | undefined;
}
interface RowResult {
  row: Float32Array;
  batchSize: number;
  queueWaitMs: number;
  computeMs: number;
  /** Span of the forward pass this row came from (invalid when tracing is off). */
  batchSpan: SpanContext;
}

const batchSize = new client.Histogram({ name: "sg_batch_size", help: "Requests per forward pass.", labelNames: ["node"] as const, buckets: [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128], registers: [registry] });
const queueWait = new client.Histogram({ name: "sg_batch_queue_wait_ms", help: "Time a request waited in the batch queue before its forward pass.", labelNames: ["node"] as const, buckets: MS_BUCKETS, registers: [registry] });
const computeTime = new client.Histogram({ name: "sg_model_compute_ms", help: "Model forward-pass time per batch.", labelNames: ["node", "execution_provider"] as const, buckets: MS_BUCKETS, registers: [registry] });
const queueDepth = new client.Gauge({ name: "sg_batch_queue_depth", help: "Requests waiting in the batch queue.", labelNames: ["node"] as const, registers: [registry] });

const REPO_ROOT = resolve(import.meta.dirname, "../../..");

function loadLabels(file: string, n: number): string[] {
  try {
    const labels = JSON.parse(readFileSync(file, "utf8")) as unknown;
    if (Array.isArray(labels) && labels.length === n && labels.every((l) => typeof l === "string")) return labels as string[];
  } catch {
    // fall through to generic names
  }
  return Array.from({ length: n }, (_, i) => `class_${i}`);
}

let batchesRun = 0;
let itemsRun = 0;
const recentSizes: number[] = [];

let statsExtra: () => Record<string, unknown> = () => ({});

await runNode(async (ctx) => {
  const { MODEL: modelParam, EXECUTION_PROVIDER: ep } = ctx.params;
  const modelPath = modelParam
    ? (isAbsolute(modelParam) ? modelParam : resolve(ctx.graph.root, modelParam))
    : await ensureGeneratedModel(ctx.launch.cacheDir ?? resolve(REPO_ROOT, ".cache/models"));
  const t0 = performance.now();
  const host = await createModelHost({
    modelPath,
    executionProvider: ep,
    // 0 means every available core: ORT's own default counts physical cores, one thread on a 2-vCPU VM.
    intraOpNumThreads: ctx.params.INTRA_OP_THREADS || availableParallelism(),
    allowSpinning: ctx.params.ALLOW_SPINNING,
    log: (msg, attrs) => ctx.log.info(msg, attrs),
    onBroken: (reason) => ctx.fail(reason),
  });
  const rowShape = InferRun.request.shape.slice(1);
  if (formatShape(host.inputShape) !== formatShape(rowShape as number[])) {
    await host.close();
    throw new Error(`model ${modelPath} takes input rows of shape ${formatShape(host.inputShape)}; the ${InferRun.name} endpoint carries ${formatShape(IMAGE_TENSOR_SHAPE)}`);
  }
  ctx.log.info("model loaded", { model: modelPath, execution_provider: host.executionProvider, input: formatShape(host.inputShape), outputs: host.outputSize, ms: Math.round(performance.now() - t0) });
  ctx.metadata.execution_provider = host.executionProvider;
  ctx.metadata.model = modelPath;
  const labels = loadLabels(resolve(REPO_ROOT, "data/imagenet-labels.json"), host.outputSize);
  const rowElems = host.inputShape.reduce((a, b) => a * b, 1);
  const b = ctx.node.batching ?? BATCHING_DEFAULTS;
  const runSubject = ctx.subjectOf(ctx.node.name, InferRun.name);

  const batcher = createBatcher<Item, RowResult>({
    ...b,
    run: async (items) => {
      const dispatchedAt = Date.now();
      // One span per forward pass, in its own trace, linked to every member request (OTel batch receive pattern).
      const span = startBatchSpan(`process ${runSubject} (batch)`, items.map((it) => it.spanContext), {
        [ATTR_MESSAGING_SYSTEM_NAME]: MESSAGING_SYSTEM_NATS, [ATTR_MESSAGING_OPERATION_TYPE]: "process",
        [ATTR_MESSAGING_DESTINATION_NAME]: runSubject,
        "sg.batch.size": items.length, "sg.batch.max_size": b.maxBatchSize, "sg.batch.fill": items.length / b.maxBatchSize,
        "sg.execution_provider": host.executionProvider,
      });
      const batchSpan = span.spanContext();
      try {
        const input = new Float32Array(items.length * rowElems);
        const inputBytes = new Uint8Array(input.buffer);
        items.forEach((it, i) => inputBytes.set(it.input, i * rowElems * 4));
        const { output, computeMs } = await host.run(input, items.length);
        if (span.isRecording()) {
          const maxWait = Math.max(...items.map((it) => dispatchedAt - it.enqueuedAt));
          span.setAttributes({ "sg.batch.compute_ms": computeMs, "sg.batch.queue_wait_max_ms": maxWait });
        }
        return items.map((it, i) => ({
          row: output.slice(i * host.outputSize, (i + 1) * host.outputSize),
          batchSize: items.length, queueWaitMs: dispatchedAt - it.enqueuedAt, computeMs, batchSpan,
        }));
      } catch (err) {
        recordSpanError(span, err);
        throw err;
      } finally {
        span.end();
      }
    },
    onBatch: (info) => {
      batchesRun++;
      itemsRun += info.size;
      recentSizes.push(info.size);
      if (recentSizes.length > 512) recentSizes.shift();
      batchSize.labels(ctx.node.name).observe(info.size);
      for (const w of info.queueWaitMs) queueWait.labels(ctx.node.name).observe(w);
      computeTime.labels(ctx.node.name, host.executionProvider).observe(info.computeMs);
    },
  });
  const depthTimer = setInterval(() => queueDepth.labels(ctx.node.name).set(batcher.queueDepth()), 500);
  depthTimer.unref();

  ctx.serve(InferRun, async ({ data }, req) => {
    const r = await batcher.enqueue(
      { input: data, enqueuedAt: Date.now(), spanContext: req.span.spanContext() },
      { deadlineEpochMs: req.deadlineEpochMs, signal: req.signal },
    );
    if (req.span.isRecording()) {
      // Per request: its queue wait and its share of the forward pass, and a link to the batch span.
      req.span.setAttributes({ "sg.batch.size": r.batchSize, "sg.batch.queue_wait_ms": r.queueWaitMs, "sg.batch.compute_ms": r.computeMs, "sg.batch.share_ms": r.computeMs / r.batchSize });
      if (trace.isSpanContextValid(r.batchSpan)) req.span.addLink({ context: r.batchSpan });
    }
    const logits = encodeFloat32(r.row);
    if (firstNonFinite(logits) >= 0) throw new GraphError("MODEL_ERROR", "the model produced a non-finite logit for this input");
    return { data: logits, shape: [host.outputSize] };
  });
  ctx.serve(InferLabels, () => labels);
  ctx.serve(InferInfoEndpoint, () => ({
    model: modelPath, execution_provider: host.executionProvider, input_shape: [...host.inputShape], output_size: host.outputSize,
    max_batch_size: b.maxBatchSize, max_queue_delay_ms: b.maxQueueDelayMs, max_queue_size: b.maxQueueSize,
  }));
  ctx.afterStop(async () => {
    clearInterval(depthTimer);
    await batcher.stop();
    await host.close();
  });
  statsExtra = () => ({
    execution_provider: host.executionProvider, batches: batchesRun, batched_requests: itemsRun, queue_depth: batcher.queueDepth(),
    max_batch_size: b.maxBatchSize,
    avg_batch_size: recentSizes.length ? recentSizes.reduce((a, c) => a + c, 0) / recentSizes.length : 0,
    batch_fill: recentSizes.length ? recentSizes.reduce((a, c) => a + c, 0) / recentSizes.length / b.maxBatchSize : 0,
  });
}, { params: Params, statsData: () => statsExtra() });

