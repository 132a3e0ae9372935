/**
 * The onnxruntime session of a model host, in its own worker thread: `session.run()` blocks the
 * thread it runs on for the whole inference, so it must not run on the service's event loop.
 *
 * Protocol (the host sends one run at a time):
 *   worker -> host  { type: "ready", ... } once the session exists, or { type: "init-error", ... }
 *   host -> worker  { type: "run", id, dims, input }  dims = [batch, ...row shape]; input's buffer is transferred
 *   worker -> host  { type: "result", id, output, outputDims, computeMs }  output's buffer is transferred
 *                   { type: "run-error", id, message }
 *   host -> worker  { type: "close" }  releases the session; the thread then exits on its own
 *   host -> worker  { type: "simulate-crash" }  tests only: an uncaught error on this thread, between runs
 *
 * Never `worker.terminate()` this thread while a run is in flight: the binding then throws a C++
 * Napi::Error that nothing catches and the WHOLE PROCESS aborts (SIGABRT, exit 134; seen with
 * onnxruntime-node 1.30 on Node 20). Let runs finish, then send "close".
 */
import { parentPort, workerData } from "node:worker_threads";
import * as ort from "onnxruntime-node";

export type ExecutionProviderChoice = "auto" | "cuda" | "cpu";

export interface OrtWorkerData {
  modelPath: string;
  executionProvider: ExecutionProviderChoice;
  /** 0 lets ORT pick: its count of physical cores, which was 1 on the 2-vCPU dev VM (set 2 there). */
  intraOpNumThreads: number;
  /** false sets the session config `session.intra_op.allow_spinning=0` (frees CPU between runs). */
  allowSpinning: boolean;
}

export type HostToWorker =
  | { type: "run"; id: number; dims: number[]; input: Float32Array }
  | { type: "close" }
  | { type: "simulate-crash" };

export type WorkerToHost =
  | {
    type: "ready";
    executionProvider: "cuda" | "cpu";
    /** Why `auto` ended up on CPU; absent when the first choice worked. */
    fallbackReason?: string;
    inputName: string;
    outputName: string;
    /** Model-declared dims; symbolic dims are strings, unknown metadata gives []. */
    inputDims: Array<number | string>;
    outputDims: Array<number | string>;
    createMs: number;
  }
  | { type: "init-error"; message: string }
  | { type: "result"; id: number; output: Float32Array; outputDims: number[]; computeMs: number }
  | { type: "run-error"; id: number; message: string };

const port = parentPort;
if (!port) throw new Error("ort-worker must run in a worker thread");
const data = workerData as OrtWorkerData;

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function sessionOptions(eps: ort.InferenceSession.ExecutionProviderConfig[]): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: eps,
    intraOpNumThreads: data.intraOpNumThreads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
    ...(data.allowSpinning ? {} : { extra: { session: { intra_op: { allow_spinning: "0" } } } }),
  };
}

async function createSession(): Promise<{ session: ort.InferenceSession; ep: "cuda" | "cpu"; fallbackReason?: string }> {
  if (data.executionProvider === "cpu") {
    return { session: await ort.InferenceSession.create(data.modelPath, sessionOptions(["cpu"])), ep: "cpu" };
  }
  if (data.executionProvider === "cuda") {
    // No CPU in the list: a missing CUDA provider must fail, not quietly run on CPU.
    return { session: await ort.InferenceSession.create(data.modelPath, sessionOptions([{ name: "cuda" }])), ep: "cuda" };
  }
  // ["cuda","cpu"] does not fall back on its own: create() throws when the CUDA provider library or
  // its dependencies are missing, so retry on CPU and say why. The process-wide ORT logger would also
  // print that expected failure to stderr; the host logs the reason instead.
  ort.env.logLevel = "fatal";
  try {
    return { session: await ort.InferenceSession.create(data.modelPath, sessionOptions([{ name: "cuda" }, "cpu"])), ep: "cuda" };
  } catch (err) {
    const session = await ort.InferenceSession.create(data.modelPath, sessionOptions(["cpu"]));
    return { session, ep: "cpu", fallbackReason: errorMessage(err) };
  }
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
  const created = await createSession();
  session = created.session;
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  if (inputName === undefined || outputName === undefined) throw new Error("model has no input or no output");
  post({
    type: "ready",
    executionProvider: created.ep,
    ...(created.fallbackReason === undefined ? {} : { fallbackReason: created.fallbackReason }),
    inputName,
    outputName,
    inputDims: dimsOf(session.inputMetadata, inputName),
    outputDims: dimsOf(session.outputMetadata, outputName),
    createMs: performance.now() - t0,
  });
} catch (err) {
  post({ type: "init-error", message: errorMessage(err) });
  port.close();
}

if (session) {
  const sess = session;
  const inputName = sess.inputNames[0]!;
  const outputName = sess.outputNames[0]!;

  port.on("message", async (msg: HostToWorker) => {
    if (msg.type === "close") {
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
    const { id, dims, input } = msg;
    try {
      const t0 = performance.now();
      const results = await sess.run({ [inputName]: new ort.Tensor("float32", input, dims) });
      const computeMs = performance.now() - t0;
      const out = results[outputName];
      if (!out || out.type !== "float32") throw new Error(`output ${outputName} is missing or not float32`);
      // ORT output data may be a view at a byteOffset into a larger buffer (or an external, non-transferable
      // one): transfer only a buffer the array owns exactly, otherwise copy first.
      let output = ownedCopy(out.data as Float32Array);
      const reply = (o: Float32Array): WorkerToHost => ({ type: "result", id, output: o, outputDims: [...out.dims], computeMs });
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
}
