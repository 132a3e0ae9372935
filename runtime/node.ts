/**
 * The process life of one replica: load the graph, connect to NATS once, serve the node's endpoints with
 * discovery, metrics and tracing, and shut down in the order that loses no accepted request (trap T8):
 * stop intake (drain subscriptions) -> finish in-flight handlers -> node hooks -> drain the connection.
 */
import { hostname } from "node:os";
import type { NatsConnection } from "@nats-io/transport-node";
import { loadGraph, readSecret, subjectFor, type ResolvedGraph, type ResolvedNode } from "./config.ts";
import { createClient, type Client } from "./client.ts";
import { createLogger, type Logger } from "./log.ts";
import { enableDefaultMetrics, metrics, startMetricsServer } from "./metrics.ts";
import { connectNats } from "./nats.ts";
import { createService, type Service } from "./service.ts";
import { startTelemetry, stopTelemetry } from "./telemetry.ts";

export interface NodeContext {
  readonly graph: ResolvedGraph;
  readonly node: ResolvedNode;
  readonly replicaId: string;
  readonly nc: NatsConnection;
  readonly client: Client;
  readonly service: Service;
  readonly log: Logger;
  /** Discovery metadata of this replica ($SRV.INFO); setup may add entries (e.g. the ingress URL). */
  readonly metadata: Record<string, string>;
  /** A parameter: the env var the launcher injected (pattern B), else the value in graph.config.ts. */
  param(name: string): string;
  paramNumber(name: string): number;
  paramBool(name: string): boolean;
  /** A secret's value (never log it), or undefined when not provided. */
  secret(name: string): string | undefined;
  /** Subject of another node's endpoint, read from the graph in-module (pattern A). */
  subjectOf(node: string, endpoint: string): string;
  /** Runs before the service stops taking requests (e.g. the ingress closes its HTTP server first). */
  beforeStop(fn: () => Promise<void> | void): void;
  /** Runs after in-flight requests finished, before the NATS connection drains (e.g. free the model). */
  afterStop(fn: () => Promise<void> | void): void;
}

export interface RunNodeOptions {
  /** Serve /metrics on the node's own port (the ingress serves it on its HTTP port instead). */
  metricsServer?: boolean;
  metadata?: Record<string, string>;
  statsData?: () => Record<string, unknown>;
}

export async function runNode(setup: (ctx: NodeContext) => Promise<void>, options: RunNodeOptions = {}): Promise<NodeContext> {
  const name = process.env.SG_NODE;
  if (!name) throw new Error("SG_NODE is not set: start nodes with `servegraph up`, or set SG_NODE=<node name>");
  const graph = await loadGraph();
  const node = graph.nodes[name];
  if (!node) throw new Error(`node ${name} is not in ${graph.file}`);
  const replicaId = process.env.SG_REPLICA_ID || `${name}-${process.pid}`;
  const log = createLogger(process.env.SG_REPLICA_ID ? `${name}#${process.env.SG_REPLICA_ID.split("-").pop()}` : name);
  startTelemetry(name, { replica: replicaId, graph: graph.name, node: name, host: hostname() });
  enableDefaultMetrics({ node: name, replica: replicaId });
  metrics.replicas.labels(name).set(1);

  const nc = await connectNats({ name: replicaId, log });
  const metadata: Record<string, string> = { graph: graph.name, replica: replicaId, pid: String(process.pid), host: hostname(), ...options.metadata };
  if (options.metricsServer !== false) {
    // In a cluster the port is fixed and bound on all interfaces for scraping (`servegraph manifests` sets both).
    const { url } = await startMetricsServer(Number(process.env.SG_METRICS_PORT ?? node.metricsPort), process.env.SG_METRICS_HOST ?? "127.0.0.1");
    metadata.metrics_url = url;
  }
  const service = createService(nc, {
    name, description: node.description, maxInFlight: node.maxInFlight, defaultTimeoutMs: node.timeoutMs, metadata, log,
    ...(options.statsData ? { statsData: options.statsData } : {}),
  });
  const client = createClient(nc, { caller: name, defaultTimeoutMs: node.timeoutMs, log });
  const before: (() => Promise<void> | void)[] = [];
  const after: (() => Promise<void> | void)[] = [];
  const param = (k: string): string => {
    const v = process.env[k] ?? node.parameters[k];
    if (v === undefined) throw new Error(`parameter ${k} is not declared for node ${name} in graph.config.ts`);
    return v;
  };
  const ctx: NodeContext = {
    graph, node, replicaId, nc, client, service, log, param, metadata,
    paramNumber: (k) => {
      const n = Number(param(k));
      if (!Number.isFinite(n)) throw new Error(`parameter ${k} of node ${name} is not a number`);
      return n;
    },
    paramBool: (k) => /^(1|true|yes|on)$/i.test(param(k)),
    secret: (k) => {
      const s = node.secrets[k];
      if (!s) throw new Error(`secret ${k} is not declared for node ${name}`);
      return process.env[k] || readSecret(s);
    },
    subjectOf: (n, e) => subjectFor(graph, n, e),
    beforeStop: (fn) => void before.push(fn),
    afterStop: (fn) => void after.push(fn),
  };

  let shuttingDown = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info("stopping", { signal, in_flight: service.inFlight() });
    const hard = setTimeout(() => {
      log.error("shutdown took too long, exiting");
      process.exit(1);
    }, 45_000);
    hard.unref();
    const step = async (what: string, fn: () => Promise<void> | void): Promise<void> => {
      try { await fn(); } catch (err) { log.warn(`${what} failed`, { error: err }); }
    };
    for (const fn of before) await step("beforeStop hook", fn);
    await step("service stop", () => service.stop());
    for (const fn of after) await step("afterStop hook", fn);
    await step("nats drain", () => nc.drain());
    await step("telemetry shutdown", stopTelemetry);
    log.info("stopped");
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  if (process.env.SG_SUPERVISED === "1") {
    // Ctrl-C reaches the whole process group; the supervisor stops replicas in order with SIGTERM.
    process.on("SIGINT", () => {});
  } else {
    process.once("SIGINT", () => void shutdown("SIGINT"));
  }
  process.on("unhandledRejection", (err) => log.error("unhandled rejection", { error: err instanceof Error ? err.stack : String(err) }));

  try {
    await setup(ctx);
  } catch (err) {
    log.error("start-up failed", { error: err instanceof Error ? err.stack ?? err.message : String(err) });
    await nc.close().catch(() => {});
    process.exit(1);
  }
  service.announce();
  await nc.flush();
  log.info("ready", { replica: replicaId });
  if (process.env.SG_SUPERVISED === "1") {
    // A replica must not outlive its supervisor (e.g. `servegraph up` killed with SIGKILL).
    const parent = process.ppid;
    setInterval(() => { if (process.ppid !== parent) void shutdown("supervisor exited"); }, 1000).unref();
  }
  return ctx;
}
