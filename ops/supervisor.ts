/**
 * Runs a graph on one machine: each node's replicas as child processes, started in dependency order (HTTP nodes
 * last), each node waited for until all its replicas answer $SRV.PING.
 *
 * Crashes: a replica that exits is restarted with backoff (250 ms doubling up to 30 s; back to 250 ms once a
 * replica has run `healthyMs`). A replica that exits within `earlyExitMs` of its start `maxEarlyExits` times in a
 * row cannot start: the supervisor stops restarting it and reports a {@link NodeStartError} with the last line
 * the replica wrote to stderr (`onGiveUp`; during start-up it also fails start-up unless `keepGoing`). Each
 * replica's stderr is read for that line and passed through to ours with `stdio: "inherit"`. A replica that exits
 * with EXIT_CONFIG (its configuration makes it unable to start: a forced provider that does not load, a missing
 * secret) cannot start at once: retrying cannot help.
 *
 * Scale: scale() adds or stops replicas within the node's [min, max]; 0 only for a node whose min is 0 (scale to zero:
 * `up` puts an activator on the node's subjects first, ops/activator.ts). Start-up starts `replicas[node]`, else
 * max(min, 1): a node with min 0 runs no replica only when its caller asks for 0.
 *
 * Stop: stop() stops the HTTP nodes first and the rest in reverse dependency order, each with SIGTERM (graceful
 * drain); whatever still runs `graceMs` after stop() began gets SIGKILL, so stop() ends within graceMs + a moment
 * whatever state NATS is in. kill() sends SIGKILL to every replica at once. Start-up abandoned through `signal`
 * stops what it started the same way and rejects with `signal.reason`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  EXIT_CONFIG,
  gather,
  nodesOfGraphs,
  readSecret,
  type ResolvedGraph,
  type ResolvedNode,
} from "../runtime/index.ts";
import { GraphError } from "../subjects/errors.ts";
import { Discovery } from "../subjects/names.ts";

export interface Replica {
  readonly id: string;
  readonly node: string;
  child: ChildProcess;
  restarts: number;
  stopping: boolean;
  /** When its current process started (epoch ms). */
  startedAt: number;
  /** Exits within `earlyExitMs` of a start, in a row. */
  earlyExits: number;
  /** Restarts since it last ran `healthyMs`: the backoff exponent. */
  backoffStep: number;
}

/** A node whose replica keeps exiting right after it starts (local: never sent over the wire). */
export class NodeStartError extends Error {
  override readonly name = "NodeStartError";
  constructor(
    readonly node: string,
    readonly lastLine: string,
  ) {
    super(`node ${node} cannot start: ${lastLine}`);
  }
}

export interface CrashLoopOptions {
  /** An exit this soon after a start counts as a failed start (default 10 s). */
  earlyExitMs?: number;
  /** Failed starts in a row that make a node unable to start (default 5). */
  maxEarlyExits?: number;
  /** Uptime after which the restart backoff starts again from its first step (default 30 s). */
  healthyMs?: number;
}

export interface SupervisorOptions {
  graph: ResolvedGraph;
  graphs: readonly string[];
  natsUrl: string;
  nc: NatsConnection;
  /** Extra env for every replica (tests: short timeouts, OTEL endpoint...). */
  env?: Record<string, string>;
  /** Per-node env overrides, e.g. { ingress: { PORT: "0" } }; also each node's NATS credentials. */
  nodeEnv?: Record<string, Record<string, string>>;
  /** Per-node replica count overrides at start. */
  replicas?: Record<string, number>;
  /**
   * A worker host (`servegraph up --only`): run only these nodes here, joining a graph whose other nodes run
   * elsewhere on the same NATS. `graphs` still names the whole graph (the ingress serves routes to all of it).
   */
  only?: readonly string[];
  /**
   * The host name replicas report in discovery (SG_HOST). On a worker host (`only`) it is also part of replica ids
   * (`preprocess-B-1`), which then stay unique across hosts; a full `up` keeps the short ids (`preprocess-1`).
   */
  host?: string;
  readyTimeoutMs?: number;
  restart?: boolean;
  crashLoop?: CrashLoopOptions;
  /** A node cannot start (see the top of this file); called during start-up too. */
  onGiveUp?: (err: NodeStartError) => void;
  /** Start-up carries on without a node that cannot start (default: start-up fails with its NodeStartError). */
  keepGoing?: boolean;
  /** Abandons start-up (a started supervisor: stop()). */
  signal?: AbortSignal;
  /** Default grace of stop(), also used when start-up fails (default 50 s). */
  stopGraceMs?: number;
  log?: (line: string) => void;
  /** Replicas' stdout and stderr: passed through ("inherit", default) or not; stderr is read either way. */
  stdio?: "inherit" | "ignore";
}

export interface Supervisor {
  readonly nodes: readonly string[];
  replicas(node: string): Replica[];
  scale(node: string, count: number): Promise<number>;
  /**
   * Replaces every replica of `node`, one at a time: a new process first, which must answer $SRV.PING, then the
   * old one is drained (SIGTERM: it finishes what it has). If a new one exits or does not answer within
   * `timeoutMs`, it stops there and rejects, and the replicas not yet replaced keep serving. Resolves with the
   * number replaced.
   */
  restart(node: string, timeoutMs?: number): Promise<number>;
  /** Resolves when every replica of `node` answers $SRV.PING (count of answers >= expected). */
  waitReady(node: string, expected: number, timeoutMs?: number): Promise<void>;
  /** The last line a replica of `node` wrote to stderr (stack frames and Node's version footer skipped). */
  lastStderrLine(node: string): string | undefined;
  stop(opts?: { graceMs?: number }): Promise<void>;
  /** SIGKILL to every replica now (a second Ctrl-C). */
  kill(): void;
}

export const DEFAULT_STOP_GRACE_MS = 50_000;
const DEFAULT_EARLY_EXIT_MS = 10_000;
const DEFAULT_MAX_EARLY_EXITS = 5;
const DEFAULT_HEALTHY_MS = 30_000;
const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 30_000;
const MAX_LINE_CHARS = 500;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const alive = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;

/** A line worth reporting: not blank, not a stack frame, not Node's `Node.js v20...` footer of an uncaught error. */
function meaningful(line: string): boolean {
  return line.trim() !== "" && !/^\s+at /.test(line) && !/^Node\.js v\d/.test(line);
}

/** A log line may carry a stack, JSON-escaped in one value (runtime/log.ts): keep its message, drop the frames. */
function withoutFrames(line: string): string {
  // Stack frames, and our own log prefix ("<time> ERROR <replica> "): the node is named by the caller.
  return line
    .replace(/\\n\s*at (?:[^"\\]|\\.)*/g, "")
    .replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z\s+(?:ERROR|WARN|INFO|DEBUG)\s+\S+\s+/, "");
}

function startOrder(graph: ResolvedGraph, graphs: readonly string[]): string[] {
  const all = nodesOfGraphs(graph, graphs);
  // HTTP nodes face users: start them when everything behind them is up, stop them first.
  return [...all.filter((n) => !graph.nodes[n]!.http), ...all.filter((n) => graph.nodes[n]!.http)];
}

export async function startSupervisor(opts: SupervisorOptions): Promise<Supervisor> {
  const { graph, nc } = opts;
  const active = startOrder(graph, opts.graphs);
  const only = opts.only;
  const order = only ? [...active.filter((n) => only.includes(n)), ...only.filter((n) => !active.includes(n))] : active;
  const log = opts.log ?? ((l: string) => process.stderr.write(l + "\n"));
  const earlyExitMs = opts.crashLoop?.earlyExitMs ?? DEFAULT_EARLY_EXIT_MS;
  const maxEarlyExits = opts.crashLoop?.maxEarlyExits ?? DEFAULT_MAX_EARLY_EXITS;
  const healthyMs = opts.crashLoop?.healthyMs ?? DEFAULT_HEALTHY_MS;
  const byNode = new Map<string, Replica[]>(order.map((n) => [n, []]));
  const lastLine = new Map<string, string>();
  const failures = new Map<string, NodeStartError>();
  /** Every replica process not yet exited, including those scale() is stopping: stop() and kill() reach them all. */
  const children = new Set<ChildProcess>();
  let seq = 0;
  let stopping = false;

  const envFor = (node: ResolvedNode, id: string): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...node.parameters, ...opts.env, ...opts.nodeEnv?.[node.name] };
    // A secret reaches only the node that declares it: drop every secret's source variable first.
    for (const other of Object.values(graph.nodes)) {
      for (const [k, s] of Object.entries(other.secrets)) {
        delete env[k];
        if (s.env) delete env[s.env];
      }
    }
    for (const [k, s] of Object.entries(node.secrets)) {
      const v = readSecret(s);
      if (v !== undefined) env[k] = v;
      else delete env[k];
    }
    env.SG_NODE = node.name;
    env.SG_REPLICA_ID = id;
    env.SG_GRAPH_FILE = graph.file;
    env.SG_ACTIVE_NODES = [...new Set([...active, ...order])].join(",");
    if (opts.host) env.SG_HOST = opts.host;
    env.NATS_URL = opts.natsUrl;
    env.SG_SUPERVISED = "1";
    return env;
  };

  /** Passes the replica's stderr through (or not) and keeps its last meaningful line for the node. */
  const readStderr = (node: string, child: ChildProcess): Promise<void> => {
    let partial = "";
    const take = (line: string): void => {
      if (!meaningful(line)) return;
      const l = withoutFrames(line);
      lastLine.set(node, l.length > MAX_LINE_CHARS ? `${l.slice(0, MAX_LINE_CHARS)}...` : l);
    };
    child.stderr!.on("data", (d: Buffer) => {
      if (opts.stdio !== "ignore") process.stderr.write(d);
      const lines = (partial + d.toString()).split("\n");
      partial = lines.pop()!;
      lines.forEach(take);
    });
    return new Promise((resolve) =>
      child.stderr!.once("close", () => {
        take(partial);
        resolve();
      }),
    );
  };

  const onExit = (node: ResolvedNode, rep: Replica, code: number | null, signal: NodeJS.Signals | null): void => {
    if (rep.stopping || stopping) return;
    const list = byNode.get(node.name)!;
    if (!list.includes(rep)) return;
    const uptimeMs = Date.now() - rep.startedAt;
    const how = signal ?? `code ${code}`;
    if (opts.restart === false) {
      log(`replica ${rep.id} exited (${how}); not restarting`);
      list.splice(list.indexOf(rep), 1);
      return;
    }
    rep.restarts++;
    // A configuration error (EXIT_CONFIG) will not go away by itself: give up at once.
    rep.earlyExits = code === EXIT_CONFIG ? maxEarlyExits : uptimeMs < earlyExitMs ? rep.earlyExits + 1 : 0;
    if (uptimeMs >= healthyMs) rep.backoffStep = 0;
    if (rep.earlyExits >= maxEarlyExits) {
      list.splice(list.indexOf(rep), 1);
      log(
        code === EXIT_CONFIG
          ? `replica ${rep.id} cannot start with this configuration (exit ${EXIT_CONFIG}): not restarting it`
          : `replica ${rep.id} exited ${rep.earlyExits} times in a row within ${earlyExitMs / 1000} s of starting: not restarting it`,
      );
      if (failures.has(node.name)) return; // reported once per node
      const err = new NodeStartError(node.name, lastLine.get(node.name) ?? `its replica exited (${how})`);
      failures.set(node.name, err);
      opts.onGiveUp?.(err);
      return;
    }
    const backoffMs = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** rep.backoffStep++);
    log(`replica ${rep.id} exited (${how}) after ${(uptimeMs / 1000).toFixed(1)} s; restarting in ${backoffMs} ms`);
    setTimeout(() => {
      if (!stopping && !rep.stopping) spawnReplica(node, rep);
    }, backoffMs).unref();
  };

  const spawnReplica = (node: ResolvedNode, r?: Replica): Replica => {
    const id = r?.id ?? (opts.host && only ? `${node.name}-${opts.host}-${++seq}` : `${node.name}-${++seq}`);
    const child = spawn(process.execPath, ["--import", "tsx", node.entry], {
      cwd: graph.root,
      env: envFor(node, id),
      stdio: ["ignore", opts.stdio ?? "inherit", "pipe"],
    });
    children.add(child);
    const stderrDone = readStderr(node.name, child);
    const rep: Replica = r ?? {
      id,
      node: node.name,
      child,
      restarts: 0,
      stopping: false,
      startedAt: 0,
      earlyExits: 0,
      backoffStep: 0,
    };
    rep.child = child;
    rep.startedAt = Date.now();
    child.once("exit", (code, signal) => {
      children.delete(child);
      // The last stderr lines may arrive after the exit: wait for them (bounded: a grandchild may hold the pipe).
      void Promise.race([stderrDone, sleep(200)]).then(() => onExit(node, rep, code, signal));
    });
    return rep;
  };

  const terminate = async (c: ChildProcess): Promise<void> => {
    if (!alive(c)) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGTERM");
    await exited;
  };

  const killAll = async (): Promise<void> => {
    const left = [...children].filter(alive);
    const exits = left.map((c) => new Promise((r) => c.once("exit", r)));
    for (const c of left) c.kill("SIGKILL");
    await Promise.race([Promise.all(exits), sleep(2000)]);
  };

  const waitReady = async (
    node: string,
    expected: number,
    timeoutMs = opts.readyTimeoutMs ?? 120_000,
  ): Promise<void> => {
    const t0 = Date.now();
    for (;;) {
      opts.signal?.throwIfAborted();
      if (stopping) throw new Error(`node ${node}: the supervisor is stopping`);
      const failed = failures.get(node);
      if (failed) throw failed;
      // While NATS is away (restarting), nothing answers: keep waiting. Only our own replicas count: on a
      // worker host, other hosts' replicas of the node answer too.
      const ours = new Set((byNode.get(node) ?? []).map((r) => r.id));
      const n = (
        await gather<{ metadata?: Record<string, string> }>(nc, Discovery.ping(node), 100).catch(() => [])
      ).filter((p) => ours.has(p.metadata?.replica ?? "")).length;
      if (n >= expected) return;
      const reps = byNode.get(node) ?? [];
      if (opts.restart === false && reps.length < expected)
        throw new NodeStartError(node, lastLine.get(node) ?? "a replica exited during start-up");
      if (Date.now() - t0 > timeoutMs)
        throw new Error(`node ${node}: ${n} of ${expected} replicas answered $SRV.PING after ${timeoutMs} ms`);
      await sleep(100);
    }
  };

  const stop = async (o: { graceMs?: number } = {}): Promise<void> => {
    stopping = true;
    const deadline = Date.now() + (o.graceMs ?? opts.stopGraceMs ?? DEFAULT_STOP_GRACE_MS);
    const graceful = (async () => {
      for (const name of [...order].reverse()) {
        if (Date.now() >= deadline) return;
        await Promise.all(
          (byNode.get(name) ?? []).map((rep) => {
            rep.stopping = true;
            return terminate(rep.child);
          }),
        );
      }
      // Replicas scale() was stopping are not in any list any more.
      await Promise.all([...children].map(terminate));
    })();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      graceful,
      new Promise((r) => {
        timer = setTimeout(r, Math.max(0, deadline - Date.now()));
      }),
    ]);
    clearTimeout(timer);
    if ([...children].some(alive)) {
      log(`replicas still running after the grace period: SIGKILL`);
      await killAll();
    }
  };

  const sup: Supervisor = {
    nodes: order,
    replicas: (n) => [...(byNode.get(n) ?? [])],
    async scale(name, count) {
      const node = graph.nodes[name];
      if (!node || !byNode.has(name)) throw new GraphError("NOT_FOUND", `node ${name} is not running in this graph`);
      if (!Number.isInteger(count) || count < node.replicas.min || count > node.replicas.max) {
        throw new GraphError(
          "BAD_REQUEST",
          `replicas of ${name} must be within [${node.replicas.min}, ${node.replicas.max}] (graph.config.ts), got ${count}`,
        );
      }
      failures.delete(name); // an explicit scale tries again
      const list = byNode.get(name)!;
      while (list.length < count) list.push(spawnReplica(node));
      const extra = list.splice(count);
      await Promise.all(
        extra.map((rep) => {
          rep.stopping = true;
          return terminate(rep.child);
        }),
      );
      await waitReady(name, count);
      return list.length;
    },
    async restart(name, timeoutMs = opts.readyTimeoutMs ?? 120_000) {
      const node = graph.nodes[name];
      const list = byNode.get(name);
      if (!node || !list) throw new GraphError("NOT_FOUND", `node ${name} is not running in this graph`);
      let replaced = 0;
      for (const old of [...list]) {
        if (stopping) break;
        if (!list.includes(old)) continue;
        // Not in the node's list until it answers: if it exits, onExit leaves it be and the old replica stays.
        const fresh = spawnReplica(node);
        let exitedHow: string | undefined;
        fresh.child.once("exit", (code, signal) => {
          exitedHow = signal ?? `code ${code}`;
        });
        const t0 = Date.now();
        for (;;) {
          if (exitedHow !== undefined)
            throw new Error(
              `node ${name}: the new replica exited (${exitedHow}) before it answered: ${lastLine.get(name) ?? "no output"}; the others keep running as they were`,
            );
          const pings = await gather<{ metadata?: Record<string, string> }>(nc, Discovery.ping(name), 100).catch(
            () => [],
          );
          if (pings.some((p) => p.metadata?.replica === fresh.id)) break;
          if (stopping || Date.now() - t0 > timeoutMs) {
            fresh.stopping = true;
            await terminate(fresh.child);
            throw new Error(
              `node ${name}: the new replica did not answer $SRV.PING within ${timeoutMs} ms; the others keep running as they were`,
            );
          }
          await sleep(100);
        }
        const at = list.indexOf(old);
        if (at >= 0) list.splice(at, 1, fresh);
        else list.push(fresh);
        old.stopping = true;
        await terminate(old.child);
        replaced++;
      }
      return replaced;
    },
    waitReady,
    lastStderrLine: (n) => lastLine.get(n),
    stop,
    kill() {
      stopping = true;
      for (const c of children) if (alive(c)) c.kill("SIGKILL");
    },
  };

  try {
    // Nodes whose dependencies are all up start together (a wave); HTTP nodes come in the last wave.
    const started = new Set<string>();
    const pending = [...order];
    while (pending.length) {
      opts.signal?.throwIfAborted();
      const wave = pending.filter((n) => graph.nodes[n]!.dependsOn.every((d) => started.has(d) || !order.includes(d)));
      const httpLast = wave.filter((n) => !graph.nodes[n]!.http);
      const now = httpLast.length ? httpLast : wave;
      if (now.length === 0) throw new Error(`cannot order nodes: ${pending.join(", ")}`);
      await Promise.all(
        now.map(async (name) => {
          const node = graph.nodes[name]!;
          const n = opts.replicas?.[name] ?? Math.max(node.replicas.min, 1);
          for (let i = 0; i < n; i++) byNode.get(name)!.push(spawnReplica(node));
          try {
            await waitReady(name, n);
            log(`node ${name}: ${n} replica(s) ready`);
          } catch (err) {
            if (!(err instanceof NodeStartError && opts.keepGoing)) throw err;
            log(`node ${name}: cannot start; starting the rest without it`);
          }
        }),
      );
      for (const n of now) {
        started.add(n);
        pending.splice(pending.indexOf(n), 1);
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return sup;
}

/** Where the running graph's HTTP node listens: the first `http_url` its replicas advertise in $SRV.INFO metadata. */
export async function ingressUrlOf(
  nc: NatsConnection,
  graph: ResolvedGraph,
  sup: Supervisor,
  timeoutMs = 3000,
): Promise<string | undefined> {
  for (const name of sup.nodes.filter((n) => graph.nodes[n]!.http)) {
    const info = await nc
      .request(Discovery.info(name), new Uint8Array(0), { timeout: timeoutMs })
      .catch(() => undefined);
    const url = info ? (info.json() as { metadata?: Record<string, string> }).metadata?.http_url : undefined;
    if (url) return url;
  }
  return undefined;
}
