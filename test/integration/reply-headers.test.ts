/**
 * Reply headers across NATS (what `Server-Timing` of /classify is built from): a handler adds headers to its reply
 * with `req.setReplyHeader`, on a defined endpoint (binary reply with its own headers) and on a raw JSON endpoint;
 * a caller reads them with `onReplyHeaders`; an error reply carries only the error headers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createService } from "../../runtime/service.ts";
import { createClient } from "../../runtime/client.ts";
import { connectNats } from "../../runtime/nats.ts";
import { createLogger } from "../../runtime/log.ts";
import { Greet } from "../../subjects/endpoints.ts";
import { GraphError } from "../../subjects/errors.ts";
import { Headers } from "../../subjects/headers.ts";
import { startNats } from "../helpers/graph.ts";

test("reply headers - set by the handler, read by the caller; never on an error reply", async () => {
  await using nats = await startNats();
  const nc = await connectNats({ name: "reply-headers-test", servers: nats.url });
  const svc = createService(nc, {
    name: "svc",
    maxInFlight: 4,
    defaultTimeoutMs: 2000,
    log: createLogger("test", "error"),
  });
  try {
    svc.serve(Greet, "t.greet", (input, req) => {
      req.setReplyHeader(Headers.ServerTiming, "work;dur=1.50");
      if (input.name === "fail") throw new GraphError("BAD_REQUEST", "no");
      return { message: `hi ${input.name}`, served_by: "t" };
    });
    svc.addEndpoint("raw", {
      subject: "t.raw",
      handler: (req) => {
        req.setReplyHeader("X-Test", "1");
        return { ok: true };
      },
    });
    svc.addEndpoint("plain", { subject: "t.plain", handler: () => ({ ok: true }) });
    svc.announce();
    const client = createClient(nc, { caller: "test", defaultTimeoutMs: 2000 });

    let timing: string | undefined;
    const out = await client.call(
      Greet,
      "t.greet",
      { name: "ada" },
      { onReplyHeaders: (h) => void (timing = h(Headers.ServerTiming)) },
    );
    assert.deepEqual(out, { message: "hi ada", served_by: "t" });
    assert.equal(timing, "work;dur=1.50");

    const raw = await client.request("t.raw", "{}");
    assert.equal(raw.headers?.get("X-Test"), "1");
    assert.deepEqual(raw.json(), { ok: true });
    const plain = await client.request("t.plain", "{}");
    assert.equal(plain.headers, undefined, "no header set: a reply without headers, as before");

    let seen = false;
    await assert.rejects(
      client.call(Greet, "t.greet", { name: "fail" }, { onReplyHeaders: () => void (seen = true) }),
      (e: unknown) => e instanceof GraphError && e.code === "BAD_REQUEST",
    );
    assert.equal(seen, false, "onReplyHeaders is for successful replies");
    const errMsg = await nc.request("t.greet", JSON.stringify({ name: "fail" }), { timeout: 2000 });
    assert.equal(errMsg.headers?.get(Headers.ServerTiming), "", "an error reply carries the error headers only");
    assert.equal(errMsg.headers?.get(Headers.GraphError), "BAD_REQUEST");
  } finally {
    await svc.stop({ maxWaitMs: 100 });
    await nc.close();
  }
});
