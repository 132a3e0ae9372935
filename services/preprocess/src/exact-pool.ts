/**
 * The worker-thread pool of the `exact` preprocessing mode: runs ./exact-worker.ts (the Pillow port) on decoded
 * RGB frames so its ~10 ms of CPU per image stays off the event loop.
 *
 * A fixed number of workers, one job per worker at a time, FIFO queue. Idle workers are unref'd so an idle pool
 * never keeps the process alive. A worker that dies fails its job (INTERNAL) and is replaced on the next dispatch.
 * An aborted queued job is dropped from the queue; an aborted running job is rejected at once and its result
 * discarded when it arrives. Rejections are GraphErrors only: DEADLINE_EXCEEDED (the caller's signal aborted),
 * UNAVAILABLE (closed), INTERNAL (the worker threw, died or could not start).
 */
// Not piscina: it terminates the worker of an aborted running job, and a replacement costs ~300 ms of tsx start-up here.
import { Worker } from "node:worker_threads";
import { startTsWorker } from "../../../runtime/index.ts";
import { GraphError } from "../../../subjects/errors.ts";
import type { ExactJobMessage, ExactReplyMessage } from "./exact-worker.ts";

export interface ExactPool {
  /**
   * Preprocesses one frame of packed RGB (`width * height * 3` bytes; the buffer may be transferred away) into the
   * model's pixels: uint8 CHW, 3 x 224 x 224.
   */
  run(rgb: Uint8Array, width: number, height: number, signal: AbortSignal | undefined): Promise<Uint8Array>;
  /** Rejects queued and running jobs with UNAVAILABLE and stops the workers. Idempotent. */
  close(): Promise<void>;
}

export function deadlineExceeded(signal: AbortSignal): GraphError {
  return new GraphError("DEADLINE_EXCEEDED", "deadline exceeded before preprocessing finished", {
    cause: signal.reason,
  });
}

const closedError = (): GraphError => new GraphError("UNAVAILABLE", "preprocessor is closed");

interface PendingJob {
  readonly id: number;
  readonly rgb: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (t: Uint8Array) => void;
  readonly reject: (e: GraphError) => void;
  /** Set once the caller's promise is settled (result, failure or abort); later outcomes are dropped. */
  done: boolean;
  onAbort?: () => void;
}

interface PoolSlot {
  worker: Worker | undefined;
  job: PendingJob | undefined;
}

/**
 * Starts one worker on ./exact-worker.ts. There is no build step: the worker runs the TypeScript source, so it
 * must load tsx itself. tsx 4 registers its loader hooks on the main thread only under Node 20, so
 * `execArgv: ["--import", "tsx"]` yields a worker that fails with "Unknown file extension .ts"; registering
 * tsx's ESM API inside the worker before importing the entry works on Node 20 and later.
 */
function spawnExactWorker(): Worker {
  return startTsWorker(new URL("./exact-worker.ts", import.meta.url), { name: "preprocess-exact" });
}

/** Creates the pool; its `size` workers start now and load in the background. */
export function createExactPool(size: number): ExactPool {
  const slots: PoolSlot[] = Array.from({ length: size }, () => ({ worker: undefined, job: undefined }));
  const queue: PendingJob[] = [];
  let nextId = 1;
  let closed = false;

  const finish = (job: PendingJob, outcome: Uint8Array | GraphError): void => {
    if (job.done) return;
    job.done = true;
    if (job.onAbort !== undefined) job.signal?.removeEventListener("abort", job.onAbort);
    if (outcome instanceof GraphError) job.reject(outcome);
    else job.resolve(outcome);
  };

  const startWorker = (slot: PoolSlot): Worker => {
    const worker = spawnExactWorker();
    worker.unref();
    worker.on("message", (msg: ExactReplyMessage) => {
      const job = slot.job;
      slot.job = undefined;
      worker.unref();
      if (job !== undefined && job.id === msg.id) {
        finish(
          job,
          "pixels" in msg
            ? msg.pixels
            : new GraphError("INTERNAL", "preprocessing failed", { cause: new Error(msg.error) }),
        );
      }
      dispatch();
    });
    const onGone = (cause: unknown): void => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      const job = slot.job;
      slot.job = undefined;
      if (job !== undefined) {
        finish(job, closed ? closedError() : new GraphError("INTERNAL", "preprocessing worker failed", { cause }));
      }
      if (!closed) dispatch();
    };
    worker.on("error", onGone);
    worker.on("exit", (code) => onGone(new Error(`worker exited with code ${code}`)));
    return worker;
  };

  const dispatch = (): void => {
    for (const slot of slots) {
      while (queue.length > 0 && slot.job === undefined) {
        const job = queue.shift()!;
        let worker: Worker;
        try {
          worker = slot.worker ?? (slot.worker = startWorker(slot));
        } catch (err) {
          finish(job, new GraphError("INTERNAL", "preprocessing worker failed to start", { cause: err }));
          continue;
        }
        slot.job = job;
        worker.ref();
        // The buffer goes in the transfer list: a plain ArrayBuffer is moved. sharp's output Buffers are
        // external memory that V8 cannot detach: Node 20 copies those (one memcpy of the frame), Node 22 and later
        // refuse them (DataCloneError), so they are copied here first. A view into a larger buffer is cut out
        // first so only the frame travels.
        // (A copy is Uint8Array's slice: a Buffer's own slice() is a view of the same memory.)
        const copy = (): Uint8Array => Uint8Array.prototype.slice.call(job.rgb);
        const standalone = job.rgb.byteOffset === 0 && job.rgb.byteLength === job.rgb.buffer.byteLength;
        let rgb = standalone ? job.rgb : copy();
        try {
          worker.postMessage({ id: job.id, rgb, width: job.width, height: job.height } satisfies ExactJobMessage, [
            rgb.buffer as ArrayBuffer,
          ]);
        } catch (err) {
          if (!(err instanceof Error && err.name === "DataCloneError")) throw err;
          rgb = copy();
          worker.postMessage({ id: job.id, rgb, width: job.width, height: job.height } satisfies ExactJobMessage, [
            rgb.buffer as ArrayBuffer,
          ]);
        }
      }
    }
  };

  for (const slot of slots) slot.worker = startWorker(slot);

  return {
    run(rgb, width, height, signal) {
      if (closed) return Promise.reject(closedError());
      if (signal?.aborted) return Promise.reject(deadlineExceeded(signal));
      return new Promise<Uint8Array>((resolve, reject) => {
        const job: PendingJob = { id: nextId++, rgb, width, height, signal, resolve, reject, done: false };
        if (signal !== undefined) {
          job.onAbort = () => {
            const queued = queue.indexOf(job);
            if (queued >= 0) queue.splice(queued, 1);
            // A running job cannot be interrupted: its worker stays busy and the reply is dropped.
            finish(job, deadlineExceeded(signal));
          };
          signal.addEventListener("abort", job.onAbort, { once: true });
        }
        queue.push(job);
        dispatch();
      });
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const job of queue.splice(0)) finish(job, closedError());
      await Promise.all(slots.map(async (slot) => slot.worker?.terminate()));
    },
  };
}
