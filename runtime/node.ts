/**
 * The process life of one replica: load the graph, parse the node's parameters (its service's params.ts), connect
 * to NATS once, serve the node's endpoints with discovery, metrics and tracing, and shut down in the order that
 * loses no accepted request: stop intake (drain subscriptions, so the queue group routes to other replicas) ->
 * finish in-flight handlers -> node hooks -> drain the connection. (`nc.drain()` alone does not wait for async
 * handlers: their replies would be dropped.)
 *
 * The environment is read in runtime/env.ts (the launcher's SG_* variables, NATS settings, the log level) and here
 * (the node's parameters and secrets, by their declared names).
 * A replica that can no longer serve (e.g. its model worker died) calls `ctx.fail()`: it leaves its queue group
 * and exits non-zero, so the supervisor (or Kubernetes) replaces it.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { BATCHING_DEFAULTS, loadGraph, type ResolvedGraph, type ResolvedNode } from "./config.ts";
import { createBatcher } from "./batcher.ts";
import { batchMetrics, createBatchTally } from "./batch-metrics.ts";
import { readSecret, subjectFor } from "./graph-queries.ts";
import { createClient, type Client } from "./client.ts";
import { createLogger, type Logger } from "./log.ts";
import { enableDefaultMetrics, metrics, startMetricsServer } from "./metrics.ts";
import { connectNats } from "./nats.ts";
import { readLaunchEnv, type LaunchEnv } from "./env.ts";
import { parseParams, type ParamsSchema } from "./params.ts";
import { createService, type EndpointHandler, type IncomingRequest, type Service } from "./service.ts";
import type { EndpointDef, InputOf, ValueOf } from "../subjects/endpoints.ts";
import type { BatchStatsData, StatsData } from "../subjects/stats.ts";
import type { z } from "zod";
import { startTelemetry, stopTelemetry } from "./telemetry.ts";

/**
 * Exit status of a replica that cannot start because of how it is configured (sysexits' EX_CONFIG): a forced
 * execution provider that does not load, a missing required secret, invalid parameters. Restarting it cannot
 * help, so the supervisor reports the node as unable to start at once instead of retrying.
 */
export const EXIT_CONFIG = 78;

/** Thrown by a node's setup when its configuration makes it unable to start (exit {@link EXIT_CONFIG}). */
export class NodeConfigError extends Error {
  override readonly name = "NodeConfigError";
}

export interface NodeContext<P = unknown> {
  readonly graph: ResolvedGraph;
  readonly node: ResolvedNode;
  readonly replicaId: string;
  readonly nc: NatsConnection;
  readonly client: Client;
  readonly service: Service;
  readonly log: Logger;
  /** Discovery metadata of this replica ($SRV.INFO); setup may add entries (e.g. the ingress URL). */
  readonly metadata: Record<string, string>;
  /** The node's parameters, parsed by its service's schema (graph.config.ts values, env overrides). */
  readonly params: P;
  readonly launch: LaunchEnv;
  /** A secret's value (never log it), or undefined when not provided. */
  secret(name: string): string | undefined;
  /** Subject of another node's endpoint, read from the graph in-module (pattern A). */
  subjectOf(node: string, endpoint: string): string;
  /** Serves a defined endpoint at this node's subject for it (`<prefix>.<node>.<endpoint>`). */
  serve<D extends EndpointDef>(def: D, handler: EndpointHandler<D>): void;
  /**
   * Serves a batched endpoint (its definition says `batched: true`): requests wait in the node's batch queue
   * (graph.config.ts `batching`, BATCHING_DEFAULTS for knobs it leaves out) and `handler` gets a batch of inputs,
   * returning one reply per input, in order. A full queue answers QUEUE_FULL; a request whose deadline passes while
   * it waits is dropped before the batch runs (DEADLINE_EXCEEDED). The batch metrics (sg_batch_*), `servegraph
   * status`'s batch fill and the queueDepth/batchFill autoscale metrics come with it. One per replica.
   */
  serveBatch<D extends EndpointDef>(def: D, handler: BatchHandler<D>): void;
  /** The replica can no longer serve: leave the queue group, finish what is in flight, exit non-zero. */
  fail(reason: string): void;
  /** Runs before the service stops taking requests (e.g. the ingress closes its HTTP server first). */
  beforeStop(fn: () => Promise<void> | void): void;
  /** Runs after in-flight requests finished, before the NATS connection drains (e.g. free the model). */
  afterStop(fn: () => Promise<void> | void): void;
}

/** The handler of a batched endpoint: a batch's inputs (and their requests) in, one reply per input out, in order. */
export type BatchHandler<D extends EndpointDef> = (
  inputs: ValueOf<D["request"]>[],
  requests: IncomingRequest[],
) => Promise<InputOf<D["reply"]>[]>;

export interface RunNodeOptions<S extends ParamsSchema = ParamsSchema> {
  /** The service's parameter schema (its src/params.ts default export). */
  params: S;
  /** Serve /metrics on the node's own port (the ingress serves it on its HTTP port instead). */
  metricsServer?: boolean;
  metadata?: Record<string, string>;
  /** This node's own figures in its $SRV.STATS data (subjects/stats.ts defines every field). */
  statsData?: () => StatsData;
}

export async function runNode<S extends ParamsSchema>(
  setup: (ctx: NodeContext<z.output<S>>) => Promise<void>,
  options: RunNodeOptions<S>,
): Promise<NodeContext<z.output<S>>> {
  const launch = readLaunchEnv(process.env);
  const name = launch.node;
  const graph = await loadGraph();
  const node = graph.nodes[name];
  if (!node) throw new Error(`node ${name} is not in ${graph.file}`);
  const replicaId = launch.replicaId ?? `${name}-${process.pid}`;
  const log = createLogger(launch.replicaId ? `${name}#${launch.replicaId.split("-").pop()}` : name);
  const parsed = parseParams(options.params, node, process.env);
  if (!parsed.ok) {
    log.error("invalid parameters", { issues: parsed.issues.map((i) => `${i.path}: ${i.message}`).join("; ") });
    process.exit(EXIT_CONFIG);
  }
  startTelemetry(name, { replica: replicaId, graph: graph.name, node: name, host: launch.host });
  enableDefaultMetrics({ node: name, replica: replicaId });
  metrics.replicas.labels(name).set(1);

  const nc = await connectNats({ name: replicaId, log });
  const metadata: Record<string, string> = {
    graph: graph.name,
    replica: replicaId,
    pid: String(process.pid),
    host: launch.host,
    ...options.metadata,
  };
  if (options.metricsServer !== false) {
    // In a cluster the port is fixed and bound on all interfaces for scraping (`servegraph manifests` sets both).
    const { url } = await startMetricsServer(launch.metricsPort ?? node.metricsPort, launch.metricsHost);
    metadata.metrics_url = url;
  }
  // A batched endpoint's figures (serveBatch) join the node's own in $SRV.STATS.
  let batchStats: () => Partial<BatchStatsData> = () => ({});
  const service = createService(nc, {
    name,
    description: node.description,
    maxInFlight: node.maxInFlight,
    defaultTimeoutMs: node.timeoutMs,
    metadata,
    log,
    statsData: () => ({ ...options.statsData?.(), ...batchStats() }),
  });
  const client = createClient(nc, { caller: name, defaultTimeoutMs: node.timeoutMs, log });
  let batchServed: string | undefined;
  const before: (() => Promise<void> | void)[] = [];
  const after: (() => Promise<void> | void)[] = [];
  let shutdown: (signal: string, code?: number) => Promise<void> = async () => {};
  const ctx: NodeContext<z.output<S>> = {
    graph,
    node,
    replicaId,
    nc,
    client,
    service,
    log,
    metadata,
    launch,
    params: parsed.params,
    serve: (def, handler) => service.serve(def, subjectFor(graph, name, def.name), handler),
    fail: (reason) => {
      log.error("replica cannot serve any more; leaving its queue group and exiting", { reason });
      void shutdown(`failed: ${reason}`, 1);
    },
    secret: (k) => {
      const s = node.secrets[k];
      if (!s) throw new Error(`secret ${k} is not declared for node ${name}`);
      return process.env[k] || readSecret(s);
    },
    subjectOf: (n, e) => subjectFor(graph, n, e),
    serveBatch: (def, handler) => {
      if (!def.batched)
        throw new NodeConfigError(
          `${def.service}.${def.name} is not a batched endpoint: mark its definition \`batched: true\` (subjects/), or serve it with ctx.serve`,
        );
      if (batchServed)
        throw new NodeConfigError(`a replica serves one batched endpoint; ${batchServed} is served already`);
      batchServed = def.name;
      const knobs = node.batching ?? BATCHING_DEFAULTS;
      const tally = createBatchTally(name, knobs.maxBatchSize);
      const batcher = createBatcher<{ input: unknown; req: IncomingRequest }, unknown>({
        ...knobs,
        run: (items) =>
          handler(
            items.map((i) => i.input) as never,
            items.map((i) => i.req),
          ) as Promise<unknown[]>,
        onBatch: (info) => tally.record(info),
      });
      batchMetrics().report({
        node: name,
        queueDepth: () => batcher.queueDepth(),
        maxQueueSize: knobs.maxQueueSize,
        fill: tally.fill,
      });
      batchStats = (): BatchStatsData => tally.stats(batcher.queueDepth(), knobs);
      // After the service has stopped taking requests and the ones in flight were answered (they need the batcher).
      after.unshift(() => batcher.stop());
      service.serve(
        def,
        subjectFor(graph, name, def.name),
        (input, req) => batcher.enqueue({ input, req }, { deadlineEpochMs: req.deadlineEpochMs }) as never,
      );
    },
    beforeStop: (fn) => void before.push(fn),
    afterStop: (fn) => void after.push(fn),
  };

  let shuttingDown = false;
  shutdown = async (signal: string, code = 0): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info("stopping", { signal, in_flight: service.inFlight() });
    const hard = setTimeout(() => {
      log.error("shutdown took too long, exiting");
      process.exit(1);
    }, 45_000);
    hard.unref();
    const step = async (what: string, fn: () => Promise<void> | void): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        log.warn(`${what} failed`, { error: err });
      }
    };
    for (const fn of before) await step("beforeStop hook", fn);
    await step("service stop", () => service.stop());
    for (const fn of after) await step("afterStop hook", fn);
    await step("nats drain", () => nc.drain());
    await step("telemetry shutdown", stopTelemetry);
    log.info("stopped");
    process.exit(code);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  if (launch.supervised) {
    // Ctrl-C reaches the whole process group; the supervisor stops replicas in order with SIGTERM.
    process.on("SIGINT", () => {});
  } else {
    process.once("SIGINT", () => void shutdown("SIGINT"));
  }
  process.on("unhandledRejection", (err) =>
    log.error("unhandled rejection", { error: err instanceof Error ? err.stack : String(err) }),
  );

  try {
    await setup(ctx);
  } catch (err) {
    const config = err instanceof NodeConfigError;
    log.error(config ? err.message : "start-up failed", {
      error: config ? undefined : err instanceof Error ? (err.stack ?? err.message) : String(err),
    });
    await nc.close().catch(() => {});
    process.exit(config ? EXIT_CONFIG : 1);
  }
  service.announce();
  await nc.flush();
  log.info("ready", { replica: replicaId });
  if (launch.supervised) {
    // A replica must not outlive its supervisor (e.g. `servegraph up` killed with SIGKILL).
    const parent = process.ppid;
    setInterval(() => {
      if (process.ppid !== parent) void shutdown("supervisor exited");
    }, 1000).unref();
  }
  return ctx;
}
