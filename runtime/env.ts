/**
 * The environment variables of the runtime, read in one place: what the launcher (`servegraph up`, a manifest)
 * tells a replica (SG_*), how to reach NATS (NATS_URL, NATS_USER, NATS_PASSWORD, NATS_INBOX_PREFIX), and the log
 * level (SG_LOG_LEVEL). A node's parameters and secrets are read by runtime/node.ts under the names graph.config.ts
 * declares; OpenTelemetry's SDK reads its own OTEL_* variables (runtime/telemetry.ts). Everything else takes values.
 */
import { hostname } from "node:os";

/** What the launcher (`servegraph up`, a manifest) tells a replica besides its parameters. */
export interface LaunchEnv {
  readonly node: string;
  readonly replicaId: string | undefined;
  /** Under `servegraph up`: ignore Ctrl-C (the supervisor stops replicas in order) and exit with it. */
  readonly supervised: boolean;
  /** Nodes of the running graph (SG_ACTIVE_NODES): the ingress serves only routes to these; undefined: all. */
  readonly activeNodes: ReadonlySet<string> | undefined;
  readonly metricsPort: number | undefined;
  readonly metricsHost: string;
  /** HTTP nodes: PORT / HOST override graph.config.ts `http`. */
  readonly httpPort: number | undefined;
  readonly httpHost: string | undefined;
  /** Where generated artifacts (e.g. a generated model) are cached. */
  readonly cacheDir: string | undefined;
  /** The host this replica reports in discovery (SG_HOST: e.g. `servegraph up --host`), else the machine's hostname. */
  readonly host: string;
}

export function readLaunchEnv(env: NodeJS.ProcessEnv): LaunchEnv {
  const node = env.SG_NODE;
  if (!node) throw new Error("SG_NODE is not set: start nodes with `servegraph up`, or set SG_NODE=<node name>");
  const int = (k: string): number | undefined => {
    const v = env[k];
    if (v === undefined || v === "") return undefined;
    if (!/^[0-9]{1,5}$/.test(v)) throw new Error(`${k} must be a port number, got ${JSON.stringify(v)}`);
    return Number(v);
  };
  return {
    node,
    replicaId: env.SG_REPLICA_ID || undefined,
    supervised: env.SG_SUPERVISED === "1",
    activeNodes: env.SG_ACTIVE_NODES ? new Set(env.SG_ACTIVE_NODES.split(",")) : undefined,
    metricsPort: int("SG_METRICS_PORT"),
    metricsHost: env.SG_METRICS_HOST ?? "127.0.0.1",
    httpPort: int("PORT"),
    httpHost: env.HOST || undefined,
    cacheDir: env.SG_MODEL_CACHE_DIR || undefined,
    host: env.SG_HOST || hostname(),
  };
}

/** A NATS user: nats.js ignores credentials in the URL, so a deployment passes them as NATS_USER / NATS_PASSWORD. */
export interface NatsCredentials {
  user: string;
  password: string;
  /** The user's own reply inbox prefix (per-node permissions, `servegraph manifests`); undefined: `_INBOX`. */
  inboxPrefix?: string | undefined;
}

export interface NatsEnv {
  /** Comma-separated server URLs (NATS_URL). */
  servers: string | undefined;
  credentials: NatsCredentials | undefined;
}

export function readNatsEnv(env: NodeJS.ProcessEnv = process.env): NatsEnv {
  return {
    servers: env.NATS_URL || undefined,
    credentials: env.NATS_USER
      ? { user: env.NATS_USER, password: env.NATS_PASSWORD ?? "", inboxPrefix: env.NATS_INBOX_PREFIX || undefined }
      : undefined,
  };
}

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** SG_LOG_LEVEL, "info" when unset or not a level. */
export function readLogLevel(env: NodeJS.ProcessEnv = process.env): LogLevel {
  const v = env.SG_LOG_LEVEL;
  return (LOG_LEVELS as readonly string[]).includes(v ?? "") ? (v as LogLevel) : "info";
}
