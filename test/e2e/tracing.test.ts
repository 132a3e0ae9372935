/**
 * Traces end to end: real nats-server, real node processes exporting OTLP/HTTP to an in-process collector.
 * One HTTP request is one trace across every process it touches, with the parent chain
 * HTTP SERVER -> send (CLIENT) -> process (SERVER) -> ...; a forward pass is a batch span in its own trace,
 * linked to exactly the requests it served.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { startGraph, REPO_ROOT } from "../helpers/graph.ts";
import { OtlpSpanKind, startOtlpCollector, type CollectedSpan, type OtlpCollector } from "../helpers/otlp-collector.ts";
import { BATCH_BURST } from "../fixtures/batching-graph.config.ts";

const CAT_JPEG = readFileSync(resolve(REPO_ROOT, "data/images/cat-chelsea.jpg"));
const BATCHING_GRAPH_FILE = resolve(REPO_ROOT, "test/fixtures/batching-graph.config.ts");
const WAIT_MS = 15_000;

function otelEnv(c: OtlpCollector, protocol: "http/json" | "http/protobuf" = "http/json"): Record<string, string> {
  return {
    OTEL_EXPORTER_OTLP_ENDPOINT: c.endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
    OTEL_TRACES_EXPORTER: "otlp",
    OTEL_BSP_SCHEDULE_DELAY: "100",
  };
}

const named = (spans: CollectedSpan[], service: string, name: string): CollectedSpan[] =>
  spans.filter((s) => s.service === service && s.name === name);

/** The one span of `service` named `name`; fails when there is none or more than one. */
function one(spans: CollectedSpan[], service: string, name: string): CollectedSpan {
  const found = named(spans, service, name);
  assert.equal(found.length, 1, `expected one ${service} span "${name}", got ${found.length}`);
  return found[0]!;
}

function assertChild(child: CollectedSpan, parent: CollectedSpan): void {
  assert.equal(child.traceId, parent.traceId, `${child.name} is in the trace of ${parent.name}`);
  assert.equal(
    child.parentSpanId,
    parent.spanId,
    `${child.service}:${child.name} is a child of ${parent.service}:${parent.name}`,
  );
}

function classify(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/classify?top_k=3`, {
    method: "POST",
    headers: { "content-type": "image/jpeg", ...headers },
    body: CAT_JPEG,
  });
}

test("tracing - one /greeting request is one trace through ingress, greeter-proxy and greeter", async () => {
  await using collector = await startOtlpCollector();
  await using g = await startGraph({ graphs: ["chain"], env: otelEnv(collector) });
  const res = await fetch(`${g.ingressUrl}/greeting/ada`);
  assert.equal(res.status, 200);

  const names: [string, string][] = [
    ["ingress", "GET /greeting/:name"],
    ["ingress", "send sg.v1.greeter-proxy.greeting"],
    ["greeter-proxy", "process sg.v1.greeter-proxy.greeting"],
    ["greeter-proxy", "send sg.v1.greeter.greet"],
    ["greeter", "process sg.v1.greeter.greet"],
  ];
  const spans = await collector.waitFor((all) => names.every(([svc, n]) => named(all, svc, n).length > 0), WAIT_MS);
  const [http, send1, process1, send2, process2] = names.map(([svc, n]) => one(spans, svc, n)) as [
    CollectedSpan,
    CollectedSpan,
    CollectedSpan,
    CollectedSpan,
    CollectedSpan,
  ];

  const traceIds = new Set(spans.map((s) => s.traceId));
  assert.equal(traceIds.size, 1, "every span of the request, in every process, has the same trace id");
  assert.equal(http.parentSpanId, undefined, "the HTTP server span is the root");
  assertChild(send1, http);
  assertChild(process1, send1);
  assertChild(send2, process1);
  assertChild(process2, send2);

  assert.equal(http.kind, OtlpSpanKind.SERVER);
  assert.deepEqual(
    [
      http.attributes["http.request.method"],
      http.attributes["url.path"],
      http.attributes["http.route"],
      http.attributes["http.response.status_code"],
    ],
    ["GET", "/greeting/ada", "/greeting/:name", 200],
  );
  for (const s of [send1, send2]) {
    assert.equal(s.kind, OtlpSpanKind.CLIENT);
    assert.equal(s.attributes["messaging.operation.type"], "send");
  }
  for (const s of [process1, process2]) {
    assert.equal(s.kind, OtlpSpanKind.SERVER);
    assert.equal(s.attributes["messaging.operation.type"], "process");
    assert.equal(s.attributes["messaging.consumer.group.name"], s.service, "the queue group is the node name");
  }
  assert.equal(process2.attributes["messaging.system.name"], "nats");
  assert.equal(process2.attributes["messaging.destination.name"], "sg.v1.greeter.greet");

  // resource: service.name = node, replica id and graph name as attributes
  const replica = g.sup.replicas("greeter")[0]!.id;
  assert.equal(process2.resource["service.instance.id"], replica);
  assert.equal(process2.resource["sg.replica"], replica);
  assert.equal(process2.resource["sg.graph"], g.graph.name);
  assert.equal(collector.exports().rejected, 0);
});

test("tracing - the default http/protobuf protocol and a 5xx are exported too", async () => {
  await using collector = await startOtlpCollector();
  await using g = await startGraph({ graphs: ["chain"], env: otelEnv(collector, "http/protobuf") });
  for (const r of g.sup.replicas("greeter")) {
    r.child.kill("SIGTERM");
    await new Promise((done) => r.child.once("exit", done));
  }
  const res = await fetch(`${g.ingressUrl}/greeting/ada`);
  assert.equal(res.status, 503);
  const spans = await collector.waitFor(
    (all) =>
      named(all, "greeter-proxy", "send sg.v1.greeter.greet").length > 0 &&
      named(all, "ingress", "GET /greeting/:name").length > 0,
    WAIT_MS,
  );
  assert.ok(spans.every((s) => s.encoding === "protobuf"));
  const http = one(spans, "ingress", "GET /greeting/:name");
  const send = one(spans, "greeter-proxy", "send sg.v1.greeter.greet");
  assert.equal(send.traceId, http.traceId);
  assert.equal(http.attributes["http.response.status_code"], 503);
  assert.equal(http.attributes["error.type"], "UNAVAILABLE");
  assert.equal(http.status.code, 2, "5xx: span status ERROR");
  assert.equal(send.attributes["error.type"], "UNAVAILABLE");
  assert.equal(send.status.code, 2);
});

test("tracing - pending spans are flushed when a replica stops", async () => {
  await using collector = await startOtlpCollector();
  // An export delay far beyond the test: only the shutdown flush can deliver these spans.
  await using g = await startGraph({
    graphs: ["chain"],
    env: { ...otelEnv(collector), OTEL_BSP_SCHEDULE_DELAY: "600000" },
  });
  assert.equal((await fetch(`${g.ingressUrl}/greeting/ada`)).status, 200);
  assert.equal(collector.spans().length, 0);
  await g.stop();
  const spans = collector.spans();
  assert.deepEqual(new Set(spans.map((s) => s.service)), new Set(["ingress", "greeter-proxy", "greeter"]));
  assert.equal(spans.length, 5);
});

test("tracing - one /classify request is one trace through ingress, preprocess and infer", async () => {
  await using collector = await startOtlpCollector();
  await using g = await startGraph({ graphs: ["classify"], env: otelEnv(collector) });
  collector.clear(); // start-up traffic (preprocess fetching the labels) is its own trace
  const res = await classify(g.ingressUrl!);
  assert.equal(res.status, 200, await res.clone().text());

  const names: [string, string][] = [
    ["ingress", "POST /classify"],
    ["ingress", "send sg.v1.preprocess.classify"],
    ["preprocess", "process sg.v1.preprocess.classify"],
    ["preprocess", "preprocess image"],
    ["preprocess", "send sg.v1.infer.run"],
    ["infer", "process sg.v1.infer.run"],
    ["preprocess", "postprocess"],
    ["infer", "process sg.v1.infer.run (batch)"],
  ];
  const spans = await collector.waitFor((all) => names.every(([svc, n]) => named(all, svc, n).length > 0), WAIT_MS);
  const [http, send1, process1, pre, send2, process2, post, batch] = names.map(([svc, n]) =>
    one(spans, svc, n),
  ) as CollectedSpan[] as [
    CollectedSpan,
    CollectedSpan,
    CollectedSpan,
    CollectedSpan,
    CollectedSpan,
    CollectedSpan,
    CollectedSpan,
    CollectedSpan,
  ];

  const requestSpans = [http, send1, process1, pre, send2, process2, post];
  assert.equal(
    new Set(requestSpans.map((s) => s.traceId)).size,
    1,
    "one trace id across ingress, preprocess and infer",
  );
  assert.deepEqual(
    new Set(spans.filter((s) => s.traceId === http.traceId).map((s) => s.service)),
    new Set(["ingress", "preprocess", "infer"]),
  );
  assert.equal(http.parentSpanId, undefined);
  assertChild(send1, http);
  assertChild(process1, send1);
  assertChild(pre, process1);
  assertChild(send2, process1);
  assertChild(process2, send2);
  assertChild(post, process1);
  assert.equal(pre.kind, OtlpSpanKind.INTERNAL);

  // the forward pass: its own trace, linked to the request's infer span, and the request links back
  assert.notEqual(batch.traceId, http.traceId);
  assert.equal(batch.parentSpanId, undefined);
  assert.equal(batch.kind, OtlpSpanKind.CONSUMER);
  assert.deepEqual(
    batch.links.map((l) => [l.traceId, l.spanId]),
    [[process2.traceId, process2.spanId]],
  );
  assert.equal(batch.attributes["messaging.batch.message_count"], 1);
  assert.deepEqual(
    process2.links.map((l) => l.spanId),
    [batch.spanId],
  );
  assert.equal(process2.attributes["sg.batch.size"], 1);
  assert.equal(typeof process2.attributes["sg.batch.queue_wait_ms"], "number");
  assert.equal(typeof process2.attributes["sg.batch.share_ms"], "number");
});

test("tracing - a batch span links exactly the traces of the requests it served", async () => {
  await using collector = await startOtlpCollector();
  await using g = await startGraph({ graphs: ["classify"], graphFile: BATCHING_GRAPH_FILE, env: otelEnv(collector) });
  // Each request carries its own trace id in a W3C traceparent: the ingress continues the caller's trace.
  const traceIds = Array.from({ length: BATCH_BURST }, () => randomBytes(16).toString("hex"));
  const responses = await Promise.all(
    traceIds.map((t) => classify(g.ingressUrl!, { traceparent: `00-${t}-${randomBytes(8).toString("hex")}-01` })),
  );
  assert.deepEqual(
    responses.map((r) => r.status),
    traceIds.map(() => 200),
  );

  const isBatch = (s: CollectedSpan): boolean => s.service === "infer" && s.name === "process sg.v1.infer.run (batch)";
  const spans = await collector.waitFor(
    (all) => all.filter(isBatch).reduce((n, s) => n + s.links.length, 0) >= BATCH_BURST,
    WAIT_MS,
  );
  const batches = spans.filter(isBatch);
  assert.equal(
    batches.length,
    1,
    `the burst ran as one forward pass (sizes: ${batches.map((b) => b.links.length).join(", ")})`,
  );
  const batch = batches[0]!;
  assert.deepEqual(
    new Set(batch.links.map((l) => l.traceId)),
    new Set(traceIds),
    "the batch links exactly the burst's traces",
  );
  assert.equal(batch.links.length, BATCH_BURST);
  assert.equal(batch.attributes["messaging.batch.message_count"], batch.links.length);
  assert.equal(batch.attributes["sg.batch.size"], BATCH_BURST);
  assert.ok(!traceIds.includes(batch.traceId), "the batch span is in its own trace");

  // each request's infer span: in its request's trace, linked to the batch, with its queue wait and share
  const inferSpans = await collector
    .waitFor((all) => named(all, "infer", "process sg.v1.infer.run").length >= BATCH_BURST, WAIT_MS)
    .then((all) => named(all, "infer", "process sg.v1.infer.run"));
  assert.deepEqual(new Set(inferSpans.map((s) => s.traceId)), new Set(traceIds));
  assert.deepEqual(new Set(batch.links.map((l) => l.spanId)), new Set(inferSpans.map((s) => s.spanId)));
  for (const s of inferSpans) {
    assert.deepEqual(
      s.links.map((l) => l.spanId),
      [batch.spanId],
    );
    assert.equal(s.attributes["sg.batch.size"], BATCH_BURST);
    assert.ok(
      typeof s.attributes["sg.batch.queue_wait_ms"] === "number" && s.attributes["sg.batch.queue_wait_ms"] >= 0,
    );
    assert.ok(typeof s.attributes["sg.batch.share_ms"] === "number" && s.attributes["sg.batch.share_ms"] > 0);
  }
  // and the HTTP spans continued the callers' traces
  const httpSpans = await collector
    .waitFor((all) => named(all, "ingress", "POST /classify").length >= BATCH_BURST, WAIT_MS)
    .then((all) => named(all, "ingress", "POST /classify"));
  assert.deepEqual(new Set(httpSpans.map((s) => s.traceId)), new Set(traceIds));
  assert.ok(
    httpSpans.every((s) => s.parentSpanId !== undefined),
    "each HTTP span is a child of the caller's span",
  );
});
