/**
 * `servegraph up ... --json` as a child process, the one way tests, benchmarks, the multi-host scenario and the GPU
 * check start a graph from the outside: spawned, its JSON summary (ops/commands/up.ts `UpSummary`) awaited within
 * a limit, its stderr kept, and stopped with SIGINT (what Ctrl-C sends: it drains and stops everything in order),
 * then SIGKILL after a grace period. A failed start kills it and rejects with the end of its stderr.
 */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { join, resolve } from "node:path";
import type { UpSummary } from "../../ops/commands/up.ts";

export type { UpSummary };

const REPO_ROOT = resolve(import.meta.dirname, "../..");

export interface SpawnUpOptions {
  /** Arguments after `up` (graphs, flags); `--json` is added. */
  args: readonly string[];
  /** Working directory (default: this repository); the CLI is `<cwd>/ops/cli.ts` unless `cli` says otherwise. */
  cwd?: string;
  cli?: string;
  /** Variables over this process's environment; an `undefined` value removes one. */
  env?: Record<string, string | undefined>;
  /** Keep NATS_URL, NATS_USER, NATS_PASSWORD, NATS_INBOX_PREFIX of this process (default: removed, so up runs its own broker). */
  keepNatsEnv?: boolean;
  /** How long to wait for the summary (default 90 s). */
  startTimeoutMs?: number;
  /** How the process is started (default: child_process.spawn); e.g. inside a network namespace. */
  spawn?: (command: string, args: string[], options: SpawnOptions) => ChildProcess;
  /** Every chunk of its stdout and stderr, as it comes (e.g. to a log file). */
  onOutput?: (chunk: Buffer, stream: "stdout" | "stderr") => void;
  /** What a failed start's error begins with (default "servegraph up"). */
  label?: string;
}

export interface UpProcess {
  proc: ChildProcess;
  /** Resolves with the summary; rejects if up exits or the limit passes first (the process is then killed). */
  summary: Promise<UpSummary>;
  /** Its exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** Resolves once its stderr matches `re` (rejects after `timeoutMs`). */
  waitLog(re: RegExp, timeoutMs?: number): Promise<void>;
  /** SIGINT, then SIGKILL after `graceMs` (default 15 s); resolves with its exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

export interface SpawnedUp extends Omit<UpProcess, "summary"> {
  summary: UpSummary;
}

const NATS_ENV = ["NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_INBOX_PREFIX"];

/** Starts up and returns at once; `summary` settles when it is up (or is not). */
export function startUpProcess(o: SpawnUpOptions): UpProcess {
  const cwd = o.cwd ?? REPO_ROOT;
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (!o.keepNatsEnv) for (const k of NATS_ENV) delete env[k];
  for (const [k, v] of Object.entries(o.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const args = ["--import", "tsx", o.cli ?? join(cwd, "ops/cli.ts"), "up", ...o.args, "--json"];
  const proc = (o.spawn ?? spawn)(process.execPath, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  const label = o.label ?? "servegraph up";
  let out = "";
  let err = "";
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  proc.stderr!.on("data", (d: Buffer) => {
    o.onOutput?.(d, "stderr");
    err += d.toString();
    for (const w of waiters.splice(0))
      if (w.re.test(err)) w.resolve();
      else waiters.push(w);
  });
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  const tail = (): string => err.trim().split("\n").slice(-8).join("\n");
  const stop = async (graceMs = 15_000): Promise<number | null> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGINT");
      const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(t);
    }
    return proc.exitCode;
  };
  const summary = new Promise<UpSummary>((resolveUp, reject) => {
    const limit = o.startTimeoutMs ?? 90_000;
    const t = setTimeout(() => {
      reject(new Error(`${label} did not start in ${limit / 1000} s:\n${tail()}`));
      void stop(2000);
    }, limit);
    proc.stdout!.on("data", (d: Buffer) => {
      o.onOutput?.(d, "stdout");
      out += d.toString();
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (line) {
        clearTimeout(t);
        try {
          resolveUp(JSON.parse(line) as UpSummary);
        } catch (e) {
          reject(e);
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`${label} exited (${code ?? proc.signalCode}) before it was up:\n${tail()}`));
    });
  });
  summary.catch(() => {});
  return {
    proc,
    summary,
    exited,
    stop,
    stderr: () => err,
    waitLog: (re, timeoutMs = 60_000) =>
      new Promise<void>((res, rej) => {
        if (re.test(err)) return res();
        const t = setTimeout(
          () => rej(new Error(`no ${re} in ${label}'s stderr after ${timeoutMs} ms:\n${tail()}`)),
          timeoutMs,
        );
        waiters.push({
          re,
          resolve: () => {
            clearTimeout(t);
            res();
          },
        });
      }),
  };
}

/** Starts up and resolves once it printed its summary (a failed start rejects, the process stopped). */
export async function spawnUp(o: SpawnUpOptions): Promise<SpawnedUp> {
  const up = startUpProcess(o);
  try {
    return { ...up, summary: await up.summary };
  } catch (e) {
    await up.stop(2000);
    throw e;
  }
}
