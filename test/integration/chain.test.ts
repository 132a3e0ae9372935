/**
 * The two-node chain end to end: real nats-server, real node processes started by the supervisor,
 * the ingress over a socket, and direct NATS requests.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "../../runtime/client.ts";
import { GreetReply, GreeterEndpoints } from "../../subjects/schemas.ts";
import { startGraph } from "../helpers/graph.ts";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = async (r: Response): Promise<any> => r.json();

test("chain - HTTP round trip through ingress, greeter-proxy and greeter", async () => {
  await using g = await startGraph({ graphs: ["chain"] });
  const res = await fetch(`${g.ingressUrl}/greeting/ada`);
  assert.equal(res.status, 200);
  const body = GreetReply.parse(await res.json());
  assert.equal(body.message, "Hello, ada!");

  const ready = await fetch(`${g.ingressUrl}/readyz`);
  assert.equal(ready.status, 200);
  assert.deepEqual((await json(ready)).replicas, { "greeter-proxy": 1 });

  // routes of graphs that are not running are not served
  const notServed = await fetch(`${g.ingressUrl}/process/hi?user_key=u1`);
  assert.equal(notServed.status, 404);
  assert.equal((await json(notServed)).code, "NOT_FOUND");

  // bad input: a name over 256 characters is a 400 with the zod issue
  const bad = await fetch(`${g.ingressUrl}/greeting/${"x".repeat(300)}`);
  assert.equal(bad.status, 400);
  const badBody = await json(bad);
  assert.equal(badBody.code, "BAD_REQUEST");
  assert.match(badBody.message, /256/);

  // OpenAPI generated from the zod schemas, browsable UI at /docs
  const spec = await json(await fetch(`${g.ingressUrl}/docs/json`));
  assert.ok(spec.paths["/greeting/{name}"], "OpenAPI lists the greeting route");
  assert.equal((await fetch(`${g.ingressUrl}/docs/`)).status, 200);
});

test("chain - direct NATS request to greeter-proxy, and both subject patterns agree", async () => {
  await using g = await startGraph({ graphs: ["chain"] });
  const client = createClient(g.nc, { caller: "test", defaultTimeoutMs: 5000 });
  const reply = await client.requestJson("sg.v1.greeter-proxy.greeting", { name: "grace" }, { schema: GreetReply });
  assert.equal(reply.message, "Hello, grace!");
  const ep = await client.requestJson("sg.v1.greeter-proxy.endpoints", {}, { schema: GreeterEndpoints });
  assert.equal(ep.pattern_a, "sg.v1.greeter.greet");
  assert.equal(ep.pattern_b, "sg.v1.greeter.greet");

  // a bad request over NATS comes back as error headers, not a timeout
  const msg = await g.nc.request("sg.v1.greeter-proxy.greeting", JSON.stringify({ nom: "x" }), { timeout: 2000 });
  assert.equal(msg.headers?.get("Nats-Service-Error-Code"), "400");
  assert.equal(msg.headers?.get("Graph-Error"), "BAD_REQUEST");
  assert.ok(msg.headers?.get("Nats-Service-Error"));
});

test("chain - 503 at once when greeter has no replicas", async () => {
  await using g = await startGraph({ graphs: ["chain"] });
  for (const r of g.sup.replicas("greeter")) {
    r.child.kill("SIGTERM");
    await new Promise((resolve) => r.child.once("exit", resolve));
  }
  const t0 = performance.now();
  const res = await fetch(`${g.ingressUrl}/greeting/ada`);
  const ms = performance.now() - t0;
  assert.equal(res.status, 503);
  const body = await json(res);
  assert.equal(body.code, "UNAVAILABLE");
  // no responders is answered by the server at once, well before the 1 s deadline
  assert.ok(ms < 900, `503 took ${ms} ms: it waited for a timeout`);
  const ready = await fetch(`${g.ingressUrl}/readyz`);
  assert.equal(ready.status, 200, "greeter-proxy, the ingress's own edge, is still up");
});

test("chain - 504 when greeter is slower than the deadline", async () => {
  await using g = await startGraph({ graphs: ["chain"], nodeEnv: { greeter: { DELAY_MS: "3000" } } });
  const res = await fetch(`${g.ingressUrl}/greeting/ada`);
  assert.equal(res.status, 504);
  assert.equal((await json(res)).code, "DEADLINE_EXCEEDED");
});

test("chain - SIGTERM of a greeter replica during requests loses none", async () => {
  await using g = await startGraph({
    graphs: ["chain"],
    replicas: { greeter: 2 },
    nodeEnv: { greeter: { DELAY_MS: "150" } },
  });
  const client = createClient(g.nc, { caller: "test", defaultTimeoutMs: 5000 });
  const victim = g.sup.replicas("greeter")[0]!;
  const results: Promise<unknown>[] = [];
  for (let i = 0; i < 40; i++) {
    results.push(client.requestJson("sg.v1.greeter.greet", { name: `n${i}` }, { timeoutMs: 5000, schema: GreetReply }));
    if (i === 10) victim.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 10));
  }
  const settled = await Promise.allSettled(results);
  const failed = settled.filter((s) => s.status === "rejected");
  assert.deepEqual(
    failed.map((f) => String((f as PromiseRejectedResult).reason)),
    [],
  );
  const servedBy = new Set(settled.map((s) => (s as PromiseFulfilledResult<{ served_by: string }>).value.served_by));
  assert.ok(servedBy.has(victim.id), "the terminated replica answered the requests it had accepted");
  const code = await new Promise((r) =>
    victim.child.exitCode !== null ? r(victim.child.exitCode) : victim.child.once("exit", r),
  );
  assert.equal(code, 0, "replica exited cleanly after draining");
});
