/**
 * Batching for any node: a node of the graph serves a batched endpoint with `ctx.serveBatch` (the runtime's
 * batcher, its knobs from graph.config.ts `batching`), on a real nats-server with a real replica process.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "../../runtime/index.ts";
import { GraphError } from "../../subjects/index.ts";
import { REPO_ROOT, startGraph } from "../helpers/graph.ts";
import { SummerAdd } from "../fixtures/services/summer/src/endpoints.ts";

const GRAPH = `${REPO_ROOT}/test/fixtures/batch-node-graph.config.ts`;

test(
  "batch node - concurrent requests form batches of the configured size; a full queue is QUEUE_FULL; stats and metrics report the batches",
  { timeout: 120_000 },
  async () => {
    await using g = await startGraph({ graphs: ["summer"], graphFile: GRAPH });
    const client = createClient(g.nc, { caller: "test", defaultTimeoutMs: 5000 });
    const subject = "sg.v1.summer.add";
    // 4 at once: one batch of 4 (maxBatchSize), each caller its own answer.
    const four = await Promise.all([1, 2, 3, 4].map((x) => client.call(SummerAdd, subject, { x })));
    assert.deepEqual(
      four.map((r) => r.y),
      [2, 3, 4, 5],
    );
    assert.deepEqual(
      four.map((r) => [r.batch, r.batch_sum]),
      [
        [4, 10],
        [4, 10],
        [4, 10],
        [4, 10],
      ],
    );
    // One alone leaves after maxQueueDelayMs, in a batch of 1.
    const one = await client.call(SummerAdd, subject, { x: 41 });
    assert.deepEqual(one, { y: 42, batch: 1, batch_sum: 41 });
    // 4 run (200 ms) while 6 wait: the 11th request finds the queue full, at once.
    const many = await Promise.allSettled(
      Array.from({ length: 11 }, (_, i) => client.call(SummerAdd, subject, { x: i })),
    );
    const full = many.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason as unknown);
    assert.ok(full.length >= 1, "at least one QUEUE_FULL");
    for (const e of full) assert.ok(e instanceof GraphError && e.code === "QUEUE_FULL", `QUEUE_FULL, got ${String(e)}`);
    assert.ok(many.filter((r) => r.status === "fulfilled").length >= 10 - 1, "the rest are answered");

    const stats = await g.nc.request("$SRV.STATS.summer", new Uint8Array(0), { timeout: 2000 });
    const data = (stats.json() as { endpoints: { data: Record<string, number> }[] }).endpoints[0]!.data;
    assert.ok(data.batches! >= 3, `batches ${data.batches}`);
    assert.equal(data.max_batch_size, 4);
    assert.equal(data.queue_depth, 0);
    assert.ok(data.batch_fill! > 0 && data.batch_fill! <= 1, `batch fill ${data.batch_fill}`);
    const info = await g.nc.request("$SRV.INFO.summer", new Uint8Array(0), { timeout: 2000 });
    const metricsUrl = (info.json() as { metadata: Record<string, string> }).metadata.metrics_url!;
    const text = await (await fetch(metricsUrl)).text();
    assert.match(text, /sg_batch_size_bucket\{le="4",[^}]*node="summer"[^}]*\} [1-9]/);
    assert.match(text, /sg_batch_queue_limit\{[^}]*node="summer"[^}]*\} 6/);
  },
);
