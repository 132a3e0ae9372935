/**
 * Worker hosts: `servegraph up --nats <url> --only node=N --host name` starts just those nodes, joining a graph that
 * runs on the same NATS. Two `up`s on one broker make one graph: a request crosses them, `status` lists each replica
 * with its host, `scale --host` reaches the right `up`, and a worker's supervisor waits for its own replicas only;
 * each host's autoscaler reports (and moves) only its own replicas.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, startNats, TEST_GRAPH_FILE } from "../helpers/graph.ts";
import { spawnUp, type UpSummary } from "../../tools/harness/spawn-up.ts";

const CLI = join(REPO_ROOT, "ops/cli.ts");

function cli(args: string[], env: NodeJS.ProcessEnv) {
  return spawnSync(process.execPath, ["--import", "tsx", CLI, ...args], {
    cwd: REPO_ROOT,
    encoding: "utf8",
    env,
    timeout: 60_000,
  });
}

/** Starts `servegraph up ... --json` and resolves with its summary line once its nodes are ready. */
async function up(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ proc: ChildProcess; summary: UpSummary; stderr: () => string }> {
  const u = await spawnUp({ args: ["--graph", TEST_GRAPH_FILE, ...args], env, startTimeoutMs: 60_000 });
  return { proc: u.proc, summary: u.summary, stderr: u.stderr };
}

async function stop(p: ChildProcess | undefined): Promise<number | null> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return p?.exitCode ?? null;
  p.kill("SIGINT");
  const t = setTimeout(() => p.kill("SIGKILL"), 15_000);
  const code = await new Promise<number | null>((r) => p.once("exit", (c) => r(c)));
  clearTimeout(t);
  return code;
}

test("worker hosts - two `up --only` on one NATS make one graph, listed by host, scaled per host", async (t) => {
  const nats = await startNats();
  const env = {
    ...process.env,
    SG_STATE_FILE: join(mkdtempSync(join(tmpdir(), "sg-state-")), "state.json"),
    SG_LOG_LEVEL: "warn",
  } as NodeJS.ProcessEnv;
  delete env.NATS_URL;
  let b: Awaited<ReturnType<typeof up>> | undefined;
  let a: Awaited<ReturnType<typeof up>> | undefined;
  t.after(async () => {
    await stop(a?.proc);
    await stop(b?.proc);
    await nats.stop();
  });

  // --only needs a NATS to join
  const noNats = cli(["up", "--graph", TEST_GRAPH_FILE, "--only", "greeter=1", "--json"], env);
  assert.equal(noNats.status, 1);
  assert.match(noNats.stdout + noNats.stderr, /--nats/);
  const unknown = cli(["up", "--graph", TEST_GRAPH_FILE, "--nats", nats.url, "--only", "nope=1", "--json"], env);
  assert.equal(unknown.status, 1);
  assert.match(unknown.stdout + unknown.stderr, /unknown node .{0,2}nope/);

  b = await up(["--nats", nats.url, "--only", "greeter=2", "--host", "host-b"], env);
  assert.deepEqual(
    b.summary.nodes.map((n) => [n.node, n.replicas]),
    [["greeter", 2]],
    "only greeter, no closure",
  );
  a = await up(["--nats", nats.url, "--only", "greeter-proxy=1,greeter=1", "--host", "host-a"], env);
  // host-a's supervisor counted its own greeter, not host-b's two
  assert.deepEqual(a.summary.nodes.map((n) => [n.node, n.replicas]).sort(), [
    ["greeter", 1],
    ["greeter-proxy", 1],
  ]);

  const req = cli(["request", "sg.v1.greeter-proxy.greeting", '{"name":"ada"}', "--json", "--nats", nats.url], env);
  assert.equal(req.status, 0, req.stderr);
  assert.match(req.stdout, /ada/);

  const status = cli(["status", "--json", "--nats", nats.url], env);
  assert.equal(status.status, 0, status.stderr);
  const s = JSON.parse(status.stdout) as {
    nodes: {
      node: string;
      replicas: number;
      hosts: Record<string, number>;
      replica_list: { id: string; host: string }[];
    }[];
  };
  const greeter = s.nodes.find((n) => n.node === "greeter")!;
  assert.equal(greeter.replicas, 3);
  assert.deepEqual(greeter.hosts, { "host-a": 1, "host-b": 2 });
  assert.deepEqual(
    greeter.replica_list.map((r) => r.host),
    ["host-a", "host-b", "host-b"],
  );
  assert.equal(new Set(greeter.replica_list.map((r) => r.id)).size, 3, "replica ids are unique across hosts");
  assert.deepEqual(s.nodes.find((n) => n.node === "greeter-proxy")!.hosts, { "host-a": 1 });
  const text = cli(["status", "--nats", nats.url], env);
  assert.match(text.stdout, /greeter\s+3\s+host-a:1 host-b:2/);

  // scale reaches the `up` of the host it names; a worker host does not answer the plain control subject
  const scaled = cli(["scale", "greeter", "3", "--host", "host-b", "--json", "--nats", nats.url], env);
  assert.equal(scaled.status, 0, scaled.stderr + scaled.stdout);
  assert.deepEqual(JSON.parse(scaled.stdout), { node: "greeter", replicas: 3, host: "host-b" });
  const notHere = cli(["scale", "greeter-proxy", "2", "--host", "host-b", "--json", "--nats", nats.url], env);
  assert.equal(notHere.status, 1);
  assert.equal((JSON.parse(notHere.stdout) as { error: { code: string } }).error.code, "NOT_FOUND");
  const plain = cli(["scale", "greeter", "2", "--json", "--nats", nats.url], env);
  assert.equal(plain.status, 1, "no full `up` runs: nobody answers sg.ops.control");
  assert.equal((JSON.parse(plain.stdout) as { error: { code: string } }).error.code, "UNAVAILABLE");
  const after = JSON.parse(cli(["status", "--json", "--nats", nats.url], env).stdout) as typeof s & {
    autoscalers: {
      host: string;
      nodes: { node: string; replicas: number; pinned: number | null; scale_to_zero: boolean }[];
    }[];
  };
  assert.deepEqual(after.nodes.find((n) => n.node === "greeter")!.hosts, { "host-a": 1, "host-b": 3 });
  // Each host's autoscaler counts and moves only its own replicas; the scale pinned host-b's greeter alone.
  const scalers = Object.fromEntries(
    after.autoscalers.map((x) => [x.host, Object.fromEntries(x.nodes.map((n) => [n.node, n]))]),
  );
  assert.deepEqual(Object.keys(scalers).sort(), ["host-a", "host-b"]);
  assert.deepEqual(Object.keys(scalers["host-b"]!), ["greeter"]);
  assert.deepEqual([scalers["host-b"]!.greeter!.replicas, scalers["host-b"]!.greeter!.pinned], [3, 3]);
  assert.deepEqual([scalers["host-a"]!.greeter!.replicas, scalers["host-a"]!.greeter!.pinned], [1, null]);

  assert.equal(await stop(a.proc), 0, a.stderr());
  assert.equal(await stop(b.proc), 0, b.stderr());
});
