import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { loadGraph, nodesOfGraphs } from "../../runtime/index.ts";
import { findNatsServer } from "../../ops/nats-server.ts";
import { inboxPrefix, natsAuthorization, passwordEnvName, SRV_PING_PROBE } from "../../ops/manifests/index.ts";
import { REPO_ROOT, startNats } from "../helpers/graph.ts";

/**
 * The readiness probe of a node without HTTP in a cluster (deploy/probe/srv-ping.mjs, the exec probe of its
 * Deployment): against a real nats-server with the manifests' users and permissions and a real greeter replica,
 * it passes for that replica once it serves, and fails for another replica id, with a wrong password, and once
 * the replica has stopped.
 */

const NO_NATS = findNatsServer() ? false : "nats-server is not installed";
const password = (u: string): string => `sgprobe${u.replace(/[^a-z0-9]/g, "")}`;

function probe(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [join(REPO_ROOT, SRV_PING_PROBE)], {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    c.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    c.on("exit", (code) => resolve({ code, stderr }));
  });
}

test(
  "manifests-probe - srv-ping.mjs passes for its own replica once it serves, fails otherwise",
  { skip: NO_NATS, timeout: 120_000 },
  async () => {
    const graph = await loadGraph();
    const nodes = nodesOfGraphs(graph, ["chain"]);
    await using nats = await startNats({
      config: natsAuthorization(graph, nodes).join("\n") + "\n",
      env: Object.fromEntries([...nodes, "servegraph"].map((u) => [passwordEnvName(u), password(u)])),
    });
    const env = {
      SG_NODE: "greeter",
      SG_REPLICA_ID: "greeter-7d9f-x2",
      NATS_URL: nats.url,
      NATS_USER: "greeter",
      NATS_PASSWORD: password("greeter"),
      NATS_INBOX_PREFIX: inboxPrefix("greeter"),
      SG_PROBE_TIMEOUT_MS: "2000",
    };
    let replica: ChildProcess | undefined;
    try {
      // before the replica runs: not ready
      const before = await probe(env);
      assert.equal(before.code, 1);
      assert.match(before.stderr, /no \$SRV\.PING answer from replica greeter-7d9f-x2 of greeter/);

      replica = spawn(process.execPath, ["--import", "tsx", "services/greeter/src/main.ts"], {
        cwd: REPO_ROOT,
        env: { ...process.env, ...env, SG_METRICS_PORT: "0", SG_ACTIVE_NODES: nodes.join(",") },
        stdio: ["ignore", "ignore", "inherit"],
      });
      let ready = await probe(env);
      for (let i = 0; ready.code !== 0 && i < 20; i++) {
        assert.equal(replica.exitCode, null, "the greeter replica exited");
        ready = await probe(env);
      }
      assert.equal(ready.code, 0, `the probe never passed: ${ready.stderr}`);

      // another replica of the same node answering is not this replica being ready
      const other = await probe({ ...env, SG_REPLICA_ID: "greeter-other" });
      assert.equal(other.code, 1);
      // the node's own credentials are what it uses
      const wrong = await probe({ ...env, NATS_PASSWORD: "wrong" });
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /cannot connect to NATS: .*Authorization Violation/i);

      // a stopped replica is not ready
      const exited = new Promise((r) => replica!.once("exit", r));
      replica.kill("SIGTERM");
      await exited;
      assert.equal((await probe(env)).code, 1);
    } finally {
      if (replica && replica.exitCode === null && replica.signalCode === null) {
        const exited = new Promise((r) => replica!.once("exit", r));
        replica.kill("SIGKILL");
        await exited;
      }
    }
  },
);
