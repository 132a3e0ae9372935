/**
 * `servegraph up` on the autoscale fixture (test/fixtures/autoscale-graph.config.ts) as a child process with its own
 * state file, a connection as its ops user, and the autoscaler's view of a node over the control subject.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { AutoscaleNodeSnapshot, AutoscalerSnapshot } from "../../ops/autoscaler.ts";
import { spawnUp, type SpawnedUp, type UpSummary } from "../../tools/harness/spawn-up.ts";
import { REPO_ROOT } from "./graph.ts";

const CLI = join(REPO_ROOT, "ops/cli.ts");
export const AUTOSCALE_GRAPH_FILE = join(REPO_ROOT, "test/fixtures/autoscale-graph.config.ts");

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface RunningUp {
  proc: ChildProcess;
  nc: NatsConnection;
  env: NodeJS.ProcessEnv;
  summary: UpSummary;
  stderr: () => string;
  stop(): Promise<number | null>;
}

/** `servegraph up <args> --json` on the autoscale fixture, with its own state file; a connection as its ops user. */
export async function startUp(args: string[]): Promise<RunningUp> {
  const dir = mkdtempSync(join(tmpdir(), "sg-autoscale-"));
  const stateFile = join(dir, "state.json");
  const vars = { SG_STATE_FILE: stateFile, SG_LOG_LEVEL: "info" };
  const env = { ...process.env, ...vars } as NodeJS.ProcessEnv;
  delete env.NATS_URL;
  delete env.NATS_USER;
  let up: SpawnedUp;
  try {
    up = await spawnUp({ args: [...args, "--graph", AUTOSCALE_GRAPH_FILE, "--autoscale-tick-ms", "200"], env: vars });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const stop = async (): Promise<number | null> => {
    const code = await up.stop();
    rmSync(dir, { recursive: true, force: true });
    return code;
  };
  try {
    const state = JSON.parse(readFileSync(stateFile, "utf8")) as { natsUser: string; natsPassword: string };
    const nc = await connect({
      servers: up.summary.nats,
      user: state.natsUser,
      pass: state.natsPassword,
      name: "autoscale-test",
    });
    return {
      proc: up.proc,
      nc,
      env,
      summary: up.summary,
      stderr: up.stderr,
      stop: async () => {
        await nc.close().catch(() => {});
        return stop();
      },
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** `servegraph <args>` in a process of its own, finding the graph through the state file. */
export function cli(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ["--import", "tsx", CLI, ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    p.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const t = setTimeout(() => p.kill("SIGKILL"), 60_000);
    p.once("exit", (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The autoscaler's view of one node, asked of `up` over its control subject. */
export async function autoscaled(nc: NatsConnection, node: string): Promise<AutoscaleNodeSnapshot> {
  const m = await nc.request("sg.ops.control", JSON.stringify({ op: "autoscaler" }), { timeout: 5000 });
  const snap = m.json() as AutoscalerSnapshot;
  const n = snap.nodes.find((x) => x.node === node);
  assert.ok(n, `${node} is autoscaled: ${JSON.stringify(snap)}`);
  return n;
}

/** Polls until `ok` holds for the node (bounded). */
export async function until(
  nc: NatsConnection,
  node: string,
  ok: (n: AutoscaleNodeSnapshot) => boolean,
  what: string,
  timeoutMs = 45_000,
): Promise<AutoscaleNodeSnapshot> {
  const t0 = performance.now();
  for (;;) {
    const n = await autoscaled(nc, node);
    if (ok(n)) return n;
    if (performance.now() - t0 > timeoutMs)
      assert.fail(`${node}: ${what} not reached in ${timeoutMs} ms: ${JSON.stringify(n)}`);
    await sleep(200);
  }
}
