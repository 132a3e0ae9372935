import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { loadGraph, nodesOfGraphs } from "../../runtime/index.ts";
import { findNatsServer } from "../../ops/nats-server.ts";
import {
  buildManifests,
  inboxPrefix,
  passwordEnvName,
  NATS_CLUSTER_PORT,
  NATS_REPLICAS,
  type K8sObject,
} from "../../ops/manifests/index.ts";

/**
 * The nats.conf of `servegraph manifests` as a real 3-server cluster on this machine: the same file for every
 * server, as the StatefulSet mounts it, with only what Kubernetes gives differently here replaced (the pods' DNS
 * names in the routes become 127.0.0.1 ports; each server its own ports and pid file). A node connected to one
 * server calls a node connected to another, under the per-node permissions, and a violation is still refused.
 */

const NATS_BIN = findNatsServer();
const NO_NATS = NATS_BIN ? false : "nats-server is not installed";
const password = (u: string): string => `sgcluster${u.replace(/[^a-z0-9]/g, "")}`;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

test("manifests-nats-cluster - nats-server -t accepts the cluster's nats.conf", { skip: NO_NATS }, async () => {
  const graph = await loadGraph();
  const nodes = nodesOfGraphs(graph, graph.defaultGraphs);
  const conf = (
    buildManifests(graph, graph.defaultGraphs).find((m) => m.object.kind === "ConfigMap")!.object.data as Record<
      string,
      string
    >
  )["nats.conf"]!;
  assert.match(
    conf,
    new RegExp(
      `routes: \\["nats-route://nats-0\\.nats-headless:${NATS_CLUSTER_PORT}", "nats-route://nats-1\\.nats-headless:${NATS_CLUSTER_PORT}", "nats-route://nats-2\\.nats-headless:${NATS_CLUSTER_PORT}"\\]`,
    ),
  );
  const dir = mkdtempSync(join(tmpdir(), "sg-cluster-conf-"));
  try {
    writeFileSync(join(dir, "nats.conf"), conf);
    const env = {
      ...process.env,
      POD_NAME: "nats-1",
      ...Object.fromEntries([...nodes, "servegraph"].map((u) => [passwordEnvName(u), password(u)])),
    };
    const t = spawnSync(NATS_BIN!, ["-t", "-c", join(dir, "nats.conf")], { env, encoding: "utf8", timeout: 30_000 });
    assert.equal(t.status, 0, `nats-server -t: ${t.stderr}${t.stdout}`);
    // the server name comes from the pod: without POD_NAME the file is refused
    const noPod = spawnSync(NATS_BIN!, ["-t", "-c", join(dir, "nats.conf")], {
      env: { ...env, POD_NAME: undefined },
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.notEqual(noPod.status, 0);
    assert.match(noPod.stderr + noPod.stdout, /POD_NAME/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(
  "manifests-nats-cluster - three servers from the same nats.conf route a node's request across servers",
  { skip: NO_NATS, timeout: 120_000 },
  async () => {
    const graph = await loadGraph();
    const nodes = nodesOfGraphs(graph, ["chain"]);
    const ms = buildManifests(graph, ["chain"], { password });
    const conf = (ms.find((m) => m.object.kind === "ConfigMap")!.object.data as Record<string, string>)["nats.conf"]!;
    const sts = ms.find((m) => m.object.kind === "StatefulSet")!.object as K8sObject & { spec: { replicas: number } };
    assert.equal(sts.spec.replicas, NATS_REPLICAS);
    const env = Object.fromEntries([...nodes, "servegraph"].map((u) => [passwordEnvName(u), password(u)]));
    const dir = mkdtempSync(join(tmpdir(), "sg-cluster-"));
    const servers: ChildProcess[] = [];
    const conns: NatsConnection[] = [];
    try {
      const client: number[] = [];
      const route: number[] = [];
      for (let i = 0; i < NATS_REPLICAS; i++) {
        client.push(await freePort());
        route.push(await freePort());
      }
      for (let i = 0; i < NATS_REPLICAS; i++) {
        const local = conf
          .replace(/^port: 4222$/m, `port: ${client[i]}`)
          .replace(/^http_port: .*$/m, "")
          .replace(/^pid_file: .*$/m, `pid_file: ${JSON.stringify(join(dir, `nats-${i}.pid`))}`)
          .replace(/^ {2}port: 6222$/m, `  port: ${route[i]}`)
          .replace(
            /nats-route:\/\/nats-(\d)\.nats-headless:6222/g,
            (_m, k: string) => `nats-route://127.0.0.1:${route[Number(k)]}`,
          );
        assert.notEqual(local, conf);
        const file = join(dir, `nats-${i}.conf`);
        writeFileSync(file, local);
        const c = spawn(NATS_BIN!, ["-a", "127.0.0.1", "-c", file], {
          env: { ...process.env, ...env, POD_NAME: `nats-${i}` },
          stdio: ["ignore", "ignore", "pipe"],
        });
        c.stderr!.resume();
        servers.push(c);
      }
      const as = (user: string, i: number) =>
        connect({
          servers: `nats://127.0.0.1:${client[i]}`,
          user,
          pass: password(user),
          inboxPrefix: inboxPrefix(user),
          reconnect: false,
          timeout: 5000,
        });
      const connectRetrying = async (user: string, i: number): Promise<NatsConnection> => {
        for (let t = 0; ; t++) {
          try {
            return await as(user, i);
          } catch (err) {
            if (t > 50) throw err;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      };
      const greeter = await connectRetrying("greeter", 0);
      const proxy = await connectRetrying("greeter-proxy", 2);
      conns.push(greeter, proxy);
      greeter.subscribe("sg.v1.greeter.greet", {
        queue: "greeter",
        callback: (_e, m) => void m.respond(`hello from ${m.string()}`),
      });
      await greeter.flush();
      // the routes form while the servers start: the subscription reaches server 2 once they are up
      let answer: string | undefined;
      for (let t = 0; !answer && t < 100; t++) {
        try {
          answer = (await proxy.request("sg.v1.greeter.greet", "nats-2", { timeout: 500 })).string();
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      assert.equal(answer, "hello from nats-2", "a request from a node on server 2 answered by a node on server 0");
      // the permissions hold across the cluster: greeter-proxy may not subscribe to greeter's subject
      const seen: string[] = [];
      void (async () => {
        for await (const s of proxy.status()) if (s.type === "error") seen.push(String(s.error.message));
      })();
      proxy.subscribe("sg.v1.greeter.greet", { callback: () => {} });
      await proxy.flush();
      // the server's -ERR comes before the PONG, but the status iterator hands it over asynchronously: wait for it (bounded)
      for (let t = 0; t < 40 && !seen.length; t++) await new Promise((r) => setTimeout(r, 50));
      assert.match(seen.join(), /Permissions Violation for Subscription to "sg\.v1\.greeter\.greet"/);
      const pidFiles = readdirSync(dir).filter((f) => f.endsWith(".pid")).length;
      assert.equal(pidFiles, NATS_REPLICAS, "every server wrote its pid file (the lame-duck preStop hook signals it)");
      assert.ok(readFileSync(join(dir, "nats-0.pid"), "utf8").trim().length > 0);
    } finally {
      for (const c of conns) await c.close().catch(() => {});
      await Promise.all(
        servers.map((c) => {
          if (c.exitCode !== null || c.signalCode !== null) return undefined;
          const exited = new Promise((r) => c.once("exit", r));
          c.kill("SIGTERM");
          return exited;
        }),
      );
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
