/**
 * The aggregation of discovery answers over replicas (runtime/graph-status.ts summarize), which `servegraph status`,
 * the autoscaler's view in /dashboard and the dashboard's nodes read: per-replica figures counted once, p50 weighted
 * by recent samples, p99 the largest, batch figures weighted by recent batches, up's control service kept apart.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { CONTROL_SERVICE, summarize, type StatsReply } from "../../runtime/graph-status.ts";

const stats = (
  node: string,
  replica: string,
  host: string,
  eps: { name: string; requests: number; p50?: number; p99?: number }[],
  data: Record<string, unknown> = {},
): StatsReply => ({
  name: node,
  id: `id-${replica}`,
  metadata: { replica, host },
  endpoints: eps.map((e) => ({
    name: e.name,
    subject: `sg.v1.${node}.${e.name}`,
    num_requests: e.requests,
    num_errors: 0,
    data: { ...data, p50_ms: e.p50 ?? 0, p99_ms: e.p99 ?? 0 },
  })),
});

test("graph status - per-replica figures once per replica, p50 weighted by samples, p99 the largest", () => {
  const s = summarize(
    [],
    [
      stats(
        "greeter",
        "greeter-2",
        "b",
        [
          { name: "greet", requests: 300, p50: 4, p99: 9 },
          { name: "info", requests: 100, p50: 1, p99: 2 },
        ],
        { in_flight: 3 },
      ),
      stats(
        "greeter",
        "greeter-1",
        "a",
        [
          { name: "greet", requests: 100, p50: 2, p99: 20 },
          { name: "info", requests: 0 },
        ],
        { in_flight: 2 },
      ),
    ],
  );
  const n = s.nodes[0]!;
  assert.equal(n.replicas, 2);
  assert.equal(n.in_flight, 5, "in_flight is repeated in every endpoint's data: counted once per replica");
  assert.deepEqual(
    n.replica_list.map((r) => [r.id, r.host, r.in_flight, r.requests]),
    [
      ["greeter-1", "a", 2, 100],
      ["greeter-2", "b", 3, 400],
    ],
    "by host, then id",
  );
  assert.deepEqual(n.hosts, { a: 1, b: 1 });
  assert.equal(n.requests, 500);
  const greet = n.endpoints.find((e) => e.name === "greet")!;
  assert.equal(greet.p50_ms, (4 * 300 + 2 * 100) / 400);
  assert.equal(greet.p99_ms, 20, "an upper bound: the largest replica p99");
  assert.equal(n.endpoints.find((e) => e.name === "info")!.p50_ms, 1, "a replica without requests does not weigh");
  assert.equal(n.batch, null, "no batch figures without batch_fill");
});

test("graph status - batch figures weighted by recent batches; up's control service is not a node", () => {
  const batch = (fill: number, batches: number, depth: number) => ({
    batch_fill: fill,
    batches,
    avg_batch_size: fill * 32,
    max_batch_size: 32,
    queue_depth: depth,
    execution_provider: "cpu",
  });
  const s = summarize(
    [{ name: CONTROL_SERVICE, id: "ctl", metadata: { graph: "demo" } }],
    [
      stats("infer", "infer-1", "h", [{ name: "run", requests: 10 }], batch(0.5, 100, 4)),
      stats("infer", "infer-2", "h", [{ name: "run", requests: 10 }], batch(1, 300, 6)),
    ],
    ["greeter"],
  );
  assert.deepEqual(
    s.nodes.map((n) => n.node),
    ["greeter", "infer"],
    "an expected node without replicas is listed",
  );
  assert.equal(s.nodes[0]!.replicas, 0);
  const b = s.nodes[1]!.batch!;
  assert.equal(b.batch_fill, (0.5 * 100 + 1 * 300) / 400);
  assert.equal(b.queue_depth, 10);
  assert.equal(b.batches, 400);
  assert.deepEqual(s.control, { replicas: 1, graph: "demo" });
  assert.equal(s.graph, "demo", "the control service's graph when no node names one");
});

test("stats data - read through its one definition: known fields typed, a malformed one absent alone, unknown ones dropped", async () => {
  const { readStatsData } = await import("../../subjects/stats.ts");
  assert.deepEqual(
    readStatsData({ in_flight: 2, batch_fill: 0.5, queue_depth: "7", surprise: 1, ab_decisions: { A: 3, B: 1 } }),
    { in_flight: 2, batch_fill: 0.5, ab_decisions: { A: 3, B: 1 } },
  );
  assert.deepEqual(readStatsData(null), {});
  assert.deepEqual(readStatsData("nope"), {});
  assert.deepEqual(readStatsData({ batch_fill: 2 }), {}, "a fill above 1 is not a fill");
});
