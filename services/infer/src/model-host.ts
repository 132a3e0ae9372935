/**
 * A model host: one onnxruntime session in a worker thread (ort-worker.ts), driven from the service's
 * event loop. The main thread never loads onnxruntime.
 *
 * Contract:
 * - `run(input, batchSize)` takes ownership of `input`: its ArrayBuffer is transferred to the worker
 *   (detached on the caller's side) when `input` spans its whole buffer, otherwise the rows are copied.
 *   `input.length` must be `batchSize * product(inputShape)`, else BAD_REQUEST (the host stays usable).
 * - Runs execute one at a time, in call order (two runs on one session serialize inside ORT anyway).
 * - ORT failures reject with MODEL_ERROR. If the worker dies, every pending run rejects with
 *   MODEL_ERROR, the host is broken (`isBroken()`), and later runs reject at once with MODEL_ERROR.
 * - `close()` lets accepted runs finish, releases the session and ends the thread; runs after
 *   `close()` reject with UNAVAILABLE. Call it (after draining whatever feeds the host) before the
 *   process exits: a worker torn down in the middle of an ORT run aborts the whole process.
 */
import { Worker } from "node:worker_threads";
import { GraphError } from "../../../subjects/errors.ts";
import type { ExecutionProviderChoice, HostToWorker, OrtWorkerData, WorkerToHost } from "./ort-worker.ts";

export type { ExecutionProviderChoice };

export interface ModelHostOptions {
  modelPath: string;
  /** `auto`: CUDA when it loads, else CPU (logged with the reason); `cuda`: fail when CUDA does not load. */
  executionProvider: ExecutionProviderChoice;
  /** ORT intra-op threads; 0 (default) lets ORT choose (its physical-core count: 1 on the 2-vCPU dev VM, so set it). */
  intraOpNumThreads?: number;
  /** ORT intra-op spin-waiting (default true, ORT's default): lower latency, burns CPU between runs. */
  allowSpinning?: boolean;
  log?: (msg: string, attrs?: Record<string, unknown>) => void;
  /** Called once when the worker dies unexpectedly (the host is then broken for good): replace the replica. */
  onBroken?: (reason: string) => void;
}

export interface ModelRunResult {
  /** `batchSize * outputSize` values, row-major. */
  output: Float32Array;
  /** Time inside `session.run`, measured in the worker. */
  computeMs: number;
}

export interface ModelHost {
  readonly executionProvider: "cuda" | "cpu";
  /** Shape of one input row, e.g. [3, 224, 224]. */
  readonly inputShape: readonly number[];
  /** Values per output row, e.g. 1000. */
  readonly outputSize: number;
  run(input: Float32Array, batchSize: number): Promise<ModelRunResult>;
  /** True once the worker has died; the host then rejects every run. */
  isBroken(): boolean;
  close(): Promise<void>;
}

/** Test-only access to internals (Fastify's kTestInternals pattern); not part of the public surface. */
export const kTestInternals: unique symbol = Symbol("servegraph.modelHost.testInternals");
export interface ModelHostTestInternals {
  /**
   * Makes the worker die of an uncaught error once its current run (if any) has finished, as a
   * crash would. (Not `worker.terminate()`: terminating during a run aborts the whole process.)
   */
  simulateCrash(): void;
}

/** Used when the model's metadata does not give a fully numeric row shape. */
const DEFAULT_INPUT_SHAPE = [3, 224, 224] as const;
const CLOSE_TIMEOUT_MS = 10_000;

interface PendingRun {
  input: Float32Array;
  batchSize: number;
  resolve: (r: ModelRunResult) => void;
  reject: (err: GraphError) => void;
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function spawnOrtWorker(data: OrtWorkerData): Worker {
  // There is no build step: the worker runs ort-worker.ts through tsx, like the rest of the node.
  const entry = new URL("./ort-worker.ts", import.meta.url);
  // Under tsx on Node 20, `execArgv: ["--import", "tsx"]` does run tsx in the worker, but its loader hooks
  // do not apply to the worker's own entry (ERR_UNKNOWN_FILE_EXTENSION ".ts"). Registering tsx's ESM API
  // inside the worker and then importing the entry does work.
  const tsxApi = import.meta.resolve("tsx/esm/api");
  const code = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(code, { eval: true, workerData: data });
}

function validateOptions(opts: ModelHostOptions): Required<Omit<ModelHostOptions, "log" | "onBroken">> {
  if (typeof opts.modelPath !== "string" || opts.modelPath.length === 0) throw new TypeError("modelPath must be a non-empty string");
  if (!["auto", "cuda", "cpu"].includes(opts.executionProvider)) {
    throw new TypeError(`executionProvider must be "auto", "cuda" or "cpu", got ${JSON.stringify(opts.executionProvider)}`);
  }
  const intraOpNumThreads = opts.intraOpNumThreads ?? 0;
  if (!Number.isInteger(intraOpNumThreads) || intraOpNumThreads < 0) throw new RangeError("intraOpNumThreads must be an integer >= 0");
  return { modelPath: opts.modelPath, executionProvider: opts.executionProvider, intraOpNumThreads, allowSpinning: opts.allowSpinning ?? true };
}

/**
 * Starts the worker, creates the session (with the CUDA -> CPU fallback for `auto`), and validates the
 * model with a batch-1 warm-up run, which also discovers the output row size. Rejects with MODEL_ERROR
 * if the session cannot be created or the warm-up fails.
 */
export async function createModelHost(opts: ModelHostOptions): Promise<ModelHost> {
  const cfg = validateOptions(opts);
  const log = opts.log ?? (() => {});
  const worker = spawnOrtWorker(cfg);

  let state: "starting" | "ready" | "closing" | "closed" | "broken" = "starting";
  let inputShape: readonly number[] = DEFAULT_INPUT_SHAPE;
  let rowSize = product(inputShape);
  let outputSize = 0; // 0 until the warm-up run has discovered it
  const queue: PendingRun[] = [];
  let current: (PendingRun & { id: number }) | undefined;
  let nextId = 1;
  let onDrained: (() => void) | undefined;

  let readyResolve!: (m: Extract<WorkerToHost, { type: "ready" }>) => void;
  let readyReject!: (err: GraphError) => void;
  const ready = new Promise<Extract<WorkerToHost, { type: "ready" }>>((res, rej) => {
    readyResolve = res;
    readyReject = rej;
  });
  const exited = new Promise<number>((res) => worker.once("exit", res));

  const send = (msg: HostToWorker, transfer: ArrayBuffer[] = []): void => worker.postMessage(msg, transfer);

  const pump = (): void => {
    if (current || state === "broken" || state === "closed") return;
    const next = queue.shift();
    if (!next) {
      onDrained?.();
      return;
    }
    current = { ...next, id: nextId++ };
    const owned = next.input.byteOffset === 0 && next.input.byteLength === next.input.buffer.byteLength
      && next.input.buffer instanceof ArrayBuffer;
    const input = owned ? next.input : next.input.slice();
    send({ type: "run", id: current.id, dims: [next.batchSize, ...inputShape], input }, [input.buffer as ArrayBuffer]);
  };

  const failAll = (err: GraphError): void => {
    const pending = current ? [current, ...queue] : [...queue];
    current = undefined;
    queue.length = 0;
    for (const p of pending) p.reject(err);
    onDrained?.();
  };

  worker.on("message", (msg: WorkerToHost) => {
    switch (msg.type) {
      case "ready":
        readyResolve(msg);
        return;
      case "init-error":
        readyReject(new GraphError("MODEL_ERROR", "could not create the onnxruntime session", {
          details: { executionProvider: cfg.executionProvider, reason: msg.message },
          cause: new Error(msg.message),
        }));
        return;
      case "result":
      case "run-error": {
        const run = current;
        if (!run || run.id !== msg.id) return; // a reply to a run already failed by a crash
        current = undefined;
        if (msg.type === "run-error") {
          run.reject(new GraphError("MODEL_ERROR", "model run failed", {
            details: { batchSize: run.batchSize, reason: msg.message },
            cause: new Error(msg.message),
          }));
        } else if (outputSize > 0 && (msg.output.length !== run.batchSize * outputSize || msg.outputDims[0] !== run.batchSize)) {
          run.reject(new GraphError("MODEL_ERROR", "model output has an unexpected shape", {
            details: { batchSize: run.batchSize, outputDims: msg.outputDims, expectedRowSize: outputSize },
          }));
        } else {
          run.resolve({ output: msg.output, computeMs: msg.computeMs });
        }
        pump();
        return;
      }
    }
  });

  let workerError: Error | undefined;
  worker.on("error", (err) => {
    workerError = err;
  });
  worker.on("messageerror", (err) => {
    workerError = err;
  });
  void exited.then((exitCode) => {
    const intended = state === "closing" || state === "closed";
    const err = new GraphError(
      intended ? "UNAVAILABLE" : "MODEL_ERROR",
      intended ? "model host is closed" : "model worker exited",
      { details: { exitCode, ...(workerError ? { reason: workerError.message } : {}) }, ...(workerError ? { cause: workerError } : {}) },
    );
    readyReject(err);
    if (!intended) {
      state = "broken";
      log("model worker exited unexpectedly; model host is broken", { exitCode, reason: workerError?.message });
      opts.onBroken?.(`model worker exited (code ${exitCode}${workerError ? `: ${workerError.message}` : ""})`);
    } else {
      state = "closed";
    }
    failAll(err);
  });

  const run = (input: Float32Array, batchSize: number): Promise<ModelRunResult> => {
    if (state === "broken") return Promise.reject(new GraphError("MODEL_ERROR", "model host is broken (its worker exited)"));
    if (state === "closing" || state === "closed") return Promise.reject(new GraphError("UNAVAILABLE", "model host is closed"));
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      return Promise.reject(new GraphError("BAD_REQUEST", "batchSize must be a positive integer", { details: { batchSize } }));
    }
    if (!(input instanceof Float32Array) || input.length !== batchSize * rowSize) {
      return Promise.reject(new GraphError("BAD_REQUEST", "input length does not match batchSize x input shape", {
        details: { batchSize, inputShape, expectedLength: batchSize * rowSize, actualLength: (input as { length?: unknown })?.length },
      }));
    }
    return new Promise<ModelRunResult>((resolve, reject) => {
      queue.push({ input, batchSize, resolve, reject });
      pump();
    });
  };

  // Reached only with the worker idle or gone (init failed, warm-up answered or the worker exited).
  const abortStart = async (err: GraphError): Promise<never> => {
    state = "closing";
    await worker.terminate();
    throw err;
  };

  let readyMsg: Extract<WorkerToHost, { type: "ready" }>;
  try {
    readyMsg = await ready;
  } catch (err) {
    return abortStart(GraphError.from(err));
  }
  const rowDims = readyMsg.inputDims.slice(1);
  if (rowDims.length > 0 && rowDims.every((d): d is number => typeof d === "number" && d > 0)) {
    inputShape = Object.freeze(rowDims);
  } else {
    log("model input shape is not fully declared; assuming the default", { declared: readyMsg.inputDims, assumed: DEFAULT_INPUT_SHAPE });
  }
  rowSize = product(inputShape);
  if (readyMsg.fallbackReason !== undefined) {
    log("CUDA execution provider unavailable; running on CPU", { requested: cfg.executionProvider, reason: readyMsg.fallbackReason });
  }

  state = "ready";
  let warmupMs: number;
  try {
    const t0 = performance.now();
    const warm = await run(new Float32Array(rowSize), 1);
    warmupMs = performance.now() - t0;
    if (warm.output.length === 0) throw new GraphError("MODEL_ERROR", "model produced an empty output");
    outputSize = warm.output.length;
  } catch (err) {
    const e = GraphError.from(err);
    return abortStart(e.code === "MODEL_ERROR" ? e : new GraphError("MODEL_ERROR", "model warm-up run failed", { cause: err }));
  }

  log("model host ready", {
    modelPath: cfg.modelPath,
    executionProvider: readyMsg.executionProvider,
    requested: cfg.executionProvider,
    inputName: readyMsg.inputName,
    outputName: readyMsg.outputName,
    inputShape,
    outputSize,
    intraOpNumThreads: cfg.intraOpNumThreads,
    allowSpinning: cfg.allowSpinning,
    createMs: Math.round(readyMsg.createMs),
    warmupMs: Math.round(warmupMs),
  });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      if (state === "broken" || state === "closed") return;
      state = "closing";
      if (current || queue.length > 0) await new Promise<void>((res) => { onDrained = res; });
      if ((state as string) === "closing") {
        send({ type: "close" });
        // Last resort if the idle worker does not exit; safe only because no run is in flight here.
        const timer = setTimeout(() => void worker.terminate(), CLOSE_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
    })();
    return closing;
  };

  const host: ModelHost & { [kTestInternals]: ModelHostTestInternals } = {
    executionProvider: readyMsg.executionProvider,
    inputShape,
    outputSize,
    run,
    isBroken: () => state === "broken",
    close,
    [kTestInternals]: { simulateCrash: () => send({ type: "simulate-crash" }) },
  };
  return host;
}
