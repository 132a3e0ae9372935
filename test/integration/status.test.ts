/**
 * `servegraph status` as an operator runs it: a separate process that finds the graph through NATS_URL or
 * through the state file of `servegraph up`, and reports every node from $SRV.INFO/STATS.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "../../runtime/client.ts";
import { createLogger } from "../../runtime/log.ts";
import { createService } from "../../runtime/service.ts";
import { GreetReply } from "../../subjects/schemas.ts";
import type { GraphStatus, NodeStatus } from "../../ops/commands/status.ts";
import { startGraph, REPO_ROOT } from "../helpers/graph.ts";

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `servegraph <args>` in its own process with exactly the given NATS_URL / SG_STATE_FILE. */
function servegraph(args: string[], env: { NATS_URL?: string; SG_STATE_FILE?: string }): Promise<CliResult> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  delete childEnv.NATS_URL;
  delete childEnv.SG_STATE_FILE;
  Object.assign(childEnv, env);
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "ops/cli.ts", ...args],
      { cwd: REPO_ROOT, env: childEnv, timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

async function statusJson(env: { NATS_URL?: string; SG_STATE_FILE?: string }): Promise<GraphStatus> {
  const r = await servegraph(["status", "--json"], env);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as GraphStatus;
}

const nodeOf = (s: GraphStatus, name: string): NodeStatus => {
  const n = s.nodes.find((x) => x.node === name);
  assert.ok(n, `status lists ${name}: ${s.nodes.map((x) => x.node).join(", ")}`);
  return n;
};

test("status - lists every node with its true replica count, and follows a replica going away", async () => {
  await using g = await startGraph({ graphs: ["chain"], replicas: { greeter: 2 } });
  const client = createClient(g.nc, { caller: "test", defaultTimeoutMs: 5000 });
  const N = 6;
  for (let i = 0; i < N; i++)
    await client.requestJson("sg.v1.greeter-proxy.greeting", { name: `n${i}` }, { schema: GreetReply });
  await assert.rejects(client.requestJson("sg.v1.greeter-proxy.greeting", { nom: "x" }), { code: "BAD_REQUEST" });
  // the control service of `servegraph up` is not a node of the graph
  const control = createService(g.nc, {
    name: "servegraph-ops",
    maxInFlight: 1,
    defaultTimeoutMs: 1000,
    log: createLogger("test", "error"),
    metadata: { graph: g.graph.name },
  });
  control.announce();
  await g.nc.flush();

  const before = await statusJson({ NATS_URL: g.nats.url });
  assert.equal(before.nats, g.nats.url);
  assert.equal(before.graph, g.graph.name);
  assert.deepEqual(before.nodes.map((n) => n.node).sort(), ["greeter", "greeter-proxy", "ingress"]);
  assert.equal(before.control.replicas, 1, "servegraph-ops is reported apart");

  const greeter = nodeOf(before, "greeter");
  assert.equal(greeter.replicas, 2);
  assert.deepEqual(
    greeter.replica_list.map((r) => r.id).sort(),
    g.sup
      .replicas("greeter")
      .map((r) => r.id)
      .sort(),
  );
  assert.equal(greeter.metrics_urls.length, 2);
  assert.equal(greeter.requests, N);
  assert.equal(greeter.in_flight, 0);
  assert.ok(greeter.p50_ms !== null && greeter.p99_ms !== null && greeter.p50_ms <= greeter.p99_ms);

  const proxy = nodeOf(before, "greeter-proxy");
  assert.equal(proxy.replicas, 1);
  assert.equal(proxy.requests, N + 1);
  assert.equal(proxy.errors, 1);
  assert.match(proxy.endpoints.find((e) => e.name === "greeting")?.last_error ?? "", /^400:/);

  const ingress = nodeOf(before, "ingress");
  assert.equal(ingress.http_url, g.ingressUrl);
  assert.deepEqual(ingress.metrics_urls, [`${g.ingressUrl}/metrics`]);

  const victim = g.sup.replicas("greeter")[0]!;
  victim.child.kill("SIGTERM");
  await new Promise((r) => victim.child.once("exit", r));
  const after = await statusJson({ NATS_URL: g.nats.url });
  assert.equal(nodeOf(after, "greeter").replicas, 1);
  assert.deepEqual(
    nodeOf(after, "greeter").replica_list.map((r) => r.id),
    [g.sup.replicas("greeter").find((r) => r !== victim)!.id],
  );
  await control.stop({ maxWaitMs: 100 });
});

test("status - finds the graph of `servegraph up` through its state file, and prints a table", async (t) => {
  await using g = await startGraph({ graphs: ["classify"] });
  const dir = mkdtempSync(join(tmpdir(), "sg-status-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stateFile = join(dir, "state.json");
  // This test process stands in for `servegraph up`: the state file names a live pid.
  writeFileSync(
    stateFile,
    JSON.stringify({
      pid: process.pid,
      natsUrl: g.nats.url,
      graphs: ["classify"],
      nodes: [...g.sup.nodes, "ghost"],
      startedAt: new Date().toISOString(),
    }),
  );
  const res = await fetch(`${g.ingressUrl}/classify`, {
    method: "POST",
    headers: { "content-type": "image/jpeg" },
    body: readFileSync(join(REPO_ROOT, "data/images/cat-chelsea.jpg")),
  });
  assert.equal(res.status, 200);

  const s = await statusJson({ SG_STATE_FILE: stateFile });
  assert.equal(s.nats, g.nats.url, "found without NATS_URL");
  assert.equal(s.control.pid, process.pid);
  assert.equal(nodeOf(s, "ghost").replicas, 0, "a node of the graph with no replica shows, with 0");
  const infer = nodeOf(s, "infer");
  assert.equal(infer.replicas, 1);
  assert.ok(infer.batch, "infer reports its batching");
  assert.equal(infer.batch.max_batch_size, g.graph.nodes.infer!.batching!.maxBatchSize);
  assert.ok(["cpu", "cuda", "webgpu"].includes(infer.batch.execution_provider));
  if (infer.batch.execution_provider === "cpu") {
    // `auto` on a host without a usable GPU provider: both GPU providers were tried, each with its reason.
    assert.deepEqual(
      infer.batch.provider_fallbacks.map((f) => f.provider),
      ["cuda", "webgpu"],
    );
    for (const f of infer.batch.provider_fallbacks) assert.ok(f.reason.length > 10, `${f.provider}: ${f.reason}`);
  }
  assert.equal(infer.batch.batches, 1);
  assert.equal(infer.batch.avg_batch_size, 1);
  assert.equal(infer.batch.batch_fill, 1 / infer.batch.max_batch_size);

  const table = await servegraph(["status"], { SG_STATE_FILE: stateFile });
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.split("\n");
  assert.match(
    lines.find((l) => l.startsWith("NODE")) ?? "",
    /^NODE\s+REPLICAS\s+HOSTS\s+IN-FLIGHT\s+REQUESTS\s+ERRORS\s+P50 ms\s+P99 ms\s+BATCH FILL\s+METRICS$/,
  );
  assert.match(
    lines.find((l) => l.startsWith("infer ")) ?? "",
    /^infer\s+1\s+\S+:1\s+0\s+\d+\s+0\s+\S+\s+\S+\s+\d+% \(avg [\d.]+\/\d+, (cpu|cuda|webgpu)\)\s+http:\/\/127\.0\.0\.1:\d+\/metrics$/,
  );
  assert.match(lines.find((l) => l.startsWith("ghost ")) ?? "", /^ghost\s+0 DOWN/);
  if (infer.batch.execution_provider === "cpu") {
    const at = lines.indexOf("infer runs on cpu; providers tried first:");
    assert.ok(at > 0, table.stdout);
    assert.match(lines[at + 1] ?? "", /^ {2}cuda: \S/);
    assert.match(lines[at + 2] ?? "", /^ {2}webgpu: \S/);
  }

  // nothing listening: a clear error, exit 1
  const none = await servegraph(["status"], { NATS_URL: "nats://127.0.0.1:1" });
  assert.equal(none.code, 1);
  assert.match(none.stderr, /cannot reach NATS at nats:\/\/127\.0\.0\.1:1/);
});
