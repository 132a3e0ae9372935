/**
 * The onnxruntime session of a model host, in its own worker thread: `session.run()` blocks the
 * thread it runs on for the whole inference, so it must not run on the service's event loop.
 *
 * Protocol:
 *   worker -> host  { type: "ready", ... } once the session exists (with the provider chosen and the ones that
 *                   failed before it), or { type: "init-error", ... }
 *   host -> worker  { type: "slot", index, buffer }  a batch slot: a SharedArrayBuffer the host fills, sent once
 *   host -> worker  { type: "run-slot", id, slot, dims, pixelRows }  run the first dims[0] rows of that slot;
 *                   the rows listed in pixelRows hold uint8 CHW pixels at the start of their row, normalised here
 *   host -> worker  { type: "run", id, dims, input }  run `input` (its buffer is transferred)
 *                   dims = [batch, ...row shape]. The host may send the next run before this one answers: it is
 *                   staged at once into its slot's own staging buffer, and runs execute one at a time, in order
 *                   (a promise chain: session.run is asynchronous), so batch n+1 is filled and staged while n
 *                   computes.
 *   worker -> host  { type: "result", id, output, outputDims, computeMs }  output's buffer is transferred
 *                   { type: "run-error", id, message }
 *   host -> worker  { type: "close" }  releases the session; the thread then exits on its own
 *   host -> worker  { type: "simulate-crash" }  tests only: an uncaught error on this thread, between runs
 *
 * Why a slot is copied here before the run: onnxruntime-node 1.30 refuses a tensor whose Float32Array views a
 * SharedArrayBuffer (`session.run` throws "Invalid argument"), so a run copies its rows from the shared slot into
 * that slot's staging buffer on this thread (allocated once per slot, at the largest batch) and runs on that. The alternative,
 * transferring a plain ArrayBuffer slot back and forth, copies nothing but makes V8 count each arriving 19 MB
 * buffer as a new external allocation: a full GC every few hundred ms at a few hundred images/s (measured).
 *
 * Never `worker.terminate()` this thread while a run is in flight: the binding then throws a C++
 * Napi::Error that nothing catches and the WHOLE PROCESS aborts (SIGABRT, exit 134; seen with
 * onnxruntime-node 1.30 on Node 20). Let runs finish, then send "close".
 */
import { parentPort, workerData } from "node:worker_threads";
import * as ort from "onnxruntime-node";
import { AdapterKind, probeGpu, webgpuAdapterOf, webgpuSkipReason, type AdapterInfo } from "./gpu-devices.ts";
import {
  ExecutionProvider,
  ProviderSelectionError,
  providerCandidates,
  selectProvider,
  type ExecutionProviderChoice,
  type ProviderAttempt,
} from "./providers.ts";
import { createPixelNormalizer, type PixelNormalizer } from "./pixel-normalizer.ts";

export type { ExecutionProviderChoice };

export interface OrtWorkerData {
  modelPath: string;
  executionProvider: ExecutionProviderChoice;
  /** 0 lets ORT pick: its count of physical cores, which was 1 on the 2-vCPU dev VM (set 2 there). */
  intraOpNumThreads: number;
  /** false sets the session config `session.intra_op.allow_spinning=0` (frees CPU between runs). */
  allowSpinning: boolean;
}

export type HostToWorker =
  | { type: "slot"; index: number; buffer: SharedArrayBuffer }
  | { type: "run-slot"; id: number; slot: number; dims: number[]; pixelRows: number[] }
  | { type: "run"; id: number; dims: number[]; input: Float32Array }
  | { type: "close" }
  | { type: "simulate-crash" };

export type WorkerToHost =
  | {
      type: "ready";
      executionProvider: ExecutionProvider;
      /** Providers tried before the one in use, with why each did not start (empty: the first choice worked). */
      fallbacks: ProviderAttempt[];
      /** What a GPU provider runs on (./gpu-devices.ts); absent on the CPU provider. */
      adapter?: AdapterInfo;
      inputName: string;
      outputName: string;
      /** Model-declared dims; symbolic dims are strings, unknown metadata gives []. */
      inputDims: Array<number | string>;
      outputDims: Array<number | string>;
      createMs: number;
    }
  /** `attempts`: present when no provider could start (each with its reason). */
  | { type: "init-error"; message: string; attempts?: ProviderAttempt[] }
  | { type: "result"; id: number; output: Float32Array; outputDims: number[]; computeMs: number }
  | { type: "run-error"; id: number; message: string };

const port = parentPort;
if (!port) throw new Error("ort-worker must run in a worker thread");
const data = workerData as OrtWorkerData;

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function providerConfig(p: ExecutionProvider): ort.InferenceSession.ExecutionProviderConfig {
  switch (p) {
    case ExecutionProvider.cuda:
      return { name: "cuda", deviceId: 0 };
    case ExecutionProvider.webgpu:
      return { name: "webgpu" };
    case ExecutionProvider.cpu:
      return "cpu";
  }
}

function sessionOptions(p: ExecutionProvider): ort.InferenceSession.SessionOptions {
  return {
    // One provider per attempt: ORT adds its CPU provider for the nodes an accelerator does not support, but never
    // falls back on its own when the accelerator itself does not load (create() throws); selectProvider does that.
    executionProviders: [providerConfig(p)],
    intraOpNumThreads: data.intraOpNumThreads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
    ...(data.allowSpinning ? {} : { extra: { session: { intra_op: { allow_spinning: "0" } } } }),
  };
}

function dimsOf(meta: readonly ort.InferenceSession.ValueMetadata[] | undefined, name: string): Array<number | string> {
  const m = meta?.find((v) => v.name === name);
  return m && m.isTensor ? [...m.shape] : [];
}

function post(msg: WorkerToHost, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(msg, transfer);
}

/** A Float32Array that owns its whole buffer exactly, so the buffer can be transferred. */
function ownedCopy(a: Float32Array): Float32Array {
  const owns = a.byteOffset === 0 && a.byteLength === a.buffer.byteLength && a.buffer instanceof ArrayBuffer;
  return owns ? a : a.slice();
}

let session: ort.InferenceSession | undefined;
try {
  const t0 = performance.now();
  // A provider that fails to load makes ORT's process-wide logger print the same error to stderr; the host logs
  // each reason once, in plain words, instead.
  if (providerCandidates(data.executionProvider).some((p) => p !== ExecutionProvider.cpu)) ort.env.logLevel = "fatal";
  const gpu = probeGpu();
  const selected = await selectProvider(
    data.executionProvider,
    (p) => ort.InferenceSession.create(data.modelPath, sessionOptions(p)),
    {
      skip: (p) => (p === ExecutionProvider.webgpu ? webgpuSkipReason(gpu) : undefined),
    },
  );
  const adapter: AdapterInfo | undefined =
    selected.provider === ExecutionProvider.webgpu
      ? webgpuAdapterOf(gpu)
      : selected.provider === ExecutionProvider.cuda
        ? { kind: AdapterKind.hardware, name: gpu.devices.join(", ") || "CUDA device 0" }
        : undefined;
  session = selected.session;
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  if (inputName === undefined || outputName === undefined) throw new Error("model has no input or no output");
  post({
    type: "ready",
    executionProvider: selected.provider,
    fallbacks: [...selected.fallbacks],
    ...(adapter ? { adapter } : {}),
    inputName,
    outputName,
    inputDims: dimsOf(session.inputMetadata, inputName),
    outputDims: dimsOf(session.outputMetadata, outputName),
    createMs: performance.now() - t0,
  });
} catch (err) {
  post({
    type: "init-error",
    message: errorMessage(err),
    ...(err instanceof ProviderSelectionError ? { attempts: [...err.attempts] } : {}),
  });
  port.close();
}

if (session) {
  const sess = session;
  const inputName = sess.inputNames[0]!;
  const outputName = sess.outputNames[0]!;
  const slots = new Map<number, Float32Array>();
  /**
   * Each slot's own staging buffer (grown, never shrunk), which normalises pixel rows into itself
   * (./pixel-normalizer.ts): a run staged while another computes never shares one.
   */
  const staging = new Map<number, PixelNormalizer>();

  /**
   * The first dims[0] rows of a shared slot in that slot's staging buffer: values copied, pixel rows normalised into it.
   */
  const stage = (slot: number, dims: readonly number[], pixelRows: readonly number[]): Float32Array => {
    const shared = slots.get(slot);
    if (!shared) throw new Error(`unknown batch slot ${slot}`);
    const rows = dims[0]!;
    const n = dims.reduce((a, b) => a * b, 1);
    const row = n / rows;
    if (n > shared.length) throw new Error(`batch of ${n} values does not fit slot ${slot} (${shared.length})`);
    let own = staging.get(slot);
    if (!own || own.output.length < n || own.rowValues < row)
      staging.set(slot, (own = createPixelNormalizer(Math.max(n, shared.length), row)));
    const x = own.output.subarray(0, n);
    if (pixelRows.length === 0) {
      x.set(shared.subarray(0, n));
      return x;
    }
    const isPixels = new Uint8Array(rows);
    for (const r of pixelRows) isPixels[r] = 1;
    for (let r = 0; r < rows; r++) {
      if (isPixels[r])
        own.normalizeRow(new Uint8Array(shared.buffer, r * row * Float32Array.BYTES_PER_ELEMENT, row), r * row);
      else x.set(shared.subarray(r * row, (r + 1) * row), r * row);
    }
    return x;
  };

  /**
   * Runs one at a time, in arrival order. `session.run` is asynchronous (onnxruntime computes off this thread), so
   * the next message is handled while a run is in flight: it is staged at once (its own buffer: the overlap of
   * filling batch n+1 while n computes) and its run starts when the one before it has finished. Without the chain
   * two runs would be inside onnxruntime at once, and with one staging buffer the second overwrote the first's
   * input while the WebGPU provider was still reading it (seen on lavapipe: wrong scores for some images of
   * concurrent batches).
   */
  let previous: Promise<void> = Promise.resolve();
  const execute = (id: number, dims: number[], input: Float32Array, stageMs: number): void => {
    previous = previous.then(async () => {
      try {
        const t0 = performance.now();
        const results = await sess.run({ [inputName]: new ort.Tensor("float32", input, dims) });
        const computeMs = stageMs + performance.now() - t0;
        const out = results[outputName];
        if (!out || out.type !== "float32") throw new Error(`output ${outputName} is missing or not float32`);
        // ORT output data may be a view at a byteOffset into a larger buffer (or an external, non-transferable
        // one): transfer only a buffer the array owns exactly, otherwise copy first.
        let output = ownedCopy(out.data as Float32Array);
        const reply = (o: Float32Array): WorkerToHost => ({
          type: "result",
          id,
          output: o,
          outputDims: [...out.dims],
          computeMs,
        });
        try {
          post(reply(output), [output.buffer as ArrayBuffer]);
        } catch {
          output = (out.data as Float32Array).slice();
          post(reply(output), [output.buffer as ArrayBuffer]);
        }
      } catch (err) {
        post({ type: "run-error", id, message: errorMessage(err) });
      }
    });
  };

  port.on("message", async (msg: HostToWorker) => {
    if (msg.type === "close") {
      await previous; // runs accepted before the close finish first
      await sess.release().catch(() => {});
      port.close();
      return;
    }
    if (msg.type === "simulate-crash") {
      setImmediate(() => {
        throw new Error("simulated worker crash");
      });
      return;
    }
    if (msg.type === "slot") {
      slots.set(msg.index, new Float32Array(msg.buffer));
      return;
    }
    const { id, dims } = msg;
    try {
      const t0 = performance.now();
      const input = msg.type === "run" ? msg.input : stage(msg.slot, dims, msg.pixelRows);
      execute(id, dims, input, performance.now() - t0);
    } catch (err) {
      post({ type: "run-error", id, message: errorMessage(err) });
    }
  });
}
