/**
 * Scale to zero (`replicas: [0, N]`), run as a user runs it: `servegraph up` starts greeter of the autoscale fixture
 * with no replica; the first request, over HTTP through the ingress and straight over NATS, is answered (slower,
 * never 503) by a replica the activator starts; a burst during a cold start is answered exactly once per request
 * (greeter's own request counts); after its idle window the node is back at zero and the next request starts it
 * again.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { gather } from "../../runtime/index.ts";
import type { StatsReply } from "../../runtime/graph-status.ts";
import { createClient } from "../../runtime/index.ts";
import { autoscaled, cli, startUp, until } from "../helpers/autoscale-up.ts";

const GREET = "sg.v1.greeter.greet";

test(
  "scale to zero - a [0, N] node starts at 0, cold-starts on the first request (HTTP and NATS), answers a burst exactly once, idles back to 0",
  { timeout: 240_000 },
  async (t) => {
    const up = await startUp(["chain"]);
    t.after(async () => {
      await up.stop();
    });
    const { nc } = up;
    assert.ok(up.summary.ingress, "the ingress serves HTTP");
    assert.deepEqual(
      up.summary.nodes.find((n) => n.node === "greeter"),
      { node: "greeter", replicas: 0, subjects: "sg.v1.greeter.*" },
    );
    const atStart = await autoscaled(nc, "greeter");
    assert.equal(atStart.replicas, 0);
    assert.equal(atStart.activator, "armed");
    assert.equal((await gather(nc, "$SRV.PING.greeter", 300)).length, 0, "no greeter replica runs");
    const st = await cli(["status", "--json"], up.env);
    assert.equal(st.code, 0, st.stderr);
    assert.equal(
      (JSON.parse(st.stdout) as { nodes: { node: string; replicas: number }[] }).nodes.find((n) => n.node === "greeter")
        ?.replicas,
      0,
    );

    // 1. HTTP through the ingress: ingress -> greeter-proxy -> (activator) greeter.
    const res = await fetch(`${up.summary.ingress}/greeting/ada`, { signal: AbortSignal.timeout(60_000) });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(((await res.json()) as { message: string }).message, "Hello, ada!");
    const woken = await autoscaled(nc, "greeter");
    assert.equal(woken.replicas, 1);
    assert.equal(woken.activator, "off", "the activator left the queue group");
    assert.equal(woken.last_decision?.by, "activator");
    assert.equal((await gather(nc, "$SRV.PING.greeter", 300)).length, 1);

    // 2. Idle for the 2 s window: back to 0, the activator holds the subject again.
    const idle = await until(
      nc,
      "greeter",
      (n) => n.replicas === 0 && n.activator === "armed",
      "back to 0 replicas",
      30_000,
    );
    assert.match(idle.last_decision!.reason, /^idle .*\(scale-down window 2 s\)$/);

    // 3. Straight over NATS (no heartbeats asked): answered after a cold start.
    const client = createClient(nc, { caller: "scale-to-zero-test", defaultTimeoutMs: 60_000 });
    assert.deepEqual(
      await client.requestJson(GREET, { name: "lin" }).then((r) => (r as { message: string }).message),
      "Hello, lin!",
    );
    assert.equal(
      (await autoscaled(nc, "greeter")).last_decision?.by,
      "activator",
      "the request cold-started greeter again",
    );
    await until(nc, "greeter", (n) => n.replicas === 0 && n.activator === "armed", "back to 0 replicas", 30_000);

    // 4. A burst during a cold start, over NATS and HTTP at once: every request answered, each handled exactly once.
    const N = 12;
    const names = Array.from({ length: N }, (_, i) => `burst${i}`);
    const answers = await Promise.all(
      names.map(async (name, i) => {
        if (i % 2 === 0) return ((await client.requestJson(GREET, { name })) as { message: string }).message;
        const r = await fetch(`${up.summary.ingress}/greeting/${name}`, { signal: AbortSignal.timeout(60_000) });
        assert.equal(r.status, 200, await r.clone().text());
        return ((await r.json()) as { message: string }).message;
      }),
    );
    assert.deepEqual(
      answers,
      names.map((n) => `Hello, ${n}!`),
    );
    const stats = await gather<StatsReply>(nc, "$SRV.STATS.greeter", 300);
    assert.ok(stats.length >= 1, "greeter runs again");
    const handled = stats.reduce((a, s) => a + (s.endpoints ?? []).reduce((b, e) => b + e.num_requests, 0), 0);
    assert.equal(
      handled,
      N,
      `each request of the burst reached greeter exactly once; up's log:\n${up
        .stderr()
        .split("\n")
        .filter((l) => /retry|activator|autoscale|lost/i.test(l))
        .join("\n")}`,
    );

    assert.equal(await up.stop(), 0, up.stderr());
  },
);
