/** The runtime kit against a real nats-server: handler wrapper, error headers, deadlines, caps, discovery, drain. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { createService } from "../../runtime/service.ts";
import { createClient } from "../../runtime/client.ts";
import { connectNats } from "../../runtime/nats.ts";
import { createLogger } from "../../runtime/log.ts";
import { gather } from "../../runtime/discovery.ts";
import { GraphError } from "../../subjects/errors.ts";
import { startNats } from "../helpers/graph.ts";

const log = createLogger("test", "error");

async function setup() {
  const nats = await startNats();
  const nc = await connectNats({ name: "svc-test", servers: nats.url });
  const svc = createService(nc, { name: "svc", maxInFlight: 2, defaultTimeoutMs: 2000, log, metadata: { k: "v" } });
  const client = createClient(nc, { caller: "test", defaultTimeoutMs: 2000 });
  return {
    nats,
    nc,
    svc,
    client,
    async [Symbol.asyncDispose]() {
      await svc.stop({ maxWaitMs: 100 });
      await nc.close();
      await nats.stop();
    },
  };
}

const rejectsWith = async (p: Promise<unknown>, code: string): Promise<GraphError> => {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof GraphError, `expected GraphError, got ${err}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
};

test("service - an asynchronously rejecting handler produces an error reply, not a caller timeout", async () => {
  await using s = await setup();
  s.svc.addEndpoint("boom", {
    subject: "t.boom",
    handler: async () => {
      await new Promise((r) => setTimeout(r, 20));
      throw new GraphError("MODEL_ERROR", "model exploded");
    },
  });
  s.svc.addEndpoint("oops", {
    subject: "t.oops",
    handler: async () => {
      await Promise.resolve();
      throw new Error("secret internals");
    },
  });
  s.svc.addEndpoint("sync", {
    subject: "t.sync",
    handler: () => {
      throw new GraphError("NOT_FOUND", "nope");
    },
  });
  const t0 = performance.now();
  const msg = await s.nc.request("t.boom", "", { timeout: 1500 });
  assert.ok(performance.now() - t0 < 1000);
  assert.equal(msg.headers?.get("Nats-Service-Error-Code"), "500");
  assert.equal(msg.headers?.get("Nats-Service-Error"), "model exploded");
  assert.equal(msg.headers?.get("Graph-Error"), "MODEL_ERROR");
  const internal = await rejectsWith(s.client.request("t.oops", ""), "INTERNAL");
  assert.ok(!internal.message.includes("secret"), "unknown errors don't leak their message");
  await rejectsWith(s.client.request("t.sync", ""), "NOT_FOUND");
});

test("client - no responders is UNAVAILABLE at once; a slow handler is DEADLINE_EXCEEDED at the deadline", async () => {
  await using s = await setup();
  let t0 = performance.now();
  await rejectsWith(s.client.request("t.nobody", "", { timeoutMs: 3000 }), "UNAVAILABLE");
  assert.ok(performance.now() - t0 < 1000, "no responders does not wait for the timeout");
  s.svc.addEndpoint("slow", {
    subject: "t.slow",
    handler: async (req) => {
      await new Promise((r) => setTimeout(r, 1000));
      return { late: !req.signal.aborted };
    },
  });
  t0 = performance.now();
  await rejectsWith(s.client.request("t.slow", "", { timeoutMs: 200 }), "DEADLINE_EXCEEDED");
  const ms = performance.now() - t0;
  assert.ok(ms >= 190 && ms < 900, `timed out after ${ms} ms`);
  await rejectsWith(s.client.request("t.slow", "", { deadlineEpochMs: Date.now() - 1 }), "DEADLINE_EXCEEDED");
});

test("service - a request whose deadline already passed is refused without running the handler", async () => {
  await using s = await setup();
  let ran = 0;
  s.svc.addEndpoint("x", {
    subject: "t.x",
    handler: () => {
      ran++;
      return {};
    },
  });
  const { headers } = await import("@nats-io/transport-node");
  const h = headers();
  h.set("Graph-Deadline", String(Date.now() - 10));
  const msg = await s.nc.request("t.x", "", { timeout: 1000, headers: h });
  assert.equal(msg.headers?.get("Graph-Error"), "DEADLINE_EXCEEDED");
  assert.equal(ran, 0);
});

test("service - past the in-flight cap a replica answers OVERLOADED at once", async () => {
  await using s = await setup();
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  s.svc.addEndpoint("hold", {
    subject: "t.hold",
    handler: async () => {
      await gate;
      return { ok: true };
    },
  });
  const held = [s.client.request("t.hold", ""), s.client.request("t.hold", "")];
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(s.svc.inFlight(), 2);
  const err = await rejectsWith(s.client.request("t.hold", ""), "OVERLOADED");
  assert.equal(err.status, 503);
  assert.ok(err.retryable);
  release();
  await Promise.all(held);
});

test("client - JSON validation: bad request bodies are BAD_REQUEST with issues; bad replies are CONTRACT_VIOLATION", async () => {
  await using s = await setup();
  s.svc.addEndpoint("echo", { subject: "t.echo", handler: (req) => req.json(z.strictObject({ n: z.number().int() })) });
  assert.deepEqual(await s.client.requestJson("t.echo", { n: 3 }, { schema: z.object({ n: z.number() }) }), { n: 3 });
  const bad = await rejectsWith(s.client.requestJson("t.echo", { n: "three" }), "BAD_REQUEST");
  assert.ok(Array.isArray(bad.details), "zod issues travel as details");
  await rejectsWith(s.client.request("t.echo", "{not json"), "BAD_REQUEST");
  await rejectsWith(
    s.client.requestJson("t.echo", { n: 3 }, { schema: z.object({ m: z.string() }) }),
    "CONTRACT_VIOLATION",
  );
});

test("service - ADR-32 discovery: ping, info and stats answer per replica", async () => {
  await using s = await setup();
  s.svc.addEndpoint("a", { subject: "t.a", handler: () => ({}) });
  assert.equal((await gather(s.nc, "$SRV.PING.svc", 150)).length, 0, "not discoverable before announce()");
  s.svc.announce();
  await s.client.request("t.a", "");
  const [ping] = await gather<{ type: string; name: string; id: string }>(s.nc, "$SRV.PING.svc", 150);
  assert.equal(ping?.type, "io.nats.micro.v1.ping_response");
  assert.equal(ping?.id, s.svc.id);
  const [info] = await gather<{
    endpoints: { subject: string; queue_group: string }[];
    metadata: Record<string, string>;
  }>(s.nc, "$SRV.INFO.svc", 150);
  assert.deepEqual(
    info?.endpoints.map((e) => [e.subject, e.queue_group]),
    [["t.a", "svc"]],
  );
  assert.equal(info?.metadata.k, "v");
  const [stats] = await gather<{ endpoints: { num_requests: number; data: { p50_ms: number } }[] }>(
    s.nc,
    `$SRV.STATS.svc.${s.svc.id}`,
    150,
  );
  assert.equal(stats?.endpoints[0]?.num_requests, 1);
});

test("service - stop() drains: accepted requests finish, new ones go elsewhere", async () => {
  await using s = await setup();
  s.svc.addEndpoint("slow", {
    subject: "t.slow",
    handler: async () => {
      await new Promise((r) => setTimeout(r, 300));
      return { ok: true };
    },
  });
  const pending = [1, 2].map(() => s.client.requestJson("t.slow", {}));
  await new Promise((r) => setTimeout(r, 50));
  await s.svc.stop();
  assert.deepEqual(await Promise.all(pending), [{ ok: true }, { ok: true }]);
  await rejectsWith(s.client.request("t.slow", ""), "UNAVAILABLE");
});
