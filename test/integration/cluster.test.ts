/**
 * Multi-host: the classify graph over three hosts (network namespaces), each `servegraph up --only ... --host X`
 * on its own server of a 3-server NATS cluster, under a closed-loop load. Host B's nats-server is SIGKILLed (B's
 * replicas reconnect to A's or C's server through the cluster's gossip), then host B's `up` and replicas are.
 * The same scenario as `npm run demo:cluster` (tools/cluster/scenario.ts), with shorter phases.
 *
 * Needs root and iproute2 (network namespaces); skipped otherwise, with the reason.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  cleanupLeftovers,
  createHostNetwork,
  findLeftovers,
  netnsUnavailableReason,
  runClusterScenario,
} from "../../tools/cluster/index.ts";

const unavailable = netnsUnavailableReason();
const skip = unavailable ? `multi-host tests need network namespaces: ${unavailable}` : false;

test(
  "cluster - requests spread over hosts; B's broker and then B itself die under load: failures stay within the bound, C serves on, nothing is left behind",
  { skip, timeout: 300_000 },
  async (t) => {
    const lines: string[] = [];
    const s = await runClusterScenario({
      clients: 4,
      warmMs: 4000,
      afterNatsKillMs: 3000,
      afterHostLossMs: 3000,
      log: (l) => lines.push(l),
    });
    t.diagnostic(
      JSON.stringify({
        requests: s.requests,
        failed: s.failed,
        per_host_served: s.per_host_served,
        reconnect_ms: s.reconnect_ms,
        rejoin_ms: s.rejoin_ms,
        phases: s.phases,
      }),
    );
    assert.deepEqual(s.violations, [], lines.join("\n"));
    assert.equal(s.met_bound, true);

    // spread: both preprocess hosts served; infer on C served every one of them
    assert.ok((s.per_host_served.B ?? 0) > 0 && (s.per_host_served.C ?? 0) > 0, JSON.stringify(s.per_host_served));
    assert.ok((s.served_by_node.infer?.C ?? 0) > 0);
    // B's processes reconnected to another server of the cluster
    assert.notEqual(s.reconnect_ms, null);
    assert.ok(
      Object.values(s.reconnected_to).every((h) => h === "A" || h === "C"),
      JSON.stringify(s.reconnected_to),
    );
    // the bound: only 503 UNAVAILABLE, at most the requests in flight at the broker's death; none from the host loss
    assert.ok(s.failed <= s.bound.max_failed, `${s.failed} > ${s.bound.max_failed}`);
    assert.ok(
      Object.keys(s.failures).every((k) => k === "503 UNAVAILABLE"),
      JSON.stringify(s.failures),
    );
    for (const p of s.phases.filter((x) => x.name !== "warm" && x.name !== "nats-b-killed"))
      assert.equal(p.failed, 0, `phase ${p.name}`);
    // traffic went on after the loss, through C
    assert.ok(s.after_loss.ok > 0 && s.after_loss.ok === s.after_loss.requests, JSON.stringify(s.after_loss));
    assert.ok(s.after_loss.served_by_c > 0);
    assert.equal(s.requests, s.ok + s.failed);

    // nothing left: namespaces, the link, the temp dir, processes of the run
    assert.deepEqual(findLeftovers(s.run_id), { namespaces: [], links: [], dirs: [], pids: [] });
  },
);

test(
  "cluster - cleanupLeftovers removes a run's processes, namespaces, link and dir when its owner could not",
  { skip, timeout: 30_000 },
  async () => {
    const net = createHostNetwork({ hosts: ["A", "B"] });
    try {
      const child = net.spawnIn("B", "sleep", ["60"], { stdio: "ignore" });
      const exited = new Promise((r) => child.once("exit", r));
      const before = findLeftovers(net.runId);
      assert.equal(before.namespaces.length, 3, JSON.stringify(before));
      assert.equal(before.links.length, 1);
      assert.equal(before.dirs.length, 1);
      assert.ok(before.pids.includes(child.pid!), "the process carries the run marker");
      const removed = cleanupLeftovers(net.runId);
      assert.ok(removed.pids.includes(child.pid!));
      await exited;
      assert.deepEqual(findLeftovers(net.runId), { namespaces: [], links: [], dirs: [], pids: [] });
    } finally {
      net.destroy();
    }
  },
);
