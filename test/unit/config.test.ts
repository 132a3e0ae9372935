import { test } from "node:test";
import assert from "node:assert/strict";
import {
  AUTOSCALE_DEFAULTS,
  BATCHING_DEFAULTS,
  durationToMs,
  GraphConfigError,
  loadGraph,
  resolveGraph,
  subjectOf,
} from "../../runtime/config.ts";
import { closure, nodesOfGraphs, subjectFor } from "../../runtime/graph-queries.ts";

const FILE = "/srv/app/graph.config.ts";

function minimal(extra: Record<string, unknown> = {}) {
  return {
    name: "g",
    nodes: {
      a: { service: "services/a", dependsOn: ["b"], parameters: { B_SUBJECT: subjectOf("b", "run") } },
      b: { service: "services/b", replicas: [1, 3], timeout: "2s", resources: { cpu: "500m", memory: "256Mi" } },
    },
    graphs: { main: { nodes: ["a"] } },
    defaultGraphs: ["main"],
    ...extra,
  };
}

function issuesOf(input: unknown): { path: string; message: string }[] {
  try {
    resolveGraph(input, FILE);
  } catch (err) {
    assert.ok(err instanceof GraphConfigError, `expected GraphConfigError, got ${err}`);
    return [...err.issues];
  }
  assert.fail("expected the graph to be rejected");
}

test("config - a valid graph gets defaults, compiled units and resolved subjects", () => {
  const g = resolveGraph(minimal(), FILE);
  const a = g.nodes.a!;
  const b = g.nodes.b!;
  assert.equal(a.parameters.B_SUBJECT, "sg.v1.b.run");
  assert.deepEqual(a.replicas, { min: 1, max: 1 });
  assert.deepEqual(b.replicas, { min: 1, max: 3 });
  assert.equal(b.timeoutMs, 2000);
  assert.equal(a.timeoutMs, 30_000, "default timeout 30s");
  assert.equal(b.resources.cpu, 0.5);
  assert.equal(b.resources.memoryBytes, 256 * 2 ** 20);
  assert.equal(a.entry, "/srv/app/services/a/src/main.ts");
  assert.equal(a.maxInFlight, 256);
  assert.deepEqual(nodesOfGraphs(g, ["main"]), ["b", "a"], "dependencies first");
  assert.equal(subjectFor(g, "b", "run"), "sg.v1.b.run");
});

test("config - the resolved graph is deeply frozen", () => {
  const g = resolveGraph(minimal(), FILE);
  assert.ok(Object.isFrozen(g));
  assert.ok(Object.isFrozen(g.nodes.a));
  assert.ok(Object.isFrozen(g.nodes.a!.parameters));
  assert.throws(() => {
    (g.nodes.a!.parameters as Record<string, string>).X = "1";
  }, TypeError);
});

test("config - unknown keys are rejected (strict), with their path", () => {
  const bad = minimal();
  (bad.nodes.a as Record<string, unknown>).replica = 2;
  const issues = issuesOf(bad);
  assert.ok(
    issues.some((i) => i.path === "nodes.a" && /replica/.test(i.message)),
    JSON.stringify(issues),
  );
});

test("config - every problem is listed at once with its path", () => {
  const bad = {
    name: "Bad Name",
    nodes: {
      a: {
        service: "services/a",
        dependsOn: ["ghost"],
        replicas: [3, 1],
        timeout: "soon",
        parameters: { "lower-case": "x" },
      },
    },
    graphs: { main: { nodes: ["a", "nobody"] } },
    defaultGraphs: ["main"],
  };
  const first = issuesOf({ ...bad, nodes: { ...bad.nodes, b: { service: "services/b", dependsOn: ["nowhere"] } } });
  // schema problems and the cross-checks of what did parse come in one error
  const paths = first.map((i) => i.path);
  assert.ok(paths.includes("name"), JSON.stringify(first));
  assert.ok(paths.includes("nodes.a.timeout"), JSON.stringify(first));
  assert.ok(paths.includes("nodes.b.dependsOn.0"), JSON.stringify(first));
  assert.ok(paths.includes("graphs.main.nodes.1"), JSON.stringify(first));
  // with the schema passing, every cross-check is reported together
  const second = issuesOf({ ...bad, name: "ok", nodes: { a: { ...bad.nodes.a, timeout: "1s" } } });
  const p2 = second.map((i) => i.path);
  assert.ok(p2.includes("nodes.a.dependsOn.0"), JSON.stringify(second));
  assert.ok(p2.includes("nodes.a.replicas"), JSON.stringify(second));
  assert.ok(p2.includes("nodes.a.parameters.lower-case"), JSON.stringify(second));
  assert.ok(p2.includes("graphs.main.nodes.1"), JSON.stringify(second));
  const msg = new GraphConfigError(second).message;
  for (const p of p2) assert.ok(msg.includes(p), `message names ${p}`);
});

test("config - dependency cycles and unknown subject references are rejected", () => {
  const cyc = minimal();
  (cyc.nodes.b as Record<string, unknown>).dependsOn = ["a"];
  assert.ok(issuesOf(cyc).some((i) => /cycle/.test(i.message)));
  const ref = minimal();
  (ref.nodes.a as Record<string, unknown>).parameters = { X: subjectOf("zzz", "run") };
  assert.ok(issuesOf(ref).some((i) => i.path === "nodes.a.parameters.X" && /zzz/.test(i.message)));
});

test("config - batching knobs are validated (maxQueueSize >= maxBatchSize)", () => {
  const g = minimal();
  (g.nodes.b as Record<string, unknown>).batching = { maxBatchSize: 64, maxQueueSize: 8 };
  assert.ok(issuesOf(g).some((i) => i.path === "nodes.b.batching.maxQueueSize"));
  (g.nodes.b as Record<string, unknown>).batching = {};
  const ok = resolveGraph(g, FILE);
  assert.deepEqual(ok.nodes.b!.batching, BATCHING_DEFAULTS, "unset knobs resolve to the CPU defaults");
  assert.deepEqual(ok.nodes.b!.batching, {
    maxBatchSize: 32,
    maxQueueDelayMs: 0,
    maxQueueSize: 256,
    maxConcurrentBatches: 1,
  });
  assert.deepEqual(ok.nodes.b!.batchingDeclared, {}, "and the node knows which knobs the graph left to it");
});

test("config - secrets need a source and are never parameters", () => {
  const g = minimal();
  (g.nodes.a as Record<string, unknown>).secrets = { TOKEN: {} };
  assert.ok(issuesOf(g).some((i) => i.path.startsWith("nodes.a.secrets.TOKEN")));
});

test("config - durations compile to milliseconds", () => {
  assert.equal(durationToMs("250ms"), 250);
  assert.equal(durationToMs("1.5s"), 1500);
  assert.equal(durationToMs("2m"), 120_000);
  assert.equal(durationToMs(42), 42);
});

test("config - the repo's graph.config.ts is valid and its graphs start their closures", async () => {
  const g = await loadGraph();
  assert.deepEqual([...g.defaultGraphs].sort(), ["ab", "chain", "classify"]);
  assert.deepEqual(closure(g, ["greeter-proxy"]), ["greeter", "greeter-proxy"]);
  assert.deepEqual(nodesOfGraphs(g, ["classify"]).sort(), ["infer", "ingress", "preprocess"]);
  assert.deepEqual(nodesOfGraphs(g, ["ab"]).sort(), ["ab-router", "ingress", "variant-a", "variant-b"]);
  assert.equal(g.nodes["greeter-proxy"]!.parameters.GREETER_SUBJECT, "sg.v1.greeter.greet");
  assert.throws(() => nodesOfGraphs(g, ["nope"]), GraphConfigError);
});

test("config - requiresAuth applies to HTTP nodes only", () => {
  const g = minimal();
  (g.nodes.b as Record<string, unknown>).requiresAuth = true;
  assert.ok(issuesOf(g).some((i) => i.path === "nodes.b.requiresAuth"));
  (g.nodes.b as Record<string, unknown>).http = { port: 0 };
  assert.equal(resolveGraph(g, FILE).nodes.b!.requiresAuth, true);
});

test("config - a node with replicas [min, max] gets an autoscale policy: declared fields over defaults by node kind", () => {
  const g = minimal();
  let r = resolveGraph(g, FILE);
  assert.equal(r.nodes.a!.autoscale, undefined, "a fixed count is never autoscaled");
  assert.deepEqual(r.nodes.b!.autoscale, AUTOSCALE_DEFAULTS.other);
  (g.nodes.b as Record<string, unknown>).batching = {};
  r = resolveGraph(g, FILE);
  assert.deepEqual(r.nodes.b!.autoscale, AUTOSCALE_DEFAULTS.batching, "a batching node scales on its batch queue");
  assert.equal(r.nodes.b!.autoscale!.metric, "queueDepth");
  (g.nodes.b as Record<string, unknown>).autoscale = { metric: "batchFill", scaleUpAfter: "2s", scaleDownAfter: "1m" };
  r = resolveGraph(g, FILE);
  assert.deepEqual(r.nodes.b!.autoscale, {
    metric: "batchFill",
    target: 0.8,
    scaleUpAfterMs: 2000,
    scaleDownAfterMs: 60_000,
  });
});

test("config - autoscale is checked: a range of replicas, a batch metric needs batching, batchFill is a fraction", () => {
  const fixed = minimal();
  (fixed.nodes.a as Record<string, unknown>).autoscale = { target: 2 };
  assert.ok(issuesOf(fixed).some((i) => i.path === "nodes.a.autoscale" && /\[min, max\]/.test(i.message)));
  const noBatching = minimal();
  (noBatching.nodes.b as Record<string, unknown>).autoscale = { metric: "queueDepth" };
  assert.ok(issuesOf(noBatching).some((i) => i.path === "nodes.b.autoscale.metric" && /batching/.test(i.message)));
  const fill = minimal();
  Object.assign(fill.nodes.b, { batching: {}, autoscale: { metric: "batchFill", target: 3 } });
  assert.ok(issuesOf(fill).some((i) => i.path === "nodes.b.autoscale.target"));
  const typo = minimal();
  (typo.nodes.b as Record<string, unknown>).autoscale = { metric: "cpu" };
  assert.ok(issuesOf(typo).some((i) => i.path === "nodes.b.autoscale.metric"));
});

test("config - replicas [0, N] resolves min 0 (scale to zero) with a policy", () => {
  const g = minimal();
  (g.nodes.b as Record<string, unknown>).replicas = [0, 2];
  const r = resolveGraph(g, FILE);
  assert.deepEqual(r.nodes.b!.replicas, { min: 0, max: 2 });
  assert.ok(r.nodes.b!.autoscale);
});

test("config - a call to an endpoint its target's service does not define is refused, with a suggestion", () => {
  const graph = (endpoint: string) => ({
    name: "g",
    nodes: {
      caller: { service: "services/caller", parameters: { GREETER_SUBJECT: subjectOf("hello", endpoint) } },
      hello: { service: "services/greeter" },
    },
    graphs: { main: { nodes: ["caller", "hello"] } },
    defaultGraphs: ["main"],
  });
  assert.deepEqual(issuesOf(graph("gret")), [
    {
      path: "nodes.caller.parameters.GREETER_SUBJECT",
      message: 'node "hello" (services/greeter) has no endpoint "gret": it serves greet; did you mean "greet"?',
    },
  ]);
  assert.match(issuesOf(graph("shout"))[0]!.message, /it serves greet$/, "no suggestion when nothing is close");
  assert.equal(resolveGraph(graph("greet"), FILE).nodes.caller!.parameters.GREETER_SUBJECT, "sg.v1.hello.greet");
  // A service with no definitions in subjects/endpoints.ts has nothing to check against (minimal()'s services/b).
  assert.doesNotThrow(() => resolveGraph(minimal(), FILE));
});

test("config - calls are declared: subject parameters, `calls` and routes resolve into node.calls; an unknown one is refused with a suggestion", () => {
  const graph = (calls: unknown[], routes: Record<string, unknown> = {}) => ({
    name: "g",
    nodes: {
      web: { service: "services/ingress", http: { port: 0 }, routes },
      caller: { service: "services/caller", parameters: { GREETER_SUBJECT: subjectOf("hello", "greet") }, calls },
      hello: { service: "services/greeter" },
      proxy: { service: "services/greeter-proxy" },
    },
    graphs: { main: { nodes: ["web", "caller", "hello", "proxy"] } },
    defaultGraphs: ["main"],
  });
  const g = resolveGraph(
    graph([subjectOf("proxy", "greeting"), subjectOf("hello", "greet")], {
      "GET /hi/:name": { call: subjectOf("proxy", "greeting") },
    }),
    FILE,
  );
  assert.deepEqual(
    g.nodes.caller!.calls,
    [
      { node: "hello", endpoint: "greet", subject: "sg.v1.hello.greet", via: { parameter: "GREETER_SUBJECT" } },
      { node: "proxy", endpoint: "greeting", subject: "sg.v1.proxy.greeting", via: { call: 0 } },
    ],
    "one entry per subject, the first declaration kept",
  );
  assert.deepEqual(
    g.nodes.web!.calls.map((c) => c.subject),
    ["sg.v1.proxy.greeting"],
  );
  assert.deepEqual(g.nodes.web!.routes, [
    {
      key: "GET /hi/:name",
      method: "GET",
      path: "/hi/:name",
      params: ["name"],
      node: "proxy",
      endpoint: "greeting",
      subject: "sg.v1.proxy.greeting",
      body: "none",
    },
  ]);
  assert.deepEqual(issuesOf(graph([subjectOf("helo", "greet"), subjectOf("hello", "gret")])), [
    { path: "nodes.caller.calls.0", message: 'unknown node "helo"; did you mean "hello"?' },
    {
      path: "nodes.caller.calls.1",
      message: 'node "hello" (services/greeter) has no endpoint "gret": it serves greet; did you mean "greet"?',
    },
  ]);
});

test("config - routes are checked: key syntax, reserved paths, path parameters against the request's fields, bodies against the payload kind, HTTP nodes only", () => {
  const graph = (routes: Record<string, unknown>, http = true) => ({
    name: "g",
    nodes: {
      web: { service: "services/ingress", ...(http ? { http: { port: 0 } } : {}), routes },
      proxy: { service: "services/greeter-proxy" },
      pre: { service: "services/preprocess" },
      inf: { service: "services/infer" },
    },
    graphs: { main: { nodes: ["web", "proxy", "pre", "inf"] } },
    defaultGraphs: ["main"],
  });
  const ok = resolveGraph(
    graph({
      "POST /classify": { call: subjectOf("pre", "classify"), body: "image" },
      "POST /greet": { call: subjectOf("proxy", "greeting") },
      "GET /labels": { call: subjectOf("inf", "labels") },
    }),
    FILE,
  );
  assert.deepEqual(
    ok.nodes.web!.routes.map((r) => [r.key, r.body]),
    [
      ["POST /classify", "image"],
      ["POST /greet", "json"],
      ["GET /labels", "none"],
    ],
  );
  const issues = issuesOf(
    graph({
      greet: { call: subjectOf("proxy", "greeting") },
      "FETCH /x": { call: subjectOf("proxy", "greeting") },
      "GET /metrics": { call: subjectOf("proxy", "greeting") },
      "GET /hi/:who": { call: subjectOf("proxy", "greeting") },
      "POST /run": { call: subjectOf("inf", "run") },
      "POST /img": { call: subjectOf("proxy", "greeting"), body: "image" },
      "POST /typo": { call: subjectOf("proxy", "greting") },
    }),
  );
  const at = (key: string) => issues.filter((i) => i.path.startsWith(`nodes.web.routes.${key}`)).map((i) => i.message);
  assert.match(at("greet")[0]!, /a route is "METHOD \/path"/);
  assert.match(at("FETCH /x")[0]!, /method FETCH is not one of GET, POST, PUT, PATCH, DELETE/);
  assert.match(at("GET /metrics")[0]!, /the HTTP node's own/);
  assert.match(
    at("GET /hi/:who")[0]!,
    /path parameter :who is not a field of greeter-proxy.greeting's request \(name\)/,
  );
  assert.match(at("POST /run")[0]!, /takes a tensor: an HTTP route cannot build one/);
  assert.match(at("POST /img")[0]!, /image bodies are for bytes endpoints/);
  assert.match(at("POST /typo")[0]!, /has no endpoint "greting".*did you mean "greeting"/);
  assert.deepEqual(
    issuesOf(graph({ "GET /labels": { call: subjectOf("inf", "labels") } }, false)).map((i) => i.path),
    ["nodes.web.routes"],
  );
});

test("config - batching on a node that serves no batched endpoint is refused; on infer (a batched endpoint) it is not", () => {
  const graph = (service: string) => ({
    name: "g",
    nodes: { n: { service, batching: { maxBatchSize: 8 } } },
    graphs: { main: { nodes: ["n"] } },
    defaultGraphs: ["main"],
  });
  assert.deepEqual(issuesOf(graph("services/greeter")), [
    {
      path: "nodes.n.batching",
      message:
        "greeter serves no batched endpoint (greet): mark one `batched: true` in subjects/ and serve it with ctx.serveBatch, or remove `batching`",
    },
  ]);
  assert.equal(resolveGraph(graph("services/infer"), FILE).nodes.n!.batching!.maxBatchSize, 8);
});

test("config - a body limit larger than one NATS message (less room for headers) is refused", () => {
  const g = (bytes: number) => ({
    ...minimal(),
    nodes: {
      ...minimal().nodes,
      a: { ...minimal().nodes.a, parameters: { ...minimal().nodes.a.parameters, MAX_BODY_BYTES: bytes } },
    },
  });
  assert.doesNotThrow(() => resolveGraph(g(8 * 1024 * 1024), FILE));
  assert.deepEqual(
    issuesOf(g(16 * 1024 * 1024)).map((i) => i.path),
    ["nodes.a.parameters.MAX_BODY_BYTES"],
  );
  assert.match(issuesOf(g(16 * 1024 * 1024))[0]!.message, /do not fit one NATS message: the brokers take 16777216/);
});
