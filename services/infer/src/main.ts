/**
 * infer: one model per replica, hosted in a worker thread, fed by a micro-batcher. Requests carry one
 * image tensor each (the `run` endpoint's definition: 1x3x224x224 CHW, uint8 pixels or float32 already
 * normalised, dtype and shape in headers) from any number of preprocess replicas; the batcher groups them and
 * every caller gets its own row of logits back. Each request's tensor is written straight into a batch slot
 * (uint8 pixels as they are, normalised by the model's worker thread with subjects/image-normalization.ts,
 * bit-identical to the reference; float32 copied); the slots are allocated once and reused (model-host.ts).
 *
 * The execution provider is chosen at start-up (EXECUTION_PROVIDER: auto tries CUDA, WebGPU, CPU) and reported
 * with the reasons of the ones that failed: one log line, $SRV.INFO metadata, $SRV.STATS data, the `info`
 * endpoint and `sg_model_info` in /metrics. A forced provider that cannot start fails start-up with the reason
 * (the replica exits non-zero). The batching knobs graph.config.ts leaves out are chosen for that provider
 * (./batching.ts). A full queue answers QUEUE_FULL (429) at once; a request whose deadline passed while queued
 * is dropped before compute (DEADLINE_EXCEEDED). If the model worker dies, the replica leaves its queue group
 * and exits (ctx.fail) so that it is replaced, instead of failing every request. Each answer carries `Server-Timing`
 * (subjects/server-timing.ts): the request's queue wait and its batch's forward pass, `queue` and `compute`.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { basename, isAbsolute, resolve } from "node:path";
import { trace, type SpanContext } from "@opentelemetry/api";
import client from "prom-client";
import {
  GraphError,
  Headers,
  IMAGE_TENSOR_SHAPE,
  InferInfoEndpoint,
  InferLabels,
  InferRun,
  TensorDtype,
  encodeFloat32,
  firstNonFinite,
  formatServerTiming,
  formatShape,
  type StatsData,
} from "../../../subjects/index.ts";
import {
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM_NAME,
  MESSAGING_SYSTEM_NATS,
  SECONDS_BUCKETS,
  NodeConfigError,
  createBatcher,
  recordSpanError,
  registry,
  runNode,
  startBatchSpan,
} from "../../../runtime/index.ts";
import { batchMetrics, createBatchTally } from "../../../runtime/batch-metrics.ts";
import { releaseReceived } from "../../../runtime/nats-io.ts";
import { writeBatchRow } from "./batch-input.ts";
import { batchingFor } from "./batching.ts";
import { ensureGeneratedModel, GeneratedModel } from "./model-gen.ts";
import { createModelHost } from "./model-host.ts";
import Params, { TRIVIAL_MODEL } from "./params.ts";
import { formatFallbacks } from "./providers.ts";
import { formatAdapter } from "./gpu-devices.ts";

interface Item {
  /**
   * The request's tensor bytes, checked but not copied: a view of the message's buffer, which is handed back for
   * reuse once the batch has copied it into its slot (runtime/nats-io.ts releaseReceived).
   */
  input: Uint8Array;
  dtype: TensorDtype;
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

const computeTime = new client.Histogram({
  name: "sg_model_compute_seconds",
  help: "Model forward-pass time per batch.",
  labelNames: ["node", "execution_provider"] as const,
  buckets: SECONDS_BUCKETS,
  registers: [registry],
});
// One series per replica, fixed for its lifetime: the provider, the model file's name, the providers that failed
// before it and their reasons (one line, cut short), so cardinality stays one per process.
const modelInfo = new client.Gauge({
  name: "sg_model_info",
  help: "1, labelled with the model this replica loaded, its execution provider, what a GPU provider runs on (adapter: software: ... or hardware: ...; empty on cpu), and the providers tried before it (fallbacks) with why they did not start (fallback_reasons).",
  labelNames: ["node", "provider", "adapter", "model", "fallbacks", "fallback_reasons"] as const,
  registers: [registry],
});
const MAX_REASONS_LABEL_CHARS = 200;

const REPO_ROOT = resolve(import.meta.dirname, "../../..");

function loadLabels(file: string, n: number): string[] {
  try {
    const labels = JSON.parse(readFileSync(file, "utf8")) as unknown;
    if (Array.isArray(labels) && labels.length === n && labels.every((l) => typeof l === "string"))
      return labels as string[];
  } catch {
    // fall through to generic names
  }
  return Array.from({ length: n }, (_, i) => `class_${i}`);
}

/** Requests by the dtype they arrived in (preprocess sends uint8; float32 is for direct callers). */
const inputsByDtype: Record<TensorDtype, number> = { uint8: 0, float32: 0 };

let statsExtra: () => StatsData = () => ({});

await runNode(
  async (ctx) => {
    const { MODEL: modelParam, EXECUTION_PROVIDER: ep } = ctx.params;
    // The project's own cache (beside its graph.config.ts), unless the launch names one.
    const cacheDir = ctx.launch.cacheDir ?? resolve(ctx.graph.root, ".cache/models");
    const modelPath =
      modelParam === ""
        ? await ensureGeneratedModel(cacheDir)
        : modelParam === TRIVIAL_MODEL
          ? await ensureGeneratedModel(cacheDir, 0, GeneratedModel.trivial)
          : isAbsolute(modelParam)
            ? modelParam
            : resolve(ctx.graph.root, modelParam);
    const t0 = performance.now();
    const host = await createModelHost({
      modelPath,
      executionProvider: ep,
      // 0 means every available core: ORT's own default counts physical cores, one thread on a 2-vCPU VM.
      intraOpNumThreads: ctx.params.INTRA_OP_THREADS || availableParallelism(),
      allowSpinning: ctx.params.ALLOW_SPINNING,
      log: (msg, attrs) => ctx.log.info(msg, attrs),
      onBroken: (reason) => ctx.fail(reason),
    }).catch((err: unknown) => {
      // No session could be created: a forced provider that does not load (never a quiet run on CPU instead), or a
      // MODEL that does not load anywhere. Retrying cannot help: the replica exits EXIT_CONFIG, and its last stderr
      // line says why ("cannot start: execution provider webgpu did not start: <reason>").
      const attempts =
        err instanceof GraphError ? (err.details as { attempts?: unknown } | undefined)?.attempts : undefined;
      throw attempts ? new NodeConfigError(err instanceof Error ? err.message : String(err)) : err;
    });
    const rowShape = InferRun.request.shape.slice(1);
    if (formatShape(host.inputShape) !== formatShape(rowShape as number[])) {
      await host.close();
      throw new Error(
        `model ${modelPath} takes input rows of shape ${formatShape(host.inputShape)}; the ${InferRun.name} endpoint carries ${formatShape(IMAGE_TENSOR_SHAPE)}`,
      );
    }
    const b = batchingFor(host.executionProvider, ctx.node.batchingDeclared);
    const rowElems = host.inputShape.reduce((a, b) => a * b, 1);
    // Every batch slot is allocated now; a batch never allocates its input.
    host.reserveSlots(b.maxBatchSize, b.maxConcurrentBatches);
    const software = host.adapter?.kind === "software";
    if (host.executionProvider !== "cpu") {
      // A GPU provider prepares its kernels per input shape on first use: do it for a full batch now, not for a
      // request. (On the CPU a full batch of ResNet18 is ~0.2 s of work for nothing; on a software adapter, a minute:
      // one image compiles its shaders there.)
      await host.runBatch(software ? 1 : b.maxBatchSize, (x) => x.fill(0));
    }
    const adapter = formatAdapter(host.adapter);
    const fallbacks = formatFallbacks(host.fallbacks);
    ctx.log.info("model loaded", {
      model: modelPath,
      execution_provider: host.executionProvider,
      requested: ep,
      ...(fallbacks ? { provider_fallbacks: fallbacks } : {}),
      ...(adapter ? { adapter } : {}),
      input: formatShape(host.inputShape),
      outputs: host.outputSize,
      max_batch_size: b.maxBatchSize,
      max_queue_delay_ms: b.maxQueueDelayMs,
      max_concurrent_batches: b.maxConcurrentBatches,
      ms: Math.round(performance.now() - t0),
    });
    ctx.metadata.execution_provider = host.executionProvider;
    ctx.metadata.provider_fallbacks = fallbacks;
    if (adapter) ctx.metadata.adapter = adapter;
    if (software)
      ctx.log.warn(
        `${host.executionProvider} runs on a software adapter (${host.adapter!.name}): the model computes on the CPU through Vulkan, slower than EXECUTION_PROVIDER=cpu; its speed figures say nothing of a GPU`,
      );
    ctx.metadata.model = modelPath;
    modelInfo
      .labels({
        node: ctx.node.name,
        provider: host.executionProvider,
        adapter,
        model: modelParam === TRIVIAL_MODEL ? TRIVIAL_MODEL : basename(modelPath),
        fallbacks: host.fallbacks.map((f) => f.provider).join(","),
        fallback_reasons:
          fallbacks.length > MAX_REASONS_LABEL_CHARS ? `${fallbacks.slice(0, MAX_REASONS_LABEL_CHARS)}...` : fallbacks,
      })
      .set(1);
    const labels = loadLabels(resolve(REPO_ROOT, "data/imagenet-labels.json"), host.outputSize);
    const runSubject = ctx.subjectOf(ctx.node.name, InferRun.name);

    // prom-client children resolved once: a labels() lookup per observation is measurable per request.
    // Batch sizes, queue waits and the batch figures of $SRV.STATS, counted as every batching node counts them.
    const tally = createBatchTally(ctx.node.name, b.maxBatchSize);
    const computeTimeOf = computeTime.labels(ctx.node.name, host.executionProvider);
    const batcher = createBatcher<Item, RowResult>({
      ...b,
      run: async (items) => {
        const dispatchedAt = Date.now();
        // One span per forward pass, in its own trace, linked to every member request (OTel batch receive pattern).
        const span = startBatchSpan(
          `process ${runSubject} (batch)`,
          items.map((it) => it.spanContext),
          {
            [ATTR_MESSAGING_SYSTEM_NAME]: MESSAGING_SYSTEM_NATS,
            [ATTR_MESSAGING_OPERATION_TYPE]: "process",
            [ATTR_MESSAGING_DESTINATION_NAME]: runSubject,
            "sg.batch.size": items.length,
            "sg.batch.max_size": b.maxBatchSize,
            "sg.batch.fill": items.length / b.maxBatchSize,
            "sg.execution_provider": host.executionProvider,
          },
        );
        const batchSpan = span.spanContext();
        try {
          // uint8 pixels are copied as they are and normalised on the model's thread; float32 rows are copied.
          const ran = host.runBatch(items.length, (batch, pixels) =>
            items.forEach((it, i) => {
              if (it.dtype === TensorDtype.uint8) pixels.set(i, it.input);
              else writeBatchRow(batch, i, rowElems, it.input, it.dtype);
            }),
          );
          // The rows are in the slot now (fill runs before runBatch returns): each request's message buffer goes
          // back for the next message (runtime/nats-io.ts), and nothing reads `input` after this.
          for (const it of items) releaseReceived(it.input);
          const { output, computeMs } = await ran;
          if (span.isRecording()) {
            const maxWait = Math.max(...items.map((it) => dispatchedAt - it.enqueuedAt));
            span.setAttributes({ "sg.batch.compute_ms": computeMs, "sg.batch.queue_wait_max_ms": maxWait });
          }
          // Views, not copies: each batch's output is its own buffer, never reused.
          return items.map((it, i) => ({
            row: output.subarray(i * host.outputSize, (i + 1) * host.outputSize),
            batchSize: items.length,
            queueWaitMs: dispatchedAt - it.enqueuedAt,
            computeMs,
            batchSpan,
          }));
        } catch (err) {
          recordSpanError(span, err);
          throw err;
        } finally {
          span.end();
        }
      },
      onBatch: (info) => {
        tally.record(info);
        computeTimeOf.observe(info.computeMs / 1000);
      },
    });
    batchMetrics().report({
      node: ctx.node.name,
      queueDepth: () => batcher.queueDepth(),
      maxQueueSize: b.maxQueueSize,
      fill: tally.fill,
    });

    ctx.serve(InferRun, async ({ data, dtype }, req) => {
      inputsByDtype[dtype]++;
      const r = await batcher.enqueue(
        { input: data, dtype, enqueuedAt: Date.now(), spanContext: req.span.spanContext() },
        // The deadline alone: the batcher watches it with one timer for the whole queue. (`req.signal` aborts only
        // when that deadline passes, and would cost an AbortController, a timer and a listener per request.)
        { deadlineEpochMs: req.deadlineEpochMs },
      );
      if (req.span.isRecording()) {
        // Per request: its queue wait and its share of the forward pass, and a link to the batch span.
        req.span.setAttributes({
          "sg.batch.size": r.batchSize,
          "sg.batch.queue_wait_ms": r.queueWaitMs,
          "sg.batch.compute_ms": r.computeMs,
          "sg.batch.share_ms": r.computeMs / r.batchSize,
        });
        if (trace.isSpanContextValid(r.batchSpan)) req.span.addLink({ context: r.batchSpan });
      }
      req.setReplyHeader(
        Headers.ServerTiming,
        formatServerTiming([
          { name: "queue", durMs: r.queueWaitMs },
          { name: "compute", durMs: r.computeMs },
        ]),
      );
      const logits = encodeFloat32(r.row);
      if (firstNonFinite(logits) >= 0)
        throw new GraphError("MODEL_ERROR", "the model produced a non-finite logit for this input");
      return { data: logits, shape: [host.outputSize] };
    });
    ctx.serve(InferLabels, () => labels);
    const providerFallbacks = host.fallbacks.map(({ provider, reason }) => ({ provider, reason }));
    ctx.serve(InferInfoEndpoint, () => ({
      model: modelPath,
      execution_provider: host.executionProvider,
      provider_fallbacks: providerFallbacks,
      ...(host.adapter ? { adapter: { ...host.adapter } } : {}),
      input_shape: [...host.inputShape],
      output_size: host.outputSize,
      max_batch_size: b.maxBatchSize,
      max_queue_delay_ms: b.maxQueueDelayMs,
      max_queue_size: b.maxQueueSize,
      max_concurrent_batches: b.maxConcurrentBatches,
    }));
    ctx.afterStop(async () => {
      await batcher.stop();
      await host.close();
    });
    statsExtra = () => ({
      execution_provider: host.executionProvider,
      ...(adapter ? { adapter } : {}),
      provider_fallbacks: providerFallbacks,
      ...tally.stats(batcher.queueDepth(), b),
      inputs_by_dtype: { ...inputsByDtype },
      batch_slots: host.slotCount(),
    });
  },
  { params: Params, statsData: () => statsExtra() },
);
