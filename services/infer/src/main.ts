/**
 * infer: one model per replica, hosted in a worker thread, fed by a micro-batcher. Requests carry one
 * image tensor each (raw float32, shape in headers) from any number of preprocess replicas; the batcher
 * groups them (maxBatchSize / maxQueueDelayMs / maxQueueSize from graph.config.ts) and every caller gets
 * its own row of logits back. A full queue answers QUEUE_FULL (429) at once; a request whose deadline
 * passed while queued is dropped before compute (DEADLINE_EXCEEDED).
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { isAbsolute, resolve } from "node:path";
import { trace, type SpanContext } from "@opentelemetry/api";
import client from "prom-client";
import { Endpoints, GraphError, Headers, TensorDtype, checkFloat32, encodeFloat32, formatShape, parseShape, type InferInfo } from "../../../subjects/index.ts";
import { binaryReply, runNode } from "../../../runtime/index.ts";
import { recordSpanError, startBatchSpan } from "../../../runtime/tracing.ts";
import { createBatcher } from "../../../runtime/batcher.ts";
import { MS_BUCKETS, registry } from "../../../runtime/metrics.ts";
import { ATTR_MESSAGING_DESTINATION_NAME, ATTR_MESSAGING_OPERATION_TYPE, ATTR_MESSAGING_SYSTEM_NAME, MESSAGING_SYSTEM_NATS } from "../../../runtime/semconv.ts";
import { ensureGeneratedModel } from "./model-gen.ts";
import { createModelHost } from "./model-host.ts";

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
  const modelParam = ctx.param("MODEL");
  const modelPath = modelParam
    ? (isAbsolute(modelParam) ? modelParam : resolve(ctx.graph.root, modelParam))
    : await ensureGeneratedModel(process.env.SG_MODEL_CACHE_DIR || resolve(REPO_ROOT, ".cache/models"));
  const ep = ctx.param("EXECUTION_PROVIDER");
  if (ep !== "auto" && ep !== "cuda" && ep !== "cpu") throw new Error(`EXECUTION_PROVIDER must be auto, cuda or cpu, got ${ep}`);
  const t0 = performance.now();
  const host = await createModelHost({
    modelPath,
    executionProvider: ep,
    // 0 means every available core: ORT's own default counts physical cores, one thread on a 2-vCPU VM.
    intraOpNumThreads: ctx.paramNumber("INTRA_OP_THREADS") || availableParallelism(),
    allowSpinning: ctx.paramBool("ALLOW_SPINNING"),
    log: (msg, attrs) => ctx.log.info(msg, attrs),
  });
  ctx.log.info("model loaded", { model: modelPath, execution_provider: host.executionProvider, input: formatShape(host.inputShape), outputs: host.outputSize, ms: Math.round(performance.now() - t0) });
  ctx.metadata.execution_provider = host.executionProvider;
  ctx.metadata.model = modelPath;
  const labels = loadLabels(resolve(REPO_ROOT, "data/imagenet-labels.json"), host.outputSize);
  const rowElems = host.inputShape.reduce((a, b) => a * b, 1);
  const b = ctx.node.batching ?? { maxBatchSize: 32, maxQueueDelayMs: 4, maxQueueSize: 256, maxConcurrentBatches: 1 };
  const runSubject = ctx.subjectOf(ctx.node.name, Endpoints.infer.run);

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

  ctx.service.addEndpoint(Endpoints.infer.run, {
    subject: runSubject,
    metadata: { input_shape: formatShape(host.inputShape), dtype: TensorDtype.float32 },
    handler: async (req) => {
      const shape = parseShape(req.header(Headers.Shape));
      const rowShape = shape.length === host.inputShape.length + 1 && shape[0] === 1 ? shape.slice(1) : shape;
      if (formatShape(rowShape) !== formatShape(host.inputShape)) {
        throw new GraphError("BAD_REQUEST", `expected one tensor of shape ${formatShape(host.inputShape)}, got ${formatShape(shape)}`);
      }
      const input = checkFloat32(req.data, req.header(Headers.Dtype), rowShape);
      const r = await batcher.enqueue(
        { input, enqueuedAt: Date.now(), spanContext: req.span.spanContext() },
        { deadlineEpochMs: req.deadlineEpochMs, signal: req.signal },
      );
      if (req.span.isRecording()) {
        // Per request: its queue wait and its share of the forward pass, and a link to the batch span.
        req.span.setAttributes({ "sg.batch.size": r.batchSize, "sg.batch.queue_wait_ms": r.queueWaitMs, "sg.batch.compute_ms": r.computeMs, "sg.batch.share_ms": r.computeMs / r.batchSize });
        if (trace.isSpanContextValid(r.batchSpan)) req.span.addLink({ context: r.batchSpan });
      }
      return binaryReply(encodeFloat32(r.row), { [Headers.Dtype]: TensorDtype.float32, [Headers.Shape]: String(host.outputSize) });
    },
  });
  ctx.service.addEndpoint(Endpoints.infer.labels, { subject: ctx.subjectOf(ctx.node.name, Endpoints.infer.labels), handler: () => labels });
  ctx.service.addEndpoint(Endpoints.infer.info, {
    subject: ctx.subjectOf(ctx.node.name, Endpoints.infer.info),
    handler: (): InferInfo => ({
      model: modelPath, execution_provider: host.executionProvider, input_shape: [...host.inputShape], output_size: host.outputSize,
      max_batch_size: b.maxBatchSize, max_queue_delay_ms: b.maxQueueDelayMs, max_queue_size: b.maxQueueSize,
    }),
  });
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
}, { statsData: () => statsExtra() });

