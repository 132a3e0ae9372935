/**
 * A local nats-server on a loopback port: the embedded broker of `servegraph up` and of the tests.
 *
 * Ownership: the server process, its temp dir (config, ports file) and the `exit` hook that kills it belong to the
 * returned {@link LocalNats}; `stop()` releases all three. The server runs in its own process group, so a Ctrl-C in
 * the terminal does not stop it before the nodes have drained through it.
 *
 * Start-up: `signal` abandons it at any point; the server is killed, the dir removed, and startNats rejects with
 * `signal.reason`. Nothing is left behind.
 *
 * Supervision (`restart: true`): when the server dies and stop() was not called, it is started again on the same
 * port with the same config (clients reconnect by themselves: connectNats retries every 250 ms), retried with
 * backoff while the port is not free. Each exit and each restart is reported through `log`.
 *
 * Credentials: {@link localNatsAuth} gives a graph's local server the users and permissions of
 * `servegraph manifests` (ops/manifests/nats-permissions.ts) with fresh random passwords.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { MAX_PAYLOAD_BYTES } from "../subjects/limits.ts";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ResolvedGraph } from "../runtime/index.ts";
import { inboxPrefix, natsAuthorization, OPS_USER, passwordEnvName, randomPassword } from "./manifests/index.ts";

export interface LocalNats {
  readonly url: string;
  readonly port: number;
  /** The server process now running (a new one after each restart). */
  readonly process: ChildProcess;
  /** How many times it was restarted after dying. */
  readonly restarts: number;
  /** SIGTERM, SIGKILL after `graceMs` (default 5000); stops supervision and removes the temp dir. */
  stop(opts?: { graceMs?: number }): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface NatsServerOptions {
  maxPayloadBytes?: number;
  /** nats.conf lines added to the limits (e.g. {@link LocalNatsAuth.config}). */
  config?: string;
  /** Env of the server on top of ours (e.g. the passwords the config references). */
  env?: Record<string, string>;
  /** Start the server again on the same port when it dies unexpectedly. */
  restart?: boolean;
  /** Abandons start-up (not a running server: stop() does that). */
  signal?: AbortSignal;
  /** Exits and restarts of a supervised server. */
  log?: (line: string) => void;
  /** A restarted server is listening (its pid). */
  onRestart?: (pid: number) => void;
}

/** Credentials of one NATS user as a client passes them (runtime/nats.ts connectNats reads these env vars). */
export interface NatsCredentials {
  readonly user: string;
  readonly password: string;
  /** The reply-inbox prefix its permissions allow; undefined: the default `_INBOX`. */
  readonly inboxPrefix?: string;
}

export interface LocalNatsAuth {
  /** The `authorization` block of nats.conf. */
  readonly config: string;
  /** Env of the server: each user's password, under the name the config references. */
  readonly serverEnv: Record<string, string>;
  /** Per node: its replicas' NATS_USER, NATS_PASSWORD and NATS_INBOX_PREFIX. */
  readonly nodeEnv: Record<string, Record<string, string>>;
  /** The ops user: `servegraph up` itself and the ops commands (through the state file). */
  readonly ops: NatsCredentials;
}

export const DEFAULT_STOP_GRACE_MS = 5000;
const START_TIMEOUT_MS = 10_000;
const RESTART_BACKOFF_MAX_MS = 5000;

export function findNatsServer(): string | undefined {
  if (process.env.NATS_SERVER_BIN && existsSync(process.env.NATS_SERVER_BIN)) return process.env.NATS_SERVER_BIN;
  for (const p of ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"])
    if (existsSync(p)) return p;
  const r = spawnSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
}

export const NATS_INSTALL_HINT =
  "nats-server is not installed. On Debian/Ubuntu: `sudo apt-get install -y nats-server`; elsewhere see https://docs.nats.io/running-a-nats-service/introduction/installation (or set NATS_URL to an existing server).";

/**
 * Users and permissions of `servegraph manifests` for the nodes a local graph runs (every node has an edge-derived
 * user; the ops user may also use `sg.ops.control`), with passwords made for this run only.
 */
export function localNatsAuth(graph: ResolvedGraph, nodes: readonly string[]): LocalNatsAuth {
  const password = new Map([...nodes, OPS_USER].map((u) => [u, randomPassword()]));
  return {
    config: natsAuthorization(graph, nodes, { opsControl: true }).join("\n") + "\n",
    serverEnv: Object.fromEntries([...password].map(([u, p]) => [passwordEnvName(u), p])),
    nodeEnv: Object.fromEntries(
      nodes.map((n) => [n, { NATS_USER: n, NATS_PASSWORD: password.get(n)!, NATS_INBOX_PREFIX: inboxPrefix(n) }]),
    ),
    ops: { user: OPS_USER, password: password.get(OPS_USER)! },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const alive = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;

/**
 * max_payload is raised to 16 MB so an 8 MB image fits in one request; single-image tensors (602 KB) fit the
 * 1 MB default anyway. Against another server, the ingress answers 413 for images over that server's limit.
 */
export async function startNats(opts: NatsServerOptions = {}): Promise<LocalNats> {
  const bin = findNatsServer();
  if (!bin) throw new Error(NATS_INSTALL_HINT);
  opts.signal?.throwIfAborted();
  const log = opts.log ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), "servegraph-nats-"));
  const conf = join(dir, "nats.conf");
  const maxPayload = opts.maxPayloadBytes ?? MAX_PAYLOAD_BYTES;
  writeFileSync(
    conf,
    `max_payload: ${maxPayload}\nmax_pending: ${Math.max(64 * 1024 * 1024, maxPayload * 4)}\n${opts.config ?? ""}`,
    { mode: 0o600 },
  );

  let stopping = false;
  let restarts = 0;
  let stderr = "";
  const launch = (port: number): ChildProcess => {
    stderr = "";
    const c = spawn(bin, ["-a", "127.0.0.1", "-p", String(port), "--ports_file_dir", dir, "-c", conf], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, ...opts.env },
      detached: true,
    });
    c.stderr!.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    c.on("error", () => {}); // a failed spawn also exits; start-up reports it
    return c;
  };
  /** The server's URL once its ports file is written; kills it and throws when it exits, hangs or start-up is abandoned. */
  const listening = async (c: ChildProcess, signal?: AbortSignal): Promise<string> => {
    const portsFile = join(dir, `nats-server_${c.pid}.ports`);
    const t0 = Date.now();
    for (;;) {
      if (!alive(c))
        throw new Error(
          `nats-server exited with ${c.exitCode ?? c.signalCode}: ${stderr.trim().split("\n").pop() ?? ""}`,
        );
      if (signal?.aborted) {
        c.kill("SIGKILL");
        throw signal.reason;
      }
      try {
        const url = (JSON.parse(readFileSync(portsFile, "utf8")) as { nats: string[] }).nats[0];
        if (url) return url;
      } catch {
        // not written (or not complete) yet
      }
      if (Date.now() - t0 > START_TIMEOUT_MS) {
        c.kill("SIGKILL");
        throw new Error(`nats-server did not start in ${START_TIMEOUT_MS / 1000} s: ${stderr}`);
      }
      await sleep(20);
    }
  };

  let current = launch(-1);
  const killOnExit = (): void => {
    if (alive(current)) current.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", killOnExit);
  let url: string;
  try {
    url = await listening(current, opts.signal);
  } catch (err) {
    if (alive(current)) current.kill("SIGKILL");
    process.removeListener("exit", killOnExit);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const port = Number(new URL(url).port);

  // The restart backoff: stop() cuts it short.
  let backoff: NodeJS.Timeout | undefined;
  let wakeUp = (): void => {};
  const restartLoop = async (): Promise<void> => {
    for (let attempt = 0; !stopping; attempt++) {
      const c = (current = launch(port));
      try {
        await listening(c);
      } catch (err) {
        if (stopping) return;
        const waitMs = Math.min(RESTART_BACKOFF_MAX_MS, 250 * 2 ** attempt);
        log(
          `nats-server did not restart on port ${port} (${err instanceof Error ? err.message : String(err)}); retrying in ${waitMs} ms`,
        );
        await new Promise<void>((r) => {
          wakeUp = r;
          backoff = setTimeout(r, waitMs);
        });
        continue;
      }
      if (stopping) return;
      restarts++;
      log(`nats-server restarted on port ${port} (pid ${c.pid}); clients reconnect by themselves`);
      supervise(c);
      opts.onRestart?.(c.pid!);
      return;
    }
  };
  const supervise = (c: ChildProcess): void => {
    c.once("exit", (code, signal) => {
      if (stopping || !opts.restart) return;
      log(
        `nats-server (pid ${c.pid}, port ${port}) died (${signal ?? `code ${code}`}): restarting it on the same port`,
      );
      void restartLoop();
    });
  };
  supervise(current);

  const stop = async (o: { graceMs?: number } = {}): Promise<void> => {
    stopping = true;
    clearTimeout(backoff);
    wakeUp();
    const c = current;
    if (alive(c)) {
      const exited = new Promise((r) => c.once("exit", r));
      c.kill("SIGTERM");
      // SIGKILL also ends a stopped (SIGSTOP) server, which a SIGTERM would wait on forever.
      const t = setTimeout(() => c.kill("SIGKILL"), o.graceMs ?? DEFAULT_STOP_GRACE_MS);
      await exited;
      clearTimeout(t);
    }
    process.removeListener("exit", killOnExit);
    rmSync(dir, { recursive: true, force: true });
  };
  return {
    url,
    port,
    get process() {
      return current;
    },
    get restarts() {
      return restarts;
    },
    stop,
    [Symbol.asyncDispose]: () => stop(),
  };
}
