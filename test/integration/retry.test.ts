/**
 * Liveness and retries of the runtime client against a real nats-server: a slow request kept alive by heartbeats,
 * an idempotent request whose replica dies is retried once on another replica, a non-idempotent one fails fast,
 * the broker going away fails requests at once, and a far-future deadline is clamped to the node's timeout.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import {
  LIVENESS_MS,
  connectNats,
  createClient,
  createLogger,
  createService,
  metricsText,
  type Service,
} from "../../runtime/index.ts";
import { GraphError } from "../../subjects/index.ts";
import { startNats } from "../helpers/graph.ts";

const log = createLogger("test", "error");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function replica(
  url: string,
  name: string,
  handler: (nc: NatsConnection) => (data: Uint8Array) => unknown,
): Promise<{ nc: NatsConnection; svc: Service }> {
  const nc = await connectNats({ name, servers: url });
  const svc = createService(nc, { name: "work", maxInFlight: 64, defaultTimeoutMs: 10_000, log });
  const h = handler(nc);
  svc.addEndpoint("do", { subject: "t.work.do", handler: (req) => h(req.data) });
  await nc.flush();
  return { nc, svc };
}

const code = (e: unknown) => (e instanceof GraphError ? e.code : String(e));

test(
  "retry - heartbeats keep a request that is slower than the liveness window alive",
  { timeout: 30_000 },
  async () => {
    await using nats = await startNats();
    const r = await replica(nats.url, "slow", () => async () => {
      await sleep(LIVENESS_MS * 1.6);
      return { ok: true };
    });
    const nc = await connectNats({ name: "caller", servers: nats.url });
    try {
      const client = createClient(nc, { caller: "test", defaultTimeoutMs: 10_000 });
      const reply = await client.request("t.work.do", "", { idempotent: true });
      assert.deepEqual(reply.json(), { ok: true });
    } finally {
      await r.svc.stop({ maxWaitMs: 100 });
      await r.nc.close();
      await nc.close();
    }
  },
);

test(
  "retry - an idempotent request whose replica dies is answered by another replica, inside its deadline",
  { timeout: 60_000 },
  async () => {
    await using nats = await startNats();
    // The dying replica takes the request and then vanishes: its connection closes with no reply (as a SIGKILL does).
    let took = 0;
    const dying = await replica(nats.url, "dying", (nc) => () => {
      took++;
      void nc.close();
      return new Promise(() => {});
    });
    const healthy = await replica(nats.url, "healthy", () => () => ({ by: "healthy" }));
    const nc = await connectNats({ name: "caller", servers: nats.url });
    try {
      const client = createClient(nc, { caller: "retry-test", defaultTimeoutMs: 10_000 });
      const t0 = performance.now();
      const replies = await Promise.all(
        Array.from({ length: 12 }, () => client.request("t.work.do", "", { idempotent: true })),
      );
      const ms = performance.now() - t0;
      assert.ok(took >= 1, "the queue group gave the dying replica at least one request");
      for (const r of replies) assert.deepEqual(r.json(), { by: "healthy" });
      assert.ok(
        ms < LIVENESS_MS * 3,
        `lost requests were retried after the liveness window, not the deadline (${Math.round(ms)} ms)`,
      );
      const text = (await metricsText()).body;
      assert.match(
        text,
        /sg_client_retries_total\{caller="retry-test",subject="t\.work\.do",reason="lost",outcome="OK"\} [1-9]/,
      );
    } finally {
      await healthy.svc.stop({ maxWaitMs: 100 });
      await healthy.nc.close();
      await dying.nc.close().catch(() => {});
      await nc.close();
    }
  },
);

test(
  "retry - a request that is not idempotent is never sent twice: its lost attempt fails at once with UNAVAILABLE",
  { timeout: 60_000 },
  async () => {
    await using nats = await startNats();
    let calls = 0;
    const dying = await replica(nats.url, "dying", (nc) => () => {
      calls++;
      void nc.close();
      return new Promise(() => {});
    });
    const nc = await connectNats({ name: "caller", servers: nats.url });
    try {
      const client = createClient(nc, { caller: "test", defaultTimeoutMs: 20_000 });
      const t0 = performance.now();
      await assert.rejects(
        client.request("t.work.do", "", { idempotent: false }),
        (e: unknown) => code(e) === "UNAVAILABLE",
      );
      const ms = performance.now() - t0;
      assert.equal(calls, 1);
      assert.ok(ms < LIVENESS_MS * 2, `failed after ${Math.round(ms)} ms, not the 20 s deadline`);
    } finally {
      await dying.nc.close().catch(() => {});
      await nc.close();
    }
  },
);

test(
  "retry - while the broker is unreachable requests fail at once with UNAVAILABLE, and pending ones are failed",
  { timeout: 30_000 },
  async () => {
    const nats = await startNats();
    const r = await replica(nats.url, "slow", () => async () => {
      await sleep(5000);
      return {};
    });
    const nc = await connectNats({ name: "caller", servers: nats.url });
    try {
      const client = createClient(nc, { caller: "test", defaultTimeoutMs: 20_000 });
      const pending = client.request("t.work.do", "", { idempotent: true }).then(() => "answered", code);
      await sleep(100);
      const t0 = performance.now();
      await nats.stop();
      assert.equal(await pending, "UNAVAILABLE", "a request in flight when the broker went away fails at once");
      assert.ok(performance.now() - t0 < 3000);
      for (
        let i = 0;
        i < 20 &&
        (await client.request("t.work.do", "", { timeoutMs: 5000 }).then(
          () => "ok",
          (e: unknown) => code(e),
        )) !== "UNAVAILABLE";
        i++
      )
        await sleep(50);
      const t1 = performance.now();
      await assert.rejects(
        client.request("t.work.do", "", { timeoutMs: 5000 }),
        (e: unknown) => code(e) === "UNAVAILABLE",
      );
      assert.ok(performance.now() - t1 < 200, "a request with the broker down fails at once");
      assert.ok(t1 - t0 < 3000, `the outage was seen within ${Math.round(t1 - t0)} ms`);
    } finally {
      await r.nc.close().catch(() => {});
      await nc.close().catch(() => {});
      await nats.stop();
    }
  },
);

test(
  "service - a far-future or malformed Graph-Deadline is clamped to the node's timeout",
  { timeout: 30_000 },
  async () => {
    await using nats = await startNats();
    const nc = await connectNats({ name: "svc", servers: nats.url });
    const svc = createService(nc, { name: "clamp", maxInFlight: 8, defaultTimeoutMs: 3000, log });
    svc.addEndpoint("dl", {
      subject: "t.clamp.dl",
      handler: (req) => ({ left: req.deadlineEpochMs - Date.now(), aborted: req.signal.aborted }),
    });
    try {
      for (const dl of [String(Date.now() + 10 * 365 * 86_400_000), "9".repeat(15), "1e99", "0x10", "-5", "soon"]) {
        const h = natsHeaders();
        h.set("Graph-Deadline", dl);
        const msg = await nc.request("t.clamp.dl", "", { timeout: 2000, headers: h });
        assert.equal(msg.headers?.get("Graph-Error") || "", "", `${dl}: answered, not failed`);
        const { left, aborted } = msg.json<{ left: number; aborted: boolean }>();
        assert.ok(left > 0 && left <= 3000, `${dl}: ${left} ms left`);
        assert.equal(aborted, false);
      }
    } finally {
      await svc.stop({ maxWaitMs: 100 });
      await nc.close();
    }
  },
);
