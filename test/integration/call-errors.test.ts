/**
 * What a caller hears when nobody answers a subject, against a real nats-server: a running node without that
 * endpoint (a typo) answers NOT_FOUND listing the endpoints it has, with a suggestion; a node that is not running
 * is UNAVAILABLE, at once.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connectNats, createClient, createLogger, createService } from "../../runtime/index.ts";
import { GraphError } from "../../subjects/index.ts";
import { startNats } from "../helpers/graph.ts";

const log = createLogger("test", "error");

test(
  "call errors - an unknown endpoint of a running node is NOT_FOUND with its endpoints; a node that is not running is UNAVAILABLE",
  { timeout: 30_000 },
  async () => {
    await using nats = await startNats();
    const nc = await connectNats({ name: "upper", servers: nats.url });
    const svc = createService(nc, { name: "upper", maxInFlight: 8, defaultTimeoutMs: 5000, log });
    svc.addEndpoint("run", { subject: "sg.v1.upper.run", handler: () => ({ ok: true }) });
    svc.addEndpoint("info", { subject: "sg.v1.upper.info", handler: () => ({}) });
    svc.announce();
    await nc.flush();
    const caller = await connectNats({ name: "caller", servers: nats.url });
    try {
      const client = createClient(caller, { caller: "test", defaultTimeoutMs: 5000 });
      assert.deepEqual((await client.request("sg.v1.upper.run", "")).json(), { ok: true });
      await assert.rejects(client.request("sg.v1.upper.uper", "", { idempotent: true }), (e: unknown) => {
        assert.ok(e instanceof GraphError);
        assert.equal(e.code, "NOT_FOUND");
        assert.equal(
          e.message,
          'upper has no endpoint "uper"; it serves run (sg.v1.upper.run), info (sg.v1.upper.info).',
        );
        assert.deepEqual((e.details as { endpoints: unknown[] }).endpoints, [
          { name: "run", subject: "sg.v1.upper.run" },
          { name: "info", subject: "sg.v1.upper.info" },
        ]);
        return true;
      });
      // a near miss gets a suggestion
      await assert.rejects(
        client.request("sg.v1.upper.rnu", ""),
        (e: unknown) =>
          e instanceof GraphError && e.code === "NOT_FOUND" && /Did you mean sg\.v1\.upper\.run\?$/.test(e.message),
      );
      await assert.rejects(
        client.request("sg.v1.lower.run", ""),
        (e: unknown) =>
          e instanceof GraphError &&
          e.code === "UNAVAILABLE" &&
          /no replica of sg\.v1\.lower\.run is running/.test(e.message),
      );
    } finally {
      await svc.stop({ maxWaitMs: 100 });
      await nc.close();
      await caller.close();
    }
  },
);
