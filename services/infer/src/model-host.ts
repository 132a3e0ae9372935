/**
 * A model host: one onnxruntime session in a worker thread (ort-worker.ts), driven from the service's
 * event loop. The main thread never loads onnxruntime.
 *
 * Contract:
 * - The session runs on the first execution provider of `executionProvider` that starts (./providers.ts):
 *   `auto` tries CUDA, then WebGPU, then CPU; a forced provider that cannot start rejects creation with
 *   MODEL_ERROR whose message carries the reason ("execution provider webgpu did not start: ...").
 *   `executionProvider` and `fallbacks` say what was chosen and why the ones before it were not.
 * - `runBatch(batchSize, fill)` runs a batch in one of the host's batch slots: SharedArrayBuffers shared with
 *   the worker, allocated once (`reserveSlots`, or on first need) and reused for every batch, never one per
 *   batch. `fill` writes the rows into the slot (synchronously, before the call returns): model input values
 *   into `input`, or, with `pixels.set(i, bytes)`, a row of CHW uint8 pixels that the worker normalises
 *   (./pixel-normalizer.ts: the lookup of subjects/image-normalization.ts as WebAssembly, bit-identical to doing it
 *   here) while it moves the rows into the buffer ORT runs on (ORT refuses shared memory, see ort-worker.ts). So
 *   the service's event loop copies 1 byte per value and the 150,528 table lookups of an image run on the model's
 *   thread, off the loop that receives requests. The slot is free again when the result is back. With two slots,
 *   batch n+1 is filled and queued on the worker while batch n computes.
 * - `run(input, batchSize)` takes ownership of `input`: its ArrayBuffer is transferred to the worker
 *   (detached on the caller's side) when `input` spans its whole buffer, otherwise the rows are copied.
 *   `input.length` must be `batchSize * product(inputShape)`, else BAD_REQUEST (the host stays usable).
 * - Runs execute one at a time on the worker, in call order (two runs on one session serialize inside ORT anyway).
 * - ORT failures reject with MODEL_ERROR. If the worker dies, every pending run rejects with
 *   MODEL_ERROR, the host is broken (`isBroken()`), and later runs reject at once with MODEL_ERROR.
 * - `close()` lets accepted runs finish, releases the session and ends the thread; runs after
 *   `close()` reject with UNAVAILABLE. Call it (after draining whatever feeds the host) before the
 *   process exits: a worker torn down in the middle of an ORT run aborts the whole process.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { startTsWorker } from "../../../runtime/index.ts";
import { GraphError } from "../../../subjects/errors.ts";
import type { HostToWorker, OrtWorkerData, WorkerToHost } from "./ort-worker.ts";
import { formatAdapter, type AdapterInfo } from "./gpu-devices.ts";
import {
  EXECUTION_PROVIDER_CHOICES,
  formatFallbacks,
  isExecutionProviderChoice,
  providerCandidates,
  type ExecutionProvider,
  type ExecutionProviderChoice,
  type ProviderAttempt,
} from "./providers.ts";

export type { ExecutionProvider, ExecutionProviderChoice, ProviderAttempt };

export interface ModelHostOptions {
  modelPath: string;
  /** `auto`: CUDA, else WebGPU, else CPU (each failure recorded with its reason); a provider name forces it. */
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
  /** `batchSize * outputSize` values, row-major; the caller owns it. */
  output: Float32Array;
  /** Time inside `session.run`, measured in the worker. */
  computeMs: number;
}

export interface ModelHost {
  readonly executionProvider: ExecutionProvider;
  /** What a GPU provider runs on, hardware or software (./gpu-devices.ts); undefined on the CPU provider. */
  readonly adapter: AdapterInfo | undefined;
  /** Providers tried before `executionProvider`, in order, with why each did not start. */
  readonly fallbacks: readonly ProviderAttempt[];
  /** Shape of one input row, e.g. [3, 224, 224]. */
  readonly inputShape: readonly number[];
  /** Values per output row, e.g. 1000. */
  readonly outputSize: number;
  /**
   * Allocates `count` batch slots of `rows` rows now (at most `count` batches can then be in flight without
   * allocating); later slots, if ever needed, get at least `rows` rows too.
   */
  reserveSlots(rows: number, count: number): void;
  /** Runs a batch in a reused slot; `fill` writes `batchSize` rows (see the top of this file). */
  runBatch(batchSize: number, fill: (input: Float32Array, pixels: PixelRows) => void): Promise<ModelRunResult>;
  run(input: Float32Array, batchSize: number): Promise<ModelRunResult>;
  /** Batch slots allocated so far (each allocated once, then reused). */
  slotCount(): number;
  /** True once the worker has died; the host then rejects every run. */
  isBroken(): boolean;
  close(): Promise<void>;
}

/** Rows of a batch given as uint8 pixels (planar CHW, one byte per model input value), normalised by the worker. */
export interface PixelRows {
  /** Row `i` of the batch is these pixels (exactly one row's values): the worker writes the row's model input. */
  set(i: number, pixels: Uint8Array): void;
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

interface Slot {
  readonly index: number;
  /** A view of the whole shared buffer. */
  readonly values: Float32Array;
  /** The same buffer as bytes (pixel rows are written here, at the start of their row). */
  readonly bytes: Uint8Array;
  readonly rows: number;
}

interface PendingRun {
  batchSize: number;
  /** The slot the run's input lives in (undefined for `run()`, whose buffer is the caller's). */
  slot: Slot | undefined;
  resolve: (r: ModelRunResult) => void;
  reject: (err: GraphError) => void;
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function spawnOrtWorker(data: OrtWorkerData): Worker {
  return startTsWorker(new URL("./ort-worker.ts", import.meta.url), { name: "infer-ort", workerData: data });
}

/**
 * Dawn (the WebGPU provider) wants XDG_RUNTIME_DIR and warns without it; a replica started without a login
 * session (a container, a supervisor) often has none. It must be in the process environment (native getenv)
 * before the worker creates a session, so it is set here, on the main thread, when unset: a private directory
 * (mkdtemp: mode 0700), one per process, removed when the process exits.
 */
function ensureXdgRuntimeDir(): void {
  if (process.env.XDG_RUNTIME_DIR) return;
  const dir = mkdtempSync(join(tmpdir(), "sg-infer-xdg-"));
  process.env.XDG_RUNTIME_DIR = dir;
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
}

function validateOptions(opts: ModelHostOptions): Required<Omit<ModelHostOptions, "log" | "onBroken">> {
  if (typeof opts.modelPath !== "string" || opts.modelPath.length === 0)
    throw new TypeError("modelPath must be a non-empty string");
  if (!isExecutionProviderChoice(opts.executionProvider)) {
    throw new TypeError(
      `executionProvider must be one of ${EXECUTION_PROVIDER_CHOICES.join(", ")}, got ${JSON.stringify(opts.executionProvider)}`,
    );
  }
  const intraOpNumThreads = opts.intraOpNumThreads ?? 0;
  if (!Number.isInteger(intraOpNumThreads) || intraOpNumThreads < 0)
    throw new RangeError("intraOpNumThreads must be an integer >= 0");
  return {
    modelPath: opts.modelPath,
    executionProvider: opts.executionProvider,
    intraOpNumThreads,
    allowSpinning: opts.allowSpinning ?? true,
  };
}

/**
 * Starts the worker, creates the session on the chosen execution provider, and validates the model with a
 * batch-1 warm-up run, which also discovers the output row size. Rejects with MODEL_ERROR if no session can
 * be created (the message says why) or the warm-up fails.
 */
export async function createModelHost(opts: ModelHostOptions): Promise<ModelHost> {
  const cfg = validateOptions(opts);
  const log = opts.log ?? (() => {});
  if (providerCandidates(cfg.executionProvider).includes("webgpu")) ensureXdgRuntimeDir();
  const worker = spawnOrtWorker(cfg);

  let state: "starting" | "ready" | "closing" | "closed" | "broken" = "starting";
  let inputShape: readonly number[] = DEFAULT_INPUT_SHAPE;
  let rowSize = product(inputShape);
  let outputSize = 0; // 0 until the warm-up run has discovered it
  const inFlight = new Map<number, PendingRun>();
  const freeSlots: Slot[] = [];
  let slotsAllocated = 0;
  let slotRows = 1;
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

  const settled = (): void => {
    if (inFlight.size === 0) onDrained?.();
  };

  const failAll = (err: GraphError): void => {
    const pending = [...inFlight.values()];
    inFlight.clear();
    for (const p of pending) p.reject(err);
    onDrained?.();
  };

  worker.on("message", (msg: WorkerToHost) => {
    switch (msg.type) {
      case "ready":
        readyResolve(msg);
        return;
      case "init-error":
        readyReject(
          new GraphError("MODEL_ERROR", msg.message, {
            details: { executionProvider: cfg.executionProvider, ...(msg.attempts ? { attempts: msg.attempts } : {}) },
            cause: new Error(msg.message),
          }),
        );
        return;
      case "result":
      case "run-error": {
        const run = inFlight.get(msg.id);
        if (!run) return; // a reply to a run already failed by a crash
        inFlight.delete(msg.id);
        if (run.slot) freeSlots.push(run.slot);
        if (msg.type === "run-error") {
          run.reject(
            new GraphError("MODEL_ERROR", "model run failed", {
              details: { batchSize: run.batchSize, reason: msg.message },
              cause: new Error(msg.message),
            }),
          );
        } else if (
          outputSize > 0 &&
          (msg.output.length !== run.batchSize * outputSize || msg.outputDims[0] !== run.batchSize)
        ) {
          run.reject(
            new GraphError("MODEL_ERROR", "model output has an unexpected shape", {
              details: { batchSize: run.batchSize, outputDims: msg.outputDims, expectedRowSize: outputSize },
            }),
          );
        } else {
          run.resolve({ output: msg.output, computeMs: msg.computeMs });
        }
        settled();
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
      {
        details: { exitCode, ...(workerError ? { reason: workerError.message } : {}) },
        ...(workerError ? { cause: workerError } : {}),
      },
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

  /** Why a run cannot start now, or undefined. */
  const refusal = (batchSize: number): GraphError | undefined => {
    if (state === "broken") return new GraphError("MODEL_ERROR", "model host is broken (its worker exited)");
    if (state === "closing" || state === "closed") return new GraphError("UNAVAILABLE", "model host is closed");
    if (!Number.isInteger(batchSize) || batchSize < 1)
      return new GraphError("BAD_REQUEST", "batchSize must be a positive integer", { details: { batchSize } });
    return undefined;
  };

  /** Sends a run of `input` (its buffer transferred) or of a slot's rows; the result settles the returned promise. */
  const dispatch = (
    batchSize: number,
    what: { input: Float32Array } | { slot: Slot; pixelRows: number[] },
  ): Promise<ModelRunResult> =>
    new Promise<ModelRunResult>((resolve, reject) => {
      const id = nextId++;
      const dims = [batchSize, ...inputShape];
      if ("slot" in what) {
        inFlight.set(id, { batchSize, slot: what.slot, resolve, reject });
        send({ type: "run-slot", id, slot: what.slot.index, dims, pixelRows: what.pixelRows });
      } else {
        inFlight.set(id, { batchSize, slot: undefined, resolve, reject });
        send({ type: "run", id, dims, input: what.input }, [what.input.buffer as ArrayBuffer]);
      }
    });

  const allocateSlot = (rows: number): Slot => {
    const buffer = new SharedArrayBuffer(rows * rowSize * Float32Array.BYTES_PER_ELEMENT);
    const slot: Slot = {
      index: slotsAllocated++,
      values: new Float32Array(buffer),
      bytes: new Uint8Array(buffer),
      rows,
    };
    send({ type: "slot", index: slot.index, buffer });
    return slot;
  };

  const reserveSlots = (rows: number, count: number): void => {
    if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(count) || count < 0)
      throw new RangeError("reserveSlots(rows >= 1, count >= 0)");
    slotRows = Math.max(slotRows, rows);
    // Slots too small for the new size are dropped (the ones on the worker are replaced when they come back).
    for (let i = freeSlots.length - 1; i >= 0; i--) if (freeSlots[i]!.rows < rows) freeSlots.splice(i, 1);
    const slotsOut = [...inFlight.values()].filter((r) => r.slot !== undefined).length;
    while (freeSlots.length + slotsOut < count) freeSlots.push(allocateSlot(slotRows));
  };

  const runBatch = (
    batchSize: number,
    fill: (input: Float32Array, pixels: PixelRows) => void,
  ): Promise<ModelRunResult> => {
    const refused = refusal(batchSize);
    if (refused) return Promise.reject(refused);
    let i = freeSlots.findIndex((s) => s.rows >= batchSize);
    if (i < 0) {
      freeSlots.push(allocateSlot(Math.max(batchSize, slotRows)));
      i = freeSlots.length - 1;
    }
    const slot = freeSlots.splice(i, 1)[0]!;
    const pixelRows: number[] = [];
    const pixels: PixelRows = {
      set(row, px) {
        if (!Number.isInteger(row) || row < 0 || row >= batchSize)
          throw new RangeError(`row ${row} is outside a batch of ${batchSize}`);
        if (px.length !== rowSize) throw new RangeError(`a pixel row has ${rowSize} bytes, got ${px.length}`);
        slot.bytes.set(px, row * rowSize * Float32Array.BYTES_PER_ELEMENT);
        if (!pixelRows.includes(row)) pixelRows.push(row);
      },
    };
    try {
      fill(slot.values.subarray(0, batchSize * rowSize), pixels);
    } catch (err) {
      freeSlots.push(slot);
      return Promise.reject(err);
    }
    return dispatch(batchSize, { slot, pixelRows });
  };

  const run = (input: Float32Array, batchSize: number): Promise<ModelRunResult> => {
    const refused = refusal(batchSize);
    if (refused) return Promise.reject(refused);
    if (!(input instanceof Float32Array) || input.length !== batchSize * rowSize) {
      return Promise.reject(
        new GraphError("BAD_REQUEST", "input length does not match batchSize x input shape", {
          details: {
            batchSize,
            inputShape,
            expectedLength: batchSize * rowSize,
            actualLength: (input as { length?: unknown })?.length,
          },
        }),
      );
    }
    const owned =
      input.byteOffset === 0 && input.byteLength === input.buffer.byteLength && input.buffer instanceof ArrayBuffer;
    return dispatch(batchSize, { input: owned ? input : input.slice() });
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
    log("model input shape is not fully declared; assuming the default", {
      declared: readyMsg.inputDims,
      assumed: DEFAULT_INPUT_SHAPE,
    });
  }
  rowSize = product(inputShape);

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
    return abortStart(
      e.code === "MODEL_ERROR" ? e : new GraphError("MODEL_ERROR", "model warm-up run failed", { cause: err }),
    );
  }

  log("model host ready", {
    modelPath: cfg.modelPath,
    executionProvider: readyMsg.executionProvider,
    requested: cfg.executionProvider,
    ...(readyMsg.fallbacks.length ? { fallbacks: formatFallbacks(readyMsg.fallbacks) } : {}),
    ...(readyMsg.adapter ? { adapter: formatAdapter(readyMsg.adapter) } : {}),
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
      if (inFlight.size > 0)
        await new Promise<void>((res) => {
          onDrained = res;
        });
      if ((state as string) === "closing") {
        send({ type: "close" });
        // Last resort if the idle worker does not exit; safe only because no run is in flight here.
        const timer = setTimeout(() => void worker.terminate(), CLOSE_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      freeSlots.length = 0;
    })();
    return closing;
  };

  const host: ModelHost & { [kTestInternals]: ModelHostTestInternals } = {
    executionProvider: readyMsg.executionProvider,
    adapter: readyMsg.adapter ? Object.freeze({ ...readyMsg.adapter }) : undefined,
    fallbacks: Object.freeze(readyMsg.fallbacks.map((f) => Object.freeze({ ...f }))),
    inputShape,
    outputSize,
    reserveSlots,
    runBatch,
    run,
    slotCount: () => slotsAllocated,
    isBroken: () => state === "broken",
    close,
    [kTestInternals]: { simulateCrash: () => send({ type: "simulate-crash" }) },
  };
  return host;
}
