/**
 * The autoscaler of `servegraph up`, run as a user runs it (a child process) on a graph with test-sized windows
 * (test/fixtures/autoscale-graph.config.ts): under a bounded closed-loop load a node goes up within [min, max]
 * with no failed request, returns to min after its scale-down window once the load stops, every decision shows in
 * `status --json` with its reason, and a manual `scale` pins the node until `scale --auto`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "../../runtime/index.ts";
import type { AutoscalerSnapshot } from "../../ops/autoscaler.ts";
import { autoscaled, cli, sleep, startUp, until } from "../helpers/autoscale-up.ts";

test(
  "autoscale - a node scales up under load within [min, max], back to min after its window; decisions in status; scale pins, --auto unpins",
  { timeout: 240_000 },
  async (t) => {
    const up = await startUp(["chain-nats", "--param", "greeter.DELAY_MS=150"]);
    t.after(async () => {
      await up.stop();
    });
    const { nc } = up;
    assert.deepEqual(up.summary.nodes.map((n) => [n.node, n.replicas]).sort(), [
      ["greeter", 0],
      ["greeter-proxy", 1],
    ]);
    const before = await autoscaled(nc, "greeter-proxy");
    assert.deepEqual(
      {
        metric: before.metric,
        target: before.target,
        min: before.min,
        max: before.max,
        replicas: before.replicas,
        pinned: before.pinned,
      },
      { metric: "inFlight", target: 2, min: 1, max: 3, replicas: 1, pinned: null },
    );

    // A closed loop of 5 callers (bounded in time): about 5 requests in flight, 2 per replica wanted -> 3 replicas.
    const client = createClient(nc, { caller: "autoscale-test", defaultTimeoutMs: 30_000 });
    let loading = true;
    let ok = 0;
    const failures: string[] = [];
    const loadUntil = performance.now() + 60_000;
    const workers = Array.from({ length: 5 }, async (_, w) => {
      for (let i = 0; loading && performance.now() < loadUntil; i++) {
        try {
          const r = (await client.requestJson("sg.v1.greeter-proxy.greeting", { name: `w${w}-${i}` })) as {
            message: string;
          };
          assert.equal(r.message, `Hello, w${w}-${i}!`);
          ok++;
        } catch (e) {
          failures.push(e instanceof Error ? e.message : String(e));
        }
      }
    });
    const seen: number[] = [];
    try {
      const upNow = await until(
        nc,
        "greeter-proxy",
        (n) => {
          seen.push(n.replicas);
          return n.replicas >= 2;
        },
        "more than 1 replica under load",
        50_000,
      );
      assert.equal(upNow.last_decision?.by, "autoscaler");
      assert.match(
        upNow.last_decision!.reason,
        /^inFlight [\d.]+ \(mean of the window; now \d+\) over \d+ replica\(s\), target 2 per replica: wanted more for [\d.]+ s \(scale-up window 0\.3 s\)$/,
      );
      // Let it settle under the load: never outside [1, 3].
      const t0 = performance.now();
      while (performance.now() - t0 < 2000) {
        seen.push((await autoscaled(nc, "greeter-proxy")).replicas);
        await sleep(200);
      }
    } finally {
      loading = false;
      await Promise.all(workers);
    }
    assert.ok(
      seen.every((n) => n >= 1 && n <= 3),
      `replicas within [1, 3]: ${seen.join(",")}`,
    );
    assert.ok(ok > 0);
    assert.deepEqual(failures, [], "no request failed while the node scaled");

    // Load gone: back to min after the 2 s window.
    const down = await until(nc, "greeter-proxy", (n) => n.replicas === 1, "back to 1 replica", 30_000);
    assert.equal(down.last_decision?.to, 1);
    assert.match(down.last_decision!.reason, /scale-down window 2 s/);

    // status shows the autoscaler: target, replicas, desired, last decision
    const st = await cli(["status", "--json"], up.env);
    assert.equal(st.code, 0, st.stderr);
    const parsed = JSON.parse(st.stdout) as { autoscalers: AutoscalerSnapshot[] };
    const gp = parsed.autoscalers[0]!.nodes.find((n) => n.node === "greeter-proxy")!;
    assert.equal(gp.target, 2);
    assert.equal(gp.replicas, 1);
    assert.equal(gp.desired, 1);
    assert.equal(gp.last_decision?.to, 1);
    const human = await cli(["status"], up.env);
    assert.match(human.stdout, /autoscaler of host .*\n.*NODE\s+METRIC\s+TARGET\s+REPLICAS\s+DESIRED/);
    assert.match(human.stdout, /greeter-proxy\s+inFlight \d+\s+2\/replica\s+1 \[1, 3\]\s+1\s+auto/);

    // A manual scale pins the node: the idle autoscaler would take it back to 1, but does not.
    const pin = await cli(["scale", "greeter-proxy", "2", "--json"], up.env);
    assert.equal(pin.code, 0, pin.stderr + pin.stdout);
    assert.equal((JSON.parse(pin.stdout) as { replicas: number }).replicas, 2);
    const pinned = await autoscaled(nc, "greeter-proxy");
    assert.equal(pinned.pinned, 2);
    assert.equal(pinned.last_decision?.by, "manual");
    await sleep(3500); // longer than the 2 s scale-down window
    const still = await autoscaled(nc, "greeter-proxy");
    assert.equal(still.replicas, 2, "a pinned node stays where it was put");
    assert.equal(still.desired, 1, "the autoscaler still computes what it would want");
    assert.match((await cli(["status"], up.env)).stdout, /greeter-proxy .*pinned at 2/);

    const auto = await cli(["scale", "greeter-proxy", "--auto", "--json"], up.env);
    assert.equal(auto.code, 0, auto.stderr + auto.stdout);
    assert.equal((JSON.parse(auto.stdout) as { auto: boolean }).auto, true);
    const after = await until(
      nc,
      "greeter-proxy",
      (n) => n.replicas === 1 && n.pinned === null,
      "back to 1 once unpinned",
      30_000,
    );
    assert.equal(after.last_decision?.by, "autoscaler");

    // Out of bounds: refused, nothing changes.
    const bad = await cli(["scale", "greeter-proxy", "4", "--json"], up.env);
    assert.equal(bad.code, 1);
    assert.equal((JSON.parse(bad.stdout) as { error: { code: string } }).error.code, "BAD_REQUEST");
    assert.equal(await up.stop(), 0, up.stderr());
  },
);
