/**
 * A generic micro-batcher with the semantics of Triton's dynamic batcher and Ray Serve's `@serve.batch`.
 *
 * Dispatch: a batch of up to `maxBatchSize` items leaves the queue when `maxBatchSize` items are
 * waiting, or when the OLDEST waiting item has waited `maxQueueDelayMs`, whichever comes first, and only
 * while fewer than `maxConcurrentBatches` batches are running. While every slot is busy, items keep
 * queueing; when a slot frees, the same two conditions are checked again at once (so a backlog that
 * is already full or already old leaves immediately).
 *
 * Admission and dropping:
 * - `enqueue` rejects at once with QUEUE_FULL (details `{ queueDepth, maxQueueSize }`) when
 *   `maxQueueSize` items are waiting, and with UNAVAILABLE once `stop()` has been called.
 * - An item whose `deadlineEpochMs` has passed, or whose `signal` has aborted, is never handed to `run`;
 *   it is rejected with DEADLINE_EXCEEDED. An abort removes a waiting item at once; a waiting item is
 *   removed when its deadline passes (the timer also wakes up for the earliest deadline), and the
 *   queue is always purged before a batch is formed. Once an item is in a running batch, its deadline
 *   and signal are no longer watched: it gets the batch's result.
 *
 * Results: `run(items)` must resolve to exactly `items.length` results, in order; otherwise every caller
 * of that batch gets CONTRACT_VIOLATION. A rejection (or a synchronous throw) of `run` fans out to every
 * caller of that batch as `GraphError.from(err)` and leaves other batches alone.
 *
 * Time: `now()` (epoch ms) measures waits and checks deadlines; the delay timer is the global
 * `setTimeout`, looked up at each use, so `node:test`'s `mock.timers` can drive it.
 *
 * Cost: `enqueue` is O(1) while no deadline has passed (the earliest deadline of the queue is kept, so the queue
 * is scanned only when it may hold an expired item, and once per dispatched batch); an inference node calls it
 * for every request.
 */
import { GraphError } from "../subjects/errors.ts";

export interface BatchInfo {
  /** Items handed to `run`. */
  size: number;
  /** Per item, in batch order: time from enqueue to dispatch. */
  queueWaitMs: number[];
  /** Time from dispatch until `run` settled. */
  computeMs: number;
  /** Set when `run` rejected or broke the result contract. */
  error?: unknown;
}

export interface BatcherOptions<T, R> {
  maxBatchSize: number;
  maxQueueDelayMs: number;
  /** Items allowed to wait (not counting running batches). */
  maxQueueSize: number;
  /** Default 1. */
  maxConcurrentBatches?: number;
  run: (items: T[]) => Promise<R[]>;
  /** Epoch ms; default `Date.now`. */
  now?: () => number;
  /** Called once per dispatched batch after its callers are settled; exceptions from it are ignored. */
  onBatch?: (info: BatchInfo) => void;
}

export interface EnqueueOptions {
  deadlineEpochMs?: number;
  signal?: AbortSignal;
}

export interface Batcher<T, R> {
  enqueue(item: T, opts?: EnqueueOptions): Promise<R>;
  /** Items waiting to be batched. */
  queueDepth(): number;
  /** Items in batches that are running. */
  inflightCount(): number;
  /** Rejects new items with UNAVAILABLE, dispatches what is queued without waiting for the delay, and resolves once every batch has finished. */
  stop(): Promise<void>;
}

interface Entry<T, R> {
  item: T;
  enqueuedAtMs: number;
  deadlineEpochMs: number | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  resolve: (r: R) => void;
  reject: (err: unknown) => void;
}

function deadlineError(reason?: unknown): GraphError {
  return new GraphError(
    "DEADLINE_EXCEEDED",
    "deadline exceeded before the batch ran",
    reason === undefined ? {} : { cause: reason },
  );
}

function checkOptions<T, R>(opts: BatcherOptions<T, R>): void {
  const positiveInt = (name: string, v: unknown): void => {
    if (!Number.isInteger(v) || (v as number) < 1)
      throw new RangeError(`${name} must be an integer >= 1, got ${String(v)}`);
  };
  positiveInt("maxBatchSize", opts.maxBatchSize);
  positiveInt("maxQueueSize", opts.maxQueueSize);
  positiveInt("maxConcurrentBatches", opts.maxConcurrentBatches ?? 1);
  if (!Number.isFinite(opts.maxQueueDelayMs) || opts.maxQueueDelayMs < 0) {
    throw new RangeError(`maxQueueDelayMs must be a finite number >= 0, got ${String(opts.maxQueueDelayMs)}`);
  }
  if (typeof opts.run !== "function") throw new TypeError("run must be a function");
}

export function createBatcher<T, R>(opts: BatcherOptions<T, R>): Batcher<T, R> {
  checkOptions(opts);
  const { maxBatchSize, maxQueueDelayMs, maxQueueSize, run, onBatch } = opts;
  const maxConcurrentBatches = opts.maxConcurrentBatches ?? 1;
  const now = opts.now ?? (() => Date.now()); // looked up per call: Date may be mocked after creation

  let queue: Entry<T, R>[] = [];
  /** No waiting item's deadline is earlier (it may be earlier than the true minimum after removals: harmless). */
  let earliestDeadlineMs = Infinity;
  let runningBatches = 0;
  let inflightItems = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let timerDueMs = 0;
  let stopping = false;
  let stopped: Promise<void> | undefined;
  let resolveStopped: (() => void) | undefined;

  const clearTimer = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };

  const detach = (e: Entry<T, R>): void => {
    if (e.onAbort) e.signal?.removeEventListener("abort", e.onAbort);
    e.onAbort = undefined;
  };

  const isDead = (e: Entry<T, R>, t: number): boolean =>
    e.signal?.aborted === true || (e.deadlineEpochMs !== undefined && e.deadlineEpochMs <= t);

  const recomputeEarliest = (): void => {
    earliestDeadlineMs = Infinity;
    for (const e of queue)
      if (e.deadlineEpochMs !== undefined && e.deadlineEpochMs < earliestDeadlineMs)
        earliestDeadlineMs = e.deadlineEpochMs;
  };

  /**
   * Rejects and removes every expired waiting item. (An aborted item has already left the queue: its abort
   * listener removes it at once; `isDead` covers a signal that aborted without firing, e.g. before enqueue.)
   */
  const purge = (t: number): void => {
    if (t < earliestDeadlineMs) return;
    recomputeEarliest();
    if (t < earliestDeadlineMs) return;
    const live: Entry<T, R>[] = [];
    for (const e of queue) {
      if (isDead(e, t)) {
        detach(e);
        e.reject(deadlineError(e.signal?.aborted ? e.signal.reason : undefined));
      } else {
        live.push(e);
      }
    }
    queue = live;
    recomputeEarliest();
  };

  const maybeStopped = (): void => {
    if (stopping && queue.length === 0 && runningBatches === 0) resolveStopped?.();
  };

  /** Dispatches every batch that is due, then arms the timer for the oldest waiting item. */
  const pump = (): void => {
    const t = now();
    purge(t);
    while (queue.length > 0 && runningBatches < maxConcurrentBatches) {
      const oldest = queue[0]!;
      const due = stopping || queue.length >= maxBatchSize || t - oldest.enqueuedAtMs >= maxQueueDelayMs;
      if (!due) break;
      dispatch(queue.splice(0, maxBatchSize), t);
      recomputeEarliest();
    }
    // Wake up when the oldest item's delay runs out (if a slot is free) or the earliest deadline passes,
    // so that an expired caller hears DEADLINE_EXCEEDED on time even while every slot is busy.
    let dueMs =
      queue.length > 0 && runningBatches < maxConcurrentBatches ? queue[0]!.enqueuedAtMs + maxQueueDelayMs : Infinity;
    if (queue.length > 0 && earliestDeadlineMs < dueMs) dueMs = earliestDeadlineMs;
    if (dueMs === Infinity) {
      clearTimer();
    } else if (timer === undefined || timerDueMs !== dueMs) {
      clearTimer();
      timerDueMs = dueMs;
      // At least 1 ms: timers and Date.now can disagree by a fraction of a millisecond; if it fires
      // early, pump() simply re-arms for the remainder.
      timer = setTimeout(
        () => {
          timer = undefined;
          pump();
        },
        Math.max(1, dueMs - t),
      );
    }
    maybeStopped();
  };

  const dispatch = (entries: Entry<T, R>[], t: number): void => {
    for (const e of entries) detach(e);
    const queueWaitMs = entries.map((e) => t - e.enqueuedAtMs);
    runningBatches++;
    inflightItems += entries.length;

    const settle = (results: R[] | undefined, error: unknown): void => {
      runningBatches--;
      inflightItems -= entries.length;
      if (error === undefined && (!Array.isArray(results) || results.length !== entries.length)) {
        error = new GraphError("CONTRACT_VIOLATION", "batch run returned a wrong number of results", {
          details: { expected: entries.length, actual: Array.isArray(results) ? results.length : typeof results },
        });
      }
      if (error === undefined) {
        entries.forEach((e, i) => e.resolve(results![i] as R));
      } else {
        const ge = GraphError.from(error);
        for (const e of entries) e.reject(ge);
      }
      if (onBatch) {
        try {
          onBatch({
            size: entries.length,
            queueWaitMs,
            computeMs: now() - t,
            ...(error === undefined ? {} : { error }),
          });
        } catch {
          // metrics must not break batching
        }
      }
      pump();
    };

    let pending: Promise<R[]>;
    try {
      pending = Promise.resolve(run(entries.map((e) => e.item)));
    } catch (err) {
      pending = Promise.reject(err);
    }
    pending.then(
      (r) => settle(r, undefined),
      (err: unknown) => settle(undefined, err ?? new Error("batch run rejected")),
    );
  };

  const enqueue = (item: T, eopts: EnqueueOptions = {}): Promise<R> => {
    if (stopping) return Promise.reject(new GraphError("UNAVAILABLE", "batcher is stopping"));
    const t = now();
    const { deadlineEpochMs, signal } = eopts;
    if (signal?.aborted) return Promise.reject(deadlineError(signal.reason));
    if (deadlineEpochMs !== undefined && deadlineEpochMs <= t) return Promise.reject(deadlineError());
    if (queue.length >= maxQueueSize) purge(t); // expired items must not hold places
    if (queue.length >= maxQueueSize) {
      return Promise.reject(
        new GraphError("QUEUE_FULL", "inference queue is full", {
          details: { queueDepth: queue.length, maxQueueSize },
        }),
      );
    }
    return new Promise<R>((resolve, reject) => {
      const entry: Entry<T, R> = {
        item,
        enqueuedAtMs: t,
        deadlineEpochMs,
        signal,
        onAbort: undefined,
        resolve,
        reject,
      };
      if (signal) {
        entry.onAbort = () => {
          const i = queue.indexOf(entry);
          if (i < 0) return;
          queue.splice(i, 1);
          entry.onAbort = undefined;
          // earliestDeadlineMs may now be earlier than the queue's: a harmless early wake-up at most.
          reject(deadlineError(signal.reason));
          pump(); // the oldest item may have changed: re-arm the timer
        };
        signal.addEventListener("abort", entry.onAbort, { once: true });
      }
      queue.push(entry);
      if (deadlineEpochMs !== undefined && deadlineEpochMs < earliestDeadlineMs) earliestDeadlineMs = deadlineEpochMs;
      pump();
    });
  };

  const stop = (): Promise<void> => {
    if (!stopped) {
      stopping = true;
      stopped = new Promise<void>((res) => {
        resolveStopped = res;
      });
      pump();
    }
    return stopped;
  };

  return {
    enqueue,
    queueDepth: () => queue.length,
    inflightCount: () => inflightItems,
    stop,
  };
}
