/**
 * A copy of this project in a temporary folder (what git tracks and what is not ignored; node_modules linked), for
 * tests that change its files as a user would (`servegraph new`, `up --watch`), and `servegraph up` run in it as a
 * child process until its JSON summary.
 */
import assert from "node:assert/strict";
import { spawnSync, type ChildProcess } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { spawnUp, type UpSummary } from "../../tools/harness/spawn-up.ts";
import { REPO_ROOT } from "./graph.ts";

export function copyProject(): string {
  const dir = mkdtempSync(join(tmpdir(), "sg-project-copy-"));
  const files = spawnSync("git", ["ls-files", "-co", "--exclude-standard"], { cwd: REPO_ROOT, encoding: "utf8" });
  assert.equal(files.status, 0, files.stderr);
  for (const f of files.stdout.split("\n").filter(Boolean)) {
    try {
      mkdirSync(dirname(join(dir, f)), { recursive: true });
      cpSync(join(REPO_ROOT, f), join(dir, f));
    } catch {
      // listed but deleted in the working tree
    }
  }
  symlinkSync(join(REPO_ROOT, "node_modules"), join(dir, "node_modules"));
  return dir;
}

/** `servegraph up <args> --json` in `dir` (its own nats-server); resolves with the process once its summary is out. */
export async function startUp(
  dir: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ up: ChildProcess; summary: UpSummary; output: () => string }> {
  const up = await spawnUp({ cwd: dir, args, env: { SG_LOG_LEVEL: "warn", ...env } });
  let out = "";
  up.proc.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  return { up: up.proc, summary: up.summary, output: () => out + up.stderr() };
}

/** SIGINT (Ctrl-C), then SIGKILL after 20 s; resolves once it has exited. */
export async function stopUp(up: ChildProcess | undefined): Promise<void> {
  if (!up || up.exitCode !== null || up.signalCode !== null) return;
  const exited = new Promise((r) => up.once("exit", r));
  up.kill("SIGINT");
  const killer = setTimeout(() => up.kill("SIGKILL"), 20_000);
  await exited;
  clearTimeout(killer);
}
