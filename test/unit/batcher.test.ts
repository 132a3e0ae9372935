import assert from "node:assert/strict";
import { test, type TestContext } from "node:test";
import { createBatcher, type BatchInfo, type BatcherOptions } from "../../runtime/batcher.ts";
import { GraphError } from "../../subjects/errors.ts";

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (err: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every pending promise callback run (setImmediate is not mocked: only setTimeout and Date are). */
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Observes a promise without awaiting it, so tests can check "settled yet?" at any point. */
function watch<T>(p: Promise<T>): {
  state: () => "pending" | "resolved" | "rejected";
  value: () => T;
  error: () => unknown;
} {
  let state: "pending" | "resolved" | "rejected" = "pending";
  let value: T;
  let error: unknown;
  p.then(
    (v) => {
      state = "resolved";
      value = v;
    },
    (e: unknown) => {
      state = "rejected";
      error = e;
    },
  );
  return { state: () => state, value: () => value, error: () => error };
}

function code(err: unknown): string | undefined {
  return err instanceof GraphError ? err.code : undefined;
}

/** A batcher whose every run is a deferred the test settles; `calls` records what run saw. */
function gatedBatcher(t: TestContext, opts: Partial<BatcherOptions<string, string>> = {}) {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
  const calls: Array<{ items: string[]; gate: Deferred<string[]> }> = [];
  const batches: BatchInfo[] = [];
  const batcher = createBatcher<string, string>({
    maxBatchSize: 4,
    maxQueueDelayMs: 10,
    maxQueueSize: 100,
    run: (items) => {
      const gate = deferred<string[]>();
      calls.push({ items, gate });
      return gate.promise;
    },
    onBatch: (info) => batches.push(info),
    ...opts,
  });
  const answer = (i: number): void => {
    const c = calls[i]!;
    c.gate.resolve(c.items.map((x) => `r:${x}`));
  };
  return { batcher, calls, batches, answer };
}

test("batcher - dispatches as soon as maxBatchSize items are queued", async (t) => {
  const { batcher, calls, answer } = gatedBatcher(t, { maxBatchSize: 3, maxQueueDelayMs: 1000 });
  const ps = ["a", "b", "c"].map((x) => batcher.enqueue(x));
  assert.equal(calls.length, 1, "no timer tick needed");
  assert.deepEqual(calls[0]!.items, ["a", "b", "c"]);
  assert.equal(batcher.queueDepth(), 0);
  assert.equal(batcher.inflightCount(), 3);
  answer(0);
  assert.deepEqual(await Promise.all(ps), ["r:a", "r:b", "r:c"]);
  assert.equal(batcher.inflightCount(), 0);
});

test("batcher - a partial batch runs exactly when maxQueueDelayMs has passed, not before", async (t) => {
  const { batcher, calls, answer } = gatedBatcher(t, { maxBatchSize: 8, maxQueueDelayMs: 10 });
  const ps = [batcher.enqueue("a"), batcher.enqueue("b")];
  t.mock.timers.tick(9);
  assert.equal(calls.length, 0);
  assert.equal(batcher.queueDepth(), 2);
  t.mock.timers.tick(1);
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0]!.items, ["a", "b"]);
  answer(0);
  assert.deepEqual(await Promise.all(ps), ["r:a", "r:b"]);
});

test("batcher - the delay is measured from the oldest queued item", async (t) => {
  const { batcher, calls, batches, answer } = gatedBatcher(t, { maxBatchSize: 8, maxQueueDelayMs: 10 });
  const pa = batcher.enqueue("a");
  t.mock.timers.tick(6);
  const pb = batcher.enqueue("b");
  t.mock.timers.tick(3);
  assert.equal(calls.length, 0);
  t.mock.timers.tick(1); // 10 ms after "a", 4 ms after "b"
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0]!.items, ["a", "b"]);
  answer(0);
  await Promise.all([pa, pb]);
  assert.deepEqual(batches[0]!.queueWaitMs, [10, 4]);
});

test("batcher - the next delay starts from the new oldest item after a dispatch", async (t) => {
  const { batcher, calls, answer } = gatedBatcher(t, { maxBatchSize: 2, maxQueueDelayMs: 10, maxConcurrentBatches: 2 });
  const pa = batcher.enqueue("a");
  t.mock.timers.tick(5);
  const pb = batcher.enqueue("b"); // size trigger at t=5
  const pc = batcher.enqueue("c");
  assert.equal(calls.length, 1);
  t.mock.timers.tick(9);
  assert.equal(calls.length, 1, "c has waited 9 ms");
  t.mock.timers.tick(1);
  assert.equal(calls.length, 2);
  assert.deepEqual(calls[1]!.items, ["c"]);
  answer(0);
  answer(1);
  assert.deepEqual(await Promise.all([pa, pb, pc]), ["r:a", "r:b", "r:c"]);
});

test("batcher - a full queue rejects at once with QUEUE_FULL and its numbers", async (t) => {
  const { batcher, calls } = gatedBatcher(t, { maxBatchSize: 8, maxQueueDelayMs: 50, maxQueueSize: 2 });
  const kept = [watch(batcher.enqueue("a")), watch(batcher.enqueue("b"))];
  const over = watch(batcher.enqueue("c"));
  await flush(); // no timer has moved
  assert.equal(over.state(), "rejected");
  const err = over.error();
  assert.equal(code(err), "QUEUE_FULL");
  assert.deepEqual((err as GraphError).details, { queueDepth: 2, maxQueueSize: 2 });
  assert.equal((err as GraphError).retryable, true);
  assert.deepEqual(
    kept.map((w) => w.state()),
    ["pending", "pending"],
  );
  assert.equal(batcher.queueDepth(), 2);
  t.mock.timers.tick(50);
  assert.deepEqual(calls[0]!.items, ["a", "b"], "the rejected item never reaches run");
});

test("batcher - running batches do not count against maxQueueSize", async (t) => {
  const { batcher, calls } = gatedBatcher(t, { maxBatchSize: 2, maxQueueDelayMs: 50, maxQueueSize: 2 });
  batcher.enqueue("a");
  batcher.enqueue("b"); // dispatched, slot now busy
  assert.equal(calls.length, 1);
  const waiting = [watch(batcher.enqueue("c")), watch(batcher.enqueue("d"))];
  const over = watch(batcher.enqueue("e"));
  await flush();
  assert.deepEqual(
    waiting.map((w) => w.state()),
    ["pending", "pending"],
  );
  assert.equal(code(over.error()), "QUEUE_FULL");
});

test("batcher - an item whose deadline passed is rejected with DEADLINE_EXCEEDED and never reaches run", async (t) => {
  const { batcher, calls, answer } = gatedBatcher(t, { maxBatchSize: 8, maxQueueDelayMs: 10 });
  const expiring = watch(batcher.enqueue("late", { deadlineEpochMs: Date.now() + 5 }));
  const pb = batcher.enqueue("ok", { deadlineEpochMs: Date.now() + 1000 });
  t.mock.timers.tick(5);
  await flush();
  assert.equal(expiring.state(), "rejected", "rejected when its deadline passes, not at dispatch");
  assert.equal(code(expiring.error()), "DEADLINE_EXCEEDED");
  assert.equal(batcher.queueDepth(), 1);
  t.mock.timers.tick(5);
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0]!.items, ["ok"]);
  answer(0);
  assert.equal(await pb, "r:ok");
});

test("batcher - items that expire while every slot is busy are dropped before the next batch", async (t) => {
  const { batcher, calls, answer } = gatedBatcher(t, { maxBatchSize: 2, maxQueueDelayMs: 0 });
  const first = batcher.enqueue("a");
  assert.equal(calls.length, 1);
  const expiring = watch(batcher.enqueue("late", { deadlineEpochMs: Date.now() + 3 }));
  const pc = batcher.enqueue("c");
  t.mock.timers.tick(3);
  await flush();
  assert.equal(code(expiring.error()), "DEADLINE_EXCEEDED");
  answer(0);
  await first;
  assert.equal(calls.length, 2);
  assert.deepEqual(calls[1]!.items, ["c"]);
  answer(1);
  assert.equal(await pc, "r:c");
});

test("batcher - an already expired deadline or aborted signal is rejected at enqueue", async (t) => {
  const { batcher, calls } = gatedBatcher(t);
  await assert.rejects(batcher.enqueue("x", { deadlineEpochMs: Date.now() }), (e) => code(e) === "DEADLINE_EXCEEDED");
  await assert.rejects(batcher.enqueue("y", { signal: AbortSignal.abort() }), (e) => code(e) === "DEADLINE_EXCEEDED");
  assert.equal(batcher.queueDepth(), 0);
  t.mock.timers.tick(100);
  assert.equal(calls.length, 0);
});

test("batcher - aborting a waiting item's signal removes it from the queue", async (t) => {
  const { batcher, calls, answer } = gatedBatcher(t, { maxBatchSize: 8, maxQueueDelayMs: 10 });
  const ac = new AbortController();
  const aborted = watch(batcher.enqueue("a", { signal: ac.signal }));
  t.mock.timers.tick(4);
  const pb = batcher.enqueue("b");
  assert.equal(batcher.queueDepth(), 2);
  ac.abort();
  await flush();
  assert.equal(batcher.queueDepth(), 1);
  assert.equal(code(aborted.error()), "DEADLINE_EXCEEDED");
  t.mock.timers.tick(6); // "a"'s delay, which no longer counts
  assert.equal(calls.length, 0, "the delay now runs from b, the new oldest item");
  t.mock.timers.tick(4);
  assert.deepEqual(calls[0]!.items, ["b"]);
  answer(0);
  assert.equal(await pb, "r:b");
});

test("batcher - a run rejection fails only the callers of that batch", async (t) => {
  const { batcher, calls, answer } = gatedBatcher(t, { maxBatchSize: 2, maxConcurrentBatches: 2 });
  const first = ["a", "b"].map((x) => watch(batcher.enqueue(x)));
  const second = ["c", "d"].map((x) => watch(batcher.enqueue(x)));
  assert.equal(calls.length, 2);
  const modelErr = new GraphError("MODEL_ERROR", "model run failed");
  calls[0]!.gate.reject(modelErr);
  answer(1);
  await flush();
  for (const w of first) {
    assert.equal(w.state(), "rejected");
    assert.equal(w.error(), modelErr, "MODEL_ERROR stays MODEL_ERROR");
  }
  assert.deepEqual(
    second.map((w) => w.value()),
    ["r:c", "r:d"],
  );

  // A non-GraphError becomes INTERNAL for every caller of the batch, and the batcher keeps working.
  const third = ["e", "f"].map((x) => watch(batcher.enqueue(x)));
  calls[2]!.gate.reject(new Error("boom"));
  await flush();
  assert.deepEqual(
    third.map((w) => code(w.error())),
    ["INTERNAL", "INTERNAL"],
  );
  const after = batcher.enqueue("g");
  t.mock.timers.tick(10);
  answer(3);
  assert.equal(await after, "r:g");
});

test("batcher - a synchronous throw from run fans out like a rejection", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const batcher = createBatcher<number, number>({
    maxBatchSize: 2,
    maxQueueDelayMs: 5,
    maxQueueSize: 10,
    run: () => {
      throw new GraphError("MODEL_ERROR", "sync");
    },
  });
  const ps = [batcher.enqueue(1), batcher.enqueue(2)];
  for (const p of ps) await assert.rejects(p, (e) => code(e) === "MODEL_ERROR");
});

test("batcher - a wrong number of results is a CONTRACT_VIOLATION for every caller", async (t) => {
  const { batcher, calls, batches } = gatedBatcher(t, { maxBatchSize: 3 });
  const ws = ["a", "b", "c"].map((x) => watch(batcher.enqueue(x)));
  calls[0]!.gate.resolve(["only", "two"]);
  await flush();
  assert.deepEqual(
    ws.map((w) => code(w.error())),
    ["CONTRACT_VIOLATION", "CONTRACT_VIOLATION", "CONTRACT_VIOLATION"],
  );
  assert.equal(code(batches[0]!.error), "CONTRACT_VIOLATION");
});

test("batcher - maxConcurrentBatches caps running batches; the backlog leaves as soon as a slot frees", async (t) => {
  const { batcher, calls, answer } = gatedBatcher(t, { maxBatchSize: 2, maxQueueDelayMs: 10, maxConcurrentBatches: 1 });
  const ps = ["a", "b", "c", "d", "e"].map((x) => batcher.enqueue(x));
  assert.equal(calls.length, 1);
  t.mock.timers.tick(100); // c, d, e are long overdue, but the only slot is busy
  assert.equal(calls.length, 1);
  assert.equal(batcher.queueDepth(), 3);
  assert.equal(batcher.inflightCount(), 2);
  answer(0);
  await flush();
  assert.equal(calls.length, 2, "dispatched on completion, no timer needed");
  assert.deepEqual(calls[1]!.items, ["c", "d"], "takes up to maxBatchSize");
  answer(1);
  await flush();
  assert.deepEqual(calls[2]!.items, ["e"]);
  answer(2);
  assert.deepEqual(await Promise.all(ps), ["r:a", "r:b", "r:c", "r:d", "r:e"]);
});

test("batcher - with two slots, two batches run at once and a third waits", async (t) => {
  const { batcher, calls, answer } = gatedBatcher(t, { maxBatchSize: 1, maxQueueDelayMs: 10, maxConcurrentBatches: 2 });
  const ps = ["a", "b", "c"].map((x) => batcher.enqueue(x));
  assert.equal(calls.length, 2);
  assert.equal(batcher.inflightCount(), 2);
  assert.equal(batcher.queueDepth(), 1);
  answer(1);
  await flush();
  assert.equal(calls.length, 3);
  assert.deepEqual(calls[2]!.items, ["c"]);
  answer(0);
  answer(2);
  assert.deepEqual(await Promise.all(ps), ["r:a", "r:b", "r:c"]);
});

test("batcher - stop() refuses new items, flushes the queue without waiting for the delay, and resolves when all batches finish", async (t) => {
  const { batcher, calls, answer } = gatedBatcher(t, { maxBatchSize: 2, maxQueueDelayMs: 1000 });
  const pa = batcher.enqueue("a");
  const pb = batcher.enqueue("b"); // running
  const pc = batcher.enqueue("c"); // waiting, far from its delay
  const stopped = watch(batcher.stop());
  assert.equal(batcher.stop() instanceof Promise, true);
  await assert.rejects(batcher.enqueue("late"), (e) => code(e) === "UNAVAILABLE");
  await flush();
  assert.equal(stopped.state(), "pending");
  assert.equal(calls.length, 1, "the only slot is still busy");
  answer(0);
  await flush();
  assert.deepEqual(calls[1]!.items, ["c"], "queued item dispatched without the 1000 ms delay");
  assert.equal(stopped.state(), "pending");
  answer(1);
  await flush();
  assert.equal(stopped.state(), "resolved");
  assert.deepEqual(await Promise.all([pa, pb, pc]), ["r:a", "r:b", "r:c"]);
});

test("batcher - stop() on an idle batcher resolves at once", async (t) => {
  const { batcher } = gatedBatcher(t);
  await batcher.stop();
  await assert.rejects(batcher.enqueue("x"), (e) => code(e) === "UNAVAILABLE");
});

test("batcher - onBatch reports size, per-item queue wait, compute time and errors", async (t) => {
  const { batcher, calls, batches, answer } = gatedBatcher(t, { maxBatchSize: 3, maxQueueDelayMs: 10 });
  const p1 = batcher.enqueue("a");
  t.mock.timers.tick(2);
  const p2 = batcher.enqueue("b");
  t.mock.timers.tick(8); // dispatch: waits 10 and 8
  t.mock.timers.tick(7); // compute
  answer(0);
  await Promise.all([p1, p2]);
  assert.deepEqual(batches[0], { size: 2, queueWaitMs: [10, 8], computeMs: 7 });

  const p3 = watch(batcher.enqueue("c"));
  t.mock.timers.tick(10);
  calls[1]!.gate.reject(new GraphError("MODEL_ERROR", "x"));
  await flush();
  assert.equal(p3.state(), "rejected");
  assert.equal(batches[1]!.size, 1);
  assert.equal(code(batches[1]!.error), "MODEL_ERROR");
});

test("batcher - a throwing onBatch does not break batching", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const batcher = createBatcher<number, number>({
    maxBatchSize: 1,
    maxQueueDelayMs: 0,
    maxQueueSize: 10,
    run: async (xs) => xs.map((x) => x * 2),
    onBatch: () => {
      throw new Error("metrics down");
    },
  });
  assert.equal(await batcher.enqueue(1), 2);
  assert.equal(await batcher.enqueue(2), 4);
});

test("batcher - a custom now() drives waits and deadlines", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  let clock = 500;
  const seen: number[][] = [];
  const batcher = createBatcher<number, number>({
    maxBatchSize: 4,
    maxQueueDelayMs: 10,
    maxQueueSize: 10,
    now: () => clock,
    run: async (xs) => xs,
    onBatch: (info) => seen.push(info.queueWaitMs),
  });
  const expired = watch(batcher.enqueue(1, { deadlineEpochMs: 505 }));
  const p = batcher.enqueue(2);
  clock = 510;
  t.mock.timers.tick(10);
  assert.equal(await p, 2);
  assert.equal(code(expired.error()), "DEADLINE_EXCEEDED");
  assert.deepEqual(seen, [[10]]);
});

test("batcher - invalid options are rejected at creation", () => {
  const run = async (xs: number[]) => xs;
  const base = { maxBatchSize: 4, maxQueueDelayMs: 5, maxQueueSize: 10, run };
  assert.throws(() => createBatcher({ ...base, maxBatchSize: 0 }), RangeError);
  assert.throws(() => createBatcher({ ...base, maxQueueSize: 1.5 }), RangeError);
  assert.throws(() => createBatcher({ ...base, maxConcurrentBatches: 0 }), RangeError);
  assert.throws(() => createBatcher({ ...base, maxQueueDelayMs: -1 }), RangeError);
});
