/**
 * The ingress app driven with Fastify's inject(), wired to a real nats-server with an in-process greeter
 * endpoint: route mapping, validation, error statuses and readiness without spawning processes.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../../services/ingress/src/app.ts";
import { createService } from "../../runtime/service.ts";
import { connectNats, isConnected, onConnectionChange } from "../../runtime/nats.ts";
import { startNats } from "../helpers/graph.ts";
import {
  assertTableError,
  classifyRoute,
  greetingRoute,
  processRoute,
  ingressDeps,
  startGreeterBroker,
  type GreeterBroker,
} from "../helpers/ingress.ts";

let greeter: GreeterBroker;
let app: FastifyInstance;

before(async () => {
  greeter = await startGreeterBroker("inject", 1000);
  app = await buildApp(
    ingressDeps(greeter, {
      routes: [greetingRoute(300), processRoute(300)],
    }),
  );
  await app.ready();
});

after(async () => {
  await app?.close();
  await greeter?.close();
});

test("ingress - GET /greeting/:name maps to the NATS subject and back", async () => {
  const res = await app.inject({ method: "GET", url: "/greeting/ada" });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.json(), { message: "Hello, ada!", served_by: "inproc" });
  assert.match(res.headers["content-type"] as string, /application\/json/);
});

test("ingress - errors are JSON {code, message} with the right status", async () => {
  const notFound = await app.inject({ method: "GET", url: "/nope" });
  assert.equal(notFound.statusCode, 404);
  assert.deepEqual(Object.keys(notFound.json()).sort(), ["code", "message"]);
  assert.equal(notFound.json().code, "NOT_FOUND");

  const tooLong = await app.inject({ method: "GET", url: `/greeting/${"a".repeat(257)}` });
  assert.equal(tooLong.statusCode, 400);
  assert.equal(tooLong.json().code, "BAD_REQUEST");
  assert.ok(Array.isArray(tooLong.json().details));

  // ab-router has no replica in this test: 503 from NATS "no responders", at once
  const t0 = performance.now();
  const unavailable = await app.inject({ method: "GET", url: "/process/hi?user_key=u" });
  assert.equal(unavailable.statusCode, 503);
  assert.equal(unavailable.json().code, "UNAVAILABLE");
  assert.ok(performance.now() - t0 < 250, "no waiting for the 300 ms deadline");

  const missingKey = await app.inject({ method: "GET", url: "/process/hi" });
  assert.equal(missingKey.statusCode, 400);

  const wrongMethod = await app.inject({ method: "DELETE", url: "/greeting/ada" });
  assertTableError(wrongMethod, "METHOD_NOT_ALLOWED");
  assert.equal(wrongMethod.headers.allow, "GET, HEAD");
});

test("ingress - router errors are table codes: bad percent-encoding, over-long parameter, wrong method", async () => {
  assertTableError(await app.inject({ method: "GET", url: "/greeting/%FF" }), "BAD_REQUEST");
  assertTableError(await app.inject({ method: "GET", url: `/greeting/${"a".repeat(3000)}` }), "URI_TOO_LONG");
  assertTableError(await app.inject({ method: "GET", url: `/greeting/${"a".repeat(257)}` }), "BAD_REQUEST");
  assertTableError(await app.inject({ method: "GET", url: "/nope/%FF" }), "BAD_REQUEST");
  const post = await app.inject({ method: "POST", url: "/readyz" });
  assertTableError(post, "METHOD_NOT_ALLOWED");
  assert.equal(post.headers.allow, "GET, HEAD");
  assertTableError(await app.inject({ method: "PUT", url: "/nope" }), "NOT_FOUND");
});

test("ingress - body and Content-Type errors of Fastify are table codes", async () => {
  const withBody = await buildApp(ingressDeps(greeter, { routes: [classifyRoute(300)] }));
  try {
    const post = (headers: Record<string, string>, payload: string | Buffer) =>
      withBody.inject({ method: "POST", url: "/classify", headers, payload });
    assertTableError(await post({ "content-type": "text/plain" }, "hi"), "UNSUPPORTED_MEDIA_TYPE");
    assertTableError(await post({ "content-type": ";;;" }, "hi"), "UNSUPPORTED_MEDIA_TYPE");
    assertTableError(await post({}, "hi"), "UNSUPPORTED_MEDIA_TYPE");
    assertTableError(await post({ "content-type": "application/json" }, "{nope"), "BAD_REQUEST");
    assertTableError(await post({ "content-type": "application/json" }, ""), "BAD_REQUEST");
    assertTableError(await post({ "content-type": "image/png" }, Buffer.alloc(2048)), "PAYLOAD_TOO_LARGE");
    const mismatch = await post({ "content-type": "image/png", "content-length": "5" }, Buffer.alloc(10));
    assertTableError(mismatch, "BAD_REQUEST");
    assert.match(mismatch.json().message, /Content-Length/);
    assertTableError(
      await post({ "content-type": "application/json" }, JSON.stringify({ image_url: "http://x", extra: 1 })),
      "BAD_REQUEST",
    );
    // preprocess has no replica here: the call's own code
    assertTableError(await post({ "content-type": "image/png" }, Buffer.from([1, 2, 3])), "UNAVAILABLE");
  } finally {
    await withBody.close();
  }
});

test("ingress - past the route's deadline the answer is 504", async () => {
  greeter.delayMs = 600;
  try {
    const res = await app.inject({ method: "GET", url: "/greeting/slow" });
    assert.equal(res.statusCode, 504);
    assert.equal(res.json().code, "DEADLINE_EXCEEDED");
  } finally {
    greeter.delayMs = 0;
  }
});

test("ingress - readyz is 503 UNAVAILABLE while the NATS connection is down, healthz stays 200", async () => {
  await using broker = await startNats({ restart: true });
  const own = await connectNats({ name: "inject-readyz", servers: broker.url });
  const changes: boolean[] = [];
  const waitFor = async (connected: boolean) => {
    const until = Date.now() + 10_000;
    while (isConnected(own) !== connected && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.equal(isConnected(own), connected);
  };
  onConnectionChange(own, (c) => changes.push(c));
  const probe = await buildApp(ingressDeps({ nc: own, log: greeter.log }, { routes: [] }));
  try {
    assert.equal((await probe.inject({ method: "GET", url: "/readyz" })).statusCode, 200);
    broker.process.kill("SIGKILL");
    await waitFor(false);
    const down = await probe.inject({ method: "GET", url: "/readyz" });
    assertTableError(down, "UNAVAILABLE");
    assert.match(down.json().message, /not connected to NATS/);
    assert.equal(
      (await probe.inject({ method: "GET", url: "/healthz" })).statusCode,
      200,
      "liveness does not depend on NATS",
    );
    await waitFor(true);
    assert.equal((await probe.inject({ method: "GET", url: "/readyz" })).statusCode, 200);
    assert.ok(changes.includes(false) && changes.at(-1) === true, `connection changes seen: ${changes.join(",")}`);
  } finally {
    await probe.close();
    await own.close();
  }
});

test("ingress - readyz is 503 until every downstream node has a replica, healthz always 200", async () => {
  assert.equal((await app.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
  const notReady = await app.inject({ method: "GET", url: "/readyz" });
  assertTableError(notReady, "UNAVAILABLE");
  assert.deepEqual(notReady.json().details.replicas, { "greeter-proxy": 1, "ab-router": 0 });
  const router = createService(greeter.nc, {
    name: "ab-router",
    maxInFlight: 1,
    defaultTimeoutMs: 1000,
    log: greeter.log,
  });
  router.announce();
  try {
    const ready = await app.inject({ method: "GET", url: "/readyz" });
    assert.equal(ready.statusCode, 200);
    assert.deepEqual(ready.json(), { status: "ready", replicas: { "greeter-proxy": 1, "ab-router": 1 } });
  } finally {
    await router.stop();
  }
});

test("ingress - OpenAPI is generated from the zod schemas; unconfigured routes are not served", async () => {
  const spec = (await app.inject({ method: "GET", url: "/docs/json" })).json() as {
    openapi: string;
    paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
  };
  assert.match(spec.openapi, /^3\./);
  assert.ok(spec.paths["/greeting/{name}"]);
  assert.ok(spec.paths["/process/{message}"]);
  assert.equal(spec.paths["/classify"], undefined);
  assert.equal((await app.inject({ method: "POST", url: "/classify" })).statusCode, 404);
  // every status a route can answer, and no other: the edges (parser, timeouts, shutdown), its parameters, its call
  const statuses = (path: string) => Object.keys(spec.paths[path]!.get!.responses).map(Number);
  assert.deepEqual(statuses("/greeting/{name}"), [200, 400, 408, 414, 431, 500, 503, 504]);
  assert.deepEqual(statuses("/readyz"), [200, 400, 408, 431, 500, 503]);
  assert.deepEqual(statuses("/healthz"), [200, 400, 408, 431, 500, 503]);
  const r503 = spec.paths["/greeting/{name}"]!.get!.responses["503"] as {
    description: string;
    content: Record<string, { schema: { properties: { code: { enum: string[] } } } }>;
  };
  assert.deepEqual(r503.content["application/json"]!.schema.properties.code.enum, ["UNAVAILABLE", "OVERLOADED"]);
  const metrics = await app.inject({ method: "GET", url: "/metrics" });
  assert.equal(metrics.statusCode, 200);
  assert.match(metrics.body, /sg_http_request_duration_seconds_bucket/);
});

test("ingress - with requiresAuth, routes need the bearer key; health, metrics and docs stay open", async () => {
  const secured = await buildApp(ingressDeps(greeter, { routes: [greetingRoute(300)], apiKey: "k3y-for-tests" }));
  try {
    const none = await secured.inject({ method: "GET", url: "/greeting/ada" });
    assert.equal(none.statusCode, 401);
    assert.equal(none.json().code, "UNAUTHENTICATED");
    assert.equal(none.headers["www-authenticate"], "Bearer");
    assert.ok(!none.body.includes("k3y"), "the key is never echoed");
    const wrong = await secured.inject({
      method: "GET",
      url: "/greeting/ada",
      headers: { authorization: "Bearer nope" },
    });
    assert.equal(wrong.statusCode, 401);
    const ok = await secured.inject({
      method: "GET",
      url: "/greeting/ada",
      headers: { authorization: "Bearer k3y-for-tests" },
    });
    assert.equal(ok.statusCode, 200);
    for (const url of ["/healthz", "/readyz", "/metrics", "/docs/json"]) {
      assert.equal((await secured.inject({ method: "GET", url })).statusCode, 200, url);
    }
    const spec = (await secured.inject({ method: "GET", url: "/docs/json" })).json() as {
      paths: Record<string, { get: { responses: Record<string, unknown> } }>;
    };
    assert.ok(spec.paths["/greeting/{name}"]!.get.responses["401"], "a secured route lists 401");
    assert.equal(spec.paths["/readyz"]!.get.responses["401"], undefined, "an open route does not");
  } finally {
    await secured.close();
  }
});
