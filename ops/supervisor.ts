/**
 * Runs a graph on one machine: each node's replicas as child processes, started in dependency order
 * (ingress last), each node waited for until all its replicas answer $SRV.PING. Crashed replicas are
 * restarted with backoff; scale() adds or stops replicas within the node's [min, max]; stop() stops the
 * ingress first and the rest in reverse dependency order, each with SIGTERM (graceful drain).
 */
import { spawn, type ChildProcess } from "node:child_process";
import type { NatsConnection } from "@nats-io/transport-node";
import { countReplicas, nodesOfGraphs, readSecret, type ResolvedGraph, type ResolvedNode } from "../runtime/index.ts";
import { GraphError } from "../subjects/errors.ts";

export interface Replica {
  readonly id: string;
  readonly node: string;
  child: ChildProcess;
  restarts: number;
  stopping: boolean;
}

export interface SupervisorOptions {
  graph: ResolvedGraph;
  graphs: readonly string[];
  natsUrl: string;
  nc: NatsConnection;
  /** Extra env for every replica (tests: short timeouts, OTEL endpoint...). */
  env?: Record<string, string>;
  /** Per-node env overrides, e.g. { ingress: { PORT: "0" } }. */
  nodeEnv?: Record<string, Record<string, string>>;
  /** Per-node replica count overrides at start. */
  replicas?: Record<string, number>;
  readyTimeoutMs?: number;
  restart?: boolean;
  log?: (line: string) => void;
  stdio?: "inherit" | "ignore";
}

export interface Supervisor {
  readonly nodes: readonly string[];
  replicas(node: string): Replica[];
  scale(node: string, count: number): Promise<number>;
  /** Resolves when every replica of `node` answers $SRV.PING (count of answers >= expected). */
  waitReady(node: string, expected: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

function startOrder(graph: ResolvedGraph, graphs: readonly string[]): string[] {
  const all = nodesOfGraphs(graph, graphs);
  // HTTP nodes face users: start them when everything behind them is up, stop them first.
  return [...all.filter((n) => !graph.nodes[n]!.http), ...all.filter((n) => graph.nodes[n]!.http)];
}

export async function startSupervisor(opts: SupervisorOptions): Promise<Supervisor> {
  const { graph, nc } = opts;
  const order = startOrder(graph, opts.graphs);
  const log = opts.log ?? ((l: string) => process.stderr.write(l + "\n"));
  const byNode = new Map<string, Replica[]>(order.map((n) => [n, []]));
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
    env.SG_ACTIVE_NODES = order.join(",");
    env.NATS_URL = opts.natsUrl;
    env.SG_SUPERVISED = "1";
    return env;
  };

  const spawnReplica = (node: ResolvedNode, r?: Replica): Replica => {
    const id = r?.id ?? `${node.name}-${++seq}`;
    const child = spawn(process.execPath, ["--import", "tsx", node.entry], {
      cwd: graph.root,
      env: envFor(node, id),
      stdio: ["ignore", opts.stdio ?? "inherit", opts.stdio ?? "inherit"],
    });
    const rep: Replica = r ?? { id, node: node.name, child, restarts: 0, stopping: false };
    rep.child = child;
    child.once("exit", (code, signal) => {
      if (rep.stopping || stopping) return;
      const list = byNode.get(node.name)!;
      if (!list.includes(rep)) return;
      rep.restarts++;
      const backoffMs = Math.min(30_000, 500 * 2 ** Math.min(rep.restarts, 6));
      log(`replica ${id} exited (code ${code}, signal ${signal}); ${opts.restart === false ? "not restarting" : `restarting in ${backoffMs} ms`}`);
      if (opts.restart === false) {
        list.splice(list.indexOf(rep), 1);
        return;
      }
      setTimeout(() => { if (!stopping && !rep.stopping) spawnReplica(node, rep); }, backoffMs).unref();
    });
    return rep;
  };

  const stopReplica = async (rep: Replica): Promise<void> => {
    rep.stopping = true;
    const c = rep.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGTERM");
    const t = setTimeout(() => c.kill("SIGKILL"), 50_000);
    await exited;
    clearTimeout(t);
  };

  const waitReady = async (node: string, expected: number, timeoutMs = opts.readyTimeoutMs ?? 120_000): Promise<void> => {
    const t0 = Date.now();
    for (;;) {
      const n = await countReplicas(nc, node, 100);
      if (n >= expected) return;
      const reps = byNode.get(node) ?? [];
      if (opts.restart === false && reps.length < expected) throw new Error(`node ${node}: a replica exited during start-up`);
      if (Date.now() - t0 > timeoutMs) throw new Error(`node ${node}: ${n} of ${expected} replicas answered $SRV.PING after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  const sup: Supervisor = {
    nodes: order,
    replicas: (n) => [...(byNode.get(n) ?? [])],
    async scale(name, count) {
      const node = graph.nodes[name];
      if (!node || !byNode.has(name)) throw new GraphError("NOT_FOUND", `node ${name} is not running in this graph`);
      if (!Number.isInteger(count) || count < Math.max(node.replicas.min, 1) || count > node.replicas.max) {
        throw new GraphError("BAD_REQUEST", `replicas of ${name} must be within [${Math.max(node.replicas.min, 1)}, ${node.replicas.max}] (graph.config.ts), got ${count}`);
      }
      const list = byNode.get(name)!;
      while (list.length < count) list.push(spawnReplica(node));
      const extra = list.splice(count);
      await Promise.all(extra.map(stopReplica));
      await waitReady(name, count);
      return list.length;
    },
    waitReady,
    async stop() {
      stopping = true;
      for (const name of [...order].reverse()) {
        await Promise.all((byNode.get(name) ?? []).map(stopReplica));
      }
    },
  };

  try {
    // Nodes whose dependencies are all up start together (a wave); HTTP nodes come in the last wave.
    const started = new Set<string>();
    const pending = [...order];
    while (pending.length) {
      const wave = pending.filter((n) => graph.nodes[n]!.dependsOn.every((d) => started.has(d) || !order.includes(d)));
      const httpLast = wave.filter((n) => !graph.nodes[n]!.http);
      const now = httpLast.length ? httpLast : wave;
      if (now.length === 0) throw new Error(`cannot order nodes: ${pending.join(", ")}`);
      await Promise.all(now.map(async (name) => {
        const node = graph.nodes[name]!;
        const n = opts.replicas?.[name] ?? Math.max(node.replicas.min, 1);
        for (let i = 0; i < n; i++) byNode.get(name)!.push(spawnReplica(node));
        await waitReady(name, n);
        log(`node ${name}: ${n} replica(s) ready`);
      }));
      for (const n of now) {
        started.add(n);
        pending.splice(pending.indexOf(n), 1);
      }
    }
  } catch (err) {
    await sup.stop();
    throw err;
  }
  return sup;
}
