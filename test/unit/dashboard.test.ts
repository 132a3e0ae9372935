/**
 * The dashboard's pure parts: the graph it draws from graph.config.ts (edges from subject parameters, dependsOn and
 * the ingress's routes; columns), rates from successive discovery readings, the autoscaler's answer, the
 * `Server-Timing` of /classify, and the one shared poller (fake clock: at most one reading per interval however
 * many subscribers, started by the first and stopped by the last, failures as frames).
 */
import { test, mock } from "node:test";
import assert from "node:assert/strict";
import { resolveGraph, type GraphStatus, type NodeStatus } from "../../runtime/index.ts";
import base from "../../graph.config.ts";
import { topologyOf, columnsOf, nodeOfSubject } from "../../services/ingress/src/dashboard/topology.ts";
import {
  autoscalerOf,
  frameOf,
  ratesOf,
  withHttpFigures,
  type Reading,
} from "../../services/ingress/src/dashboard/live.ts";
import { createStatusPoller } from "../../services/ingress/src/dashboard/poller.ts";
import type { LiveFrame } from "../../services/ingress/src/dashboard/live.ts";
import { serverTimingOf } from "../../services/ingress/src/server-timing.ts";
import { AutoscalerSnapshot, formatServerTiming, nestedTiming, parseServerTiming } from "../../subjects/index.ts";

const graph = resolveGraph(base, "graph.config.ts");

const INGRESS_ROUTES = [
  { label: "GET /greeting/:name", node: "greeter-proxy" },
  { label: "POST /classify", node: "preprocess" },
  { label: "GET /labels", node: "infer" },
  { label: "GET /process/:message", node: "ab-router" },
];

test("dashboard topology - edges from subject parameters, dependsOn and the ingress's routes", () => {
  const t = topologyOf(graph, { self: { node: "ingress", routes: INGRESS_ROUTES } });
  const edge = (from: string, to: string) => t.edges.find((e) => e.from === from && e.to === to);
  assert.deepEqual(edge("ingress", "preprocess"), {
    from: "ingress",
    to: "preprocess",
    via: ["POST /classify"],
    dependsOn: false,
  });
  assert.deepEqual(edge("ingress", "infer")?.via, ["GET /labels"]);
  // a subject parameter and a dependsOn to the same node are one edge
  assert.deepEqual(edge("preprocess", "infer"), {
    from: "preprocess",
    to: "infer",
    via: ["run", "labels"],
    dependsOn: true,
  });
  assert.deepEqual(edge("ab-router", "variant-a"), {
    from: "ab-router",
    to: "variant-a",
    via: ["process"],
    dependsOn: true,
  });
  assert.deepEqual(edge("greeter-proxy", "greeter")?.via, ["greet"]);
  assert.equal(t.edges.length, 8, t.edges.map((e) => `${e.from}->${e.to}`).join(", "));
  assert.equal(t.graph, "servegraph-demo");
});

test("dashboard topology - columns by hops from the way in; kinds, replicas and autoscale from the config", () => {
  const t = topologyOf(graph, { self: { node: "ingress", routes: INGRESS_ROUTES } });
  const col = Object.fromEntries(t.nodes.map((n) => [n.name, n.column]));
  // infer is called by the ingress (/labels) and by preprocess: the longest path puts it after preprocess
  assert.deepEqual(col, {
    ingress: 0,
    "ab-router": 1,
    "greeter-proxy": 1,
    preprocess: 1,
    greeter: 2,
    infer: 2,
    "variant-a": 2,
    "variant-b": 2,
  });
  // within a column by the position of the callers: the variants (ab-router first), greeter, then infer (preprocess last)
  assert.deepEqual(
    t.nodes.map((x) => x.name),
    ["ingress", "ab-router", "greeter-proxy", "preprocess", "variant-a", "variant-b", "greeter", "infer"],
  );
  const n = Object.fromEntries(t.nodes.map((x) => [x.name, x]));
  assert.equal(n.ingress!.http, true);
  assert.equal(n["variant-b"]!.kind, "variant");
  assert.equal(n["ab-router"]!.kind, "ab-router");
  assert.deepEqual(n.preprocess!.replicas, { min: 1, max: 8 });
  assert.deepEqual(n.preprocess!.autoscale, { metric: "inFlight", target: 4 });
  assert.equal(n["variant-a"]!.autoscale, null, "a fixed replica count is not autoscaled");
  assert.deepEqual(
    t.nodes.filter((x) => x.batching).map((x) => x.name),
    ["infer"],
  );
});

test("dashboard topology - only the running nodes, and no edge to a node that is not running", () => {
  const t = topologyOf(graph, {
    nodes: ["ingress", "preprocess", "infer"],
    self: {
      node: "ingress",
      routes: INGRESS_ROUTES.filter((r) => r.node !== "ab-router" && r.node !== "greeter-proxy"),
    },
  });
  assert.deepEqual(
    t.nodes.map((n) => n.name),
    ["ingress", "preprocess", "infer"],
  );
  assert.deepEqual(t.edges.map((e) => `${e.from}->${e.to}`).sort(), [
    "ingress->infer",
    "ingress->preprocess",
    "preprocess->infer",
  ]);
  assert.equal(topologyOf(graph, { nodes: ["ingress", "nope"] }).nodes.length, 1, "unknown names are ignored");
});

test("dashboard topology - subjects and columns", () => {
  assert.deepEqual(nodeOfSubject(graph, "sg.v1.infer.run"), { node: "infer", endpoint: "run" });
  assert.equal(nodeOfSubject(graph, "Hello"), undefined);
  assert.equal(nodeOfSubject(graph, "sg.v1.infer"), undefined);
  const c = columnsOf(
    ["a", "b", "c", "d"],
    [
      { from: "a", to: "b" },
      { from: "b", to: "c" },
      { from: "a", to: "c" },
    ],
  );
  assert.deepEqual(Object.fromEntries(c), { a: 0, b: 1, c: 2, d: 0 });
  const cyc = columnsOf(
    ["x", "y"],
    [
      { from: "x", to: "y" },
      { from: "y", to: "x" },
    ],
  );
  assert.equal(cyc.size, 2, "a cycle terminates");
});

const reading = (
  atMs: number,
  nodes: Record<string, { errors?: number; replicas: Record<string, number> }>,
): Reading => ({
  atMs,
  nodes: Object.entries(nodes).map(([node, n]) => ({
    node,
    errors: n.errors ?? 0,
    replica_list: Object.entries(n.replicas).map(([id, requests]) => ({ id, host: "h", in_flight: 0, requests })),
  })),
});

test("dashboard rates - requests and errors per second from two readings, per replica", () => {
  const a = reading(1000, { greeter: { errors: 1, replicas: { r1: 100, r2: 50 } } });
  const b = reading(3000, { greeter: { errors: 5, replicas: { r1: 140, r2: 70 } } });
  assert.deepEqual(
    ratesOf(undefined, a).get("greeter"),
    { requests_per_s: 0, errors_per_s: 0 },
    "first reading: no rate",
  );
  assert.deepEqual(ratesOf(a, b).get("greeter"), { requests_per_s: 30, errors_per_s: 2 });
});

test("dashboard rates - a replica that starts, stops or restarts adds nothing; never negative", () => {
  const a = reading(0, { p: { errors: 9, replicas: { r1: 100, r2: 500 } } });
  // r2 stopped (its errors left with it), r3 started with 1000 already counted, r1 restarted (counter reset)
  const b = reading(1000, { p: { errors: 2, replicas: { r1: 3, r3: 1000 } }, q: { replicas: { x: 7 } } });
  assert.deepEqual(ratesOf(a, b).get("p"), { requests_per_s: 0, errors_per_s: 0 });
  assert.deepEqual(
    ratesOf(a, b).get("q"),
    { requests_per_s: 0, errors_per_s: 0 },
    "a node not in the previous reading",
  );
  assert.deepEqual(
    ratesOf(b, reading(1000, { p: { replicas: { r1: 9 } } })).get("p"),
    { requests_per_s: 0, errors_per_s: 0 },
    "no time passed",
  );
});

function nodeStatus(node: string, over: Partial<NodeStatus> = {}): NodeStatus {
  return {
    node,
    replicas: 1,
    replica_list: [{ id: `${node}-1`, host: "h1", in_flight: 2, requests: 10 }],
    hosts: { h1: 1 },
    in_flight: 2,
    requests: 10,
    errors: 1,
    p50_ms: 3,
    p99_ms: 9,
    endpoints: [
      { name: "a", subject: "s.a", requests: 5, errors: 0, p50_ms: 3, p99_ms: 9, last_error: null },
      { name: "b", subject: "s.b", requests: 5, errors: 1, p50_ms: 3, p99_ms: 9, last_error: "503:no replica" },
    ],
    batch: null,
    ab_decisions: null,
    metrics_urls: [],
    http_url: null,
    ...over,
  };
}

test("dashboard frame - figures per node, the last error of any endpoint, batch and autoscaler", () => {
  const status: GraphStatus = {
    nats: "nats://x",
    graph: "g",
    at: "2026-11-30T00:00:00.000Z",
    control: { replicas: 1, graph: "g" },
    nodes: [
      nodeStatus("infer", {
        batch: {
          batches: 3,
          avg_batch_size: 4,
          max_batch_size: 32,
          batch_fill: 0.125,
          queue_depth: 2,
          execution_provider: "cpu",
          adapter: "",
          provider_fallbacks: [],
        },
      }),
      nodeStatus("greeter", { replicas: 0, replica_list: [], hosts: {}, endpoints: [] }),
    ],
  };
  const view = {
    target: 32,
    value: 40,
    desired: 2,
    mode: "auto",
    decision: "1 -> 2 (autoscaler): queue",
    decided_at: null,
  };
  const f = frameOf(status, new Map([["infer", { requests_per_s: 5, errors_per_s: 0.5 }]]), new Map([["infer", view]]));
  const infer = f.nodes[0]!;
  assert.equal(infer.last_error, "503:no replica");
  assert.deepEqual(infer.batch, {
    execution_provider: "cpu",
    adapter: "",
    batch_fill: 0.125,
    avg_batch_size: 4,
    max_batch_size: 32,
    queue_depth: 2,
  });
  assert.equal(infer.requests_per_s, 5);
  assert.deepEqual(infer.autoscaler, view);
  assert.deepEqual(infer.replica_list, [{ id: "infer-1", host: "h1", in_flight: 2 }]);
  const greeter = f.nodes[1]!;
  assert.equal(greeter.replicas, 0);
  assert.equal(greeter.requests_per_s, 0, "no rate known: 0");
  assert.equal(greeter.autoscaler, null);
  assert.equal(f.error, null);
});

test("dashboard autoscaler - target, value, desired, mode and last decision of up's snapshot; anything else ignored", () => {
  const node = {
    metric: "inFlight",
    min: 0,
    max: 4,
    scale_up_after_ms: 5000,
    scale_down_after_ms: 60000,
    replicas: 1,
    scale_to_zero: false,
    held: 0,
  } as const;
  const snapshot: AutoscalerSnapshot = {
    host: "vm",
    tick_ms: 1000,
    nodes: [
      {
        ...node,
        node: "greeter",
        target: 8,
        min: 1,
        replicas: 2,
        desired: 2,
        value: 11,
        pinned: null,
        activator: null,
        last_decision: {
          at: "2026-11-30T05:00:00.000Z",
          from: 1,
          to: 2,
          by: "autoscaler",
          reason: "inFlight 11 > 8/replica for 5s",
        },
      },
      {
        ...node,
        node: "preprocess",
        target: 4,
        desired: null,
        value: null,
        pinned: 3,
        activator: null,
        last_decision: null,
      },
      {
        ...node,
        node: "variant-b",
        target: 8,
        desired: 0,
        value: 0,
        pinned: null,
        activator: "armed",
        scale_to_zero: true,
        replicas: 0,
        last_decision: { at: "2026-11-30T05:01:00.000Z", from: 1, to: 0, by: "autoscaler", reason: "idle for 60s" },
      },
    ],
  };
  const a = autoscalerOf(snapshot);
  assert.deepEqual([...a.keys()], ["greeter", "preprocess", "variant-b"]);
  assert.deepEqual(a.get("greeter"), {
    target: 8,
    value: 11,
    desired: 2,
    mode: "auto",
    decision: "1 -> 2 (autoscaler): inFlight 11 > 8/replica for 5s",
    decided_at: "2026-11-30T05:00:00.000Z",
  });
  assert.deepEqual(a.get("preprocess"), {
    target: 4,
    value: null,
    desired: null,
    mode: "pinned at 3",
    decision: null,
    decided_at: null,
  });
  assert.equal(a.get("variant-b")!.mode, "at zero");
  assert.equal(a.get("variant-b")!.decision, "1 -> 0 (autoscaler): idle for 60s");
  // What `up` sends passes its own definition; anything else is not read at all (no half-read figures).
  assert.ok(AutoscalerSnapshot.safeParse(JSON.parse(JSON.stringify(snapshot))).success);
  assert.equal(autoscalerOf({ ...snapshot, nodes: [...snapshot.nodes, { node: 7 }] }).size, 0);
  assert.equal(
    autoscalerOf({ nodes: { infer: { target: 8, desired: 2 } } }).size,
    0,
    "the keyed-object form nobody sends",
  );
  for (const junk of [null, undefined, 42, "x", [1, 2], { nodes: 7 }, { infer: { target: 1 } }])
    assert.equal(autoscalerOf(junk).size, 0);
});

test("dashboard http figures - the HTTP node's own answers count as its requests, on this replica only", () => {
  const status: GraphStatus = {
    nats: "n",
    graph: "g",
    at: "2026-11-30T00:00:00.000Z",
    control: { replicas: 0, graph: null },
    nodes: [
      nodeStatus("ingress", {
        endpoints: [],
        requests: 0,
        errors: 0,
        p50_ms: null,
        p99_ms: null,
        replica_list: [
          { id: "i-1", host: "a", in_flight: 0, requests: 0 },
          { id: "i-2", host: "b", in_flight: 0, requests: 0 },
        ],
      }),
      nodeStatus("greeter"),
    ],
  };
  const out = withHttpFigures(
    status,
    { node: "ingress", replicaId: "i-1" },
    { requests: 40, errors: 2, p50_ms: 3, p99_ms: 50, last_error: "503:GET /readyz" },
  );
  const ing = out.nodes[0]!;
  assert.equal(ing.requests, 40);
  assert.equal(ing.errors, 2);
  assert.equal(ing.p99_ms, 50);
  assert.deepEqual(
    ing.replica_list.map((r) => r.requests),
    [40, 0],
  );
  assert.equal(frameOf(out, new Map(), null).nodes[0]!.last_error, "503:GET /readyz");
  assert.deepEqual(out.nodes[1], status.nodes[1], "other nodes unchanged");
  const later = withHttpFigures(
    status,
    { node: "ingress", replicaId: "i-1" },
    { requests: 60, errors: 2, p50_ms: 3, p99_ms: 50, last_error: null },
  );
  assert.equal(
    ratesOf({ atMs: 0, nodes: out.nodes }, { atMs: 2000, nodes: later.nodes }).get("ingress")!.requests_per_s,
    10,
  );
});

test("server-timing - parse, format, and a callee's entries passed on under its name", () => {
  assert.deepEqual(
    parseServerTiming(
      'preprocess;dur=9.5, infer;dur=30, bad name;dur=1, x;desc=y, y;dur=-1, z;dur=2;desc="q", big;dur=1e9, infer.queue;dur=0.25',
    ),
    [
      { name: "preprocess", durMs: 9.5 },
      { name: "infer", durMs: 30 },
      { name: "z", durMs: 2 },
      { name: "infer.queue", durMs: 0.25 },
    ],
  );
  assert.deepEqual(parseServerTiming(undefined), []);
  assert.equal(
    formatServerTiming([
      { name: "a", durMs: 1.234 },
      { name: "b", durMs: -3 },
    ]),
    "a;dur=1.23, b;dur=0.00",
  );
  assert.deepEqual(nestedTiming("infer", "queue;dur=1.5, compute;dur=20"), [
    { name: "infer.queue", durMs: 1.5 },
    { name: "infer.compute", durMs: 20 },
  ]);
  assert.deepEqual(nestedTiming("infer", undefined), []);
});

test("dashboard server-timing - hops add up to the total; the callee's own time includes its NATS hop; details pass through", () => {
  assert.equal(
    serverTimingOf("preprocess", 50, 45, "preprocess;dur=9.5, infer;dur=30, infer.queue;dur=1, infer.compute;dur=25"),
    "ingress;dur=5.00, preprocess;dur=15.00, infer;dur=30.00, infer.queue;dur=1.00, infer.compute;dur=25.00, total;dur=50.00",
  );
  assert.equal(
    serverTimingOf("preprocess", 50, 45, undefined),
    "ingress;dur=5.00, preprocess;dur=45.00, total;dur=50.00",
    "a callee without the header: one hop",
  );
  assert.equal(
    serverTimingOf("preprocess", 50, 45, "ingress;dur=999, total;dur=1, ingress.x;dur=4, infer;dur=60"),
    "ingress;dur=5.00, preprocess;dur=0.00, infer;dur=60.00, total;dur=50.00",
    "never negative, no spoofed ingress or total",
  );
});

// --- the shared poller --------------------------------------------------------------------------------------

function statusAt(i: number): GraphStatus {
  return {
    nats: "n",
    graph: "g",
    at: new Date(i).toISOString(),
    control: { replicas: 0, graph: null },
    nodes: [nodeStatus("greeter", { replica_list: [{ id: "r", host: "h", in_flight: 0, requests: i * 10 }] })],
  };
}

test("dashboard poller - one reading per interval for any number of subscribers; started by the first, stopped by the last", async () => {
  mock.timers.enable({ apis: ["setTimeout", "Date"] });
  try {
    let clock = 0;
    let reads = 0;
    const poller = createStatusPoller({ intervalMs: 1000, now: () => clock, read: async () => statusAt(++reads) });
    const tick = async (ms: number) => {
      clock += ms;
      mock.timers.tick(ms);
      // let the reading's promises settle (setImmediate is not faked)
      for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    };
    assert.equal(poller.readings, 0, "nothing read before a subscriber");
    const a: LiveFrame[] = [];
    const b: LiveFrame[] = [];
    const unA = poller.subscribe((f) => a.push(f));
    await tick(0);
    assert.equal(poller.readings, 1, "the first subscriber starts a reading at once");
    const unB = poller.subscribe((f) => b.push(f));
    assert.equal(b.length, 1, "a later subscriber gets the latest frame at once");
    const unC = poller.subscribe(() => {});
    await tick(500);
    assert.equal(poller.readings, 1, "no second reading within the interval");
    await tick(500);
    assert.equal(poller.readings, 2);
    await tick(1000);
    assert.equal(poller.readings, 3, "three subscribers, one reading a second");
    assert.equal(a.length, 3);
    assert.equal(a[2]!.nodes[0]!.requests_per_s, 10, "rate from successive readings");
    unA();
    unB();
    unA();
    assert.equal(poller.subscribers, 1);
    unC();
    assert.equal(poller.subscribers, 0);
    await tick(5000);
    assert.equal(poller.readings, 3, "stopped with the last subscriber");
    poller.subscribe(() => {});
    await tick(0);
    assert.equal(poller.readings, 4, "a new subscriber starts it again");
    poller.close();
    await tick(5000);
    assert.equal(poller.readings, 4);
  } finally {
    mock.timers.reset();
  }
});

test("dashboard poller - a failed reading is a frame with the error and the last nodes; a throwing listener is dropped", async () => {
  mock.timers.enable({ apis: ["setTimeout", "Date"] });
  try {
    let clock = 0;
    let fail = false;
    const poller = createStatusPoller({
      intervalMs: 1000,
      now: () => clock,
      read: async () => {
        if (fail) throw new Error("no connection");
        return statusAt(1);
      },
      readAutoscaler: async () => {
        throw new Error("no responders");
      },
    });
    const tick = async (ms: number) => {
      clock += ms;
      mock.timers.tick(ms);
      // let the reading's promises settle (setImmediate is not faked)
      for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    };
    const frames: LiveFrame[] = [];
    poller.subscribe((f) => frames.push(f));
    poller.subscribe(() => {
      throw new Error("listener bug");
    });
    await tick(0);
    assert.equal(poller.subscribers, 1, "the throwing listener is dropped");
    assert.equal(frames[0]!.error, null);
    assert.equal(frames[0]!.nodes[0]!.autoscaler, null, "no autoscaler is normal");
    fail = true;
    await tick(1000);
    assert.match(frames[1]!.error ?? "", /discovery failed: no connection/);
    assert.equal(frames[1]!.nodes[0]!.node, "greeter", "the last known nodes are kept");
    fail = false;
    await tick(1000);
    assert.equal(frames[2]!.error, null, "recovers");
    poller.close();
  } finally {
    mock.timers.reset();
  }
});

test("dashboard topology - the edges the page draws are exactly the calls the broker permits", async () => {
  const { natsPermissions } = await import("../../ops/manifests/nats-permissions.ts");
  const routes = graph.nodes.ingress!.routes.map((r) => ({ label: r.key, node: r.node }));
  assert.deepEqual(routes, INGRESS_ROUTES, "the page's routes are graph.config.ts's");
  const t = topologyOf(graph, { self: { node: "ingress", routes } });
  const drawn = t.edges
    .filter((e) => e.via.length > 0)
    .map((e) => `${e.from}->${e.to}`)
    .sort();
  const permitted = Object.keys(graph.nodes)
    .flatMap((n) => {
      const targets = natsPermissions(graph, n)
        .publish.filter((s) => s.startsWith(`${graph.subjectPrefix}.`))
        .map((s) => s.split(".")[2]!);
      return [...new Set(targets)].map((to) => `${n}->${to}`);
    })
    .sort();
  assert.deepEqual(drawn, permitted);
  assert.ok(drawn.length >= 8, drawn.join(", "));
});
