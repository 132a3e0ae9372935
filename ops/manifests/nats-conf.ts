/**
 * nats.conf of the graph's NATS cluster: ports, limits, the `cluster` block that routes the servers of the
 * StatefulSet to each other (nats-cluster.ts), and one password user per node plus the ops user, each with the
 * permissions of nats-permissions.ts. Passwords are never written here: each is an env reference
 * (`$<USER>_NATS_PASSWORD`) that the StatefulSet fills from the credentials Secret (in a cluster) or that
 * `servegraph up` passes to its local nats-server (ops/nats-server.ts, the same authorization block).
 *
 * Only what nats-server 2.9 accepts (Debian's, which the tests run `nats-server -t` with) is written.
 */
import { randomBytes } from "node:crypto";
import { MAX_PAYLOAD_BYTES } from "../../subjects/limits.ts";
import { type ResolvedGraph } from "../../runtime/index.ts";
import { natsPermissions, opsPermissions, OPS_USER, type NatsPermissions } from "./nats-permissions.ts";

export const NATS_CLIENT_PORT = 4222;
export const NATS_MONITOR_PORT = 8222;
export const NATS_CLUSTER_PORT = 6222;
/** Where the server writes its pid: the preStop hook sends lame-duck mode to it (`nats-server -sl=ldm=<pid file>`). */
export const NATS_PID_FILE = "/var/run/nats/nats.pid";
/** Lame-duck mode: clients are moved to the other servers over this long before a server stops. */
export const NATS_LAME_DUCK_S = 30;
/** An 8 MB image must fit one request: the same limits as the local server of `servegraph up`. */
const MAX_PAYLOAD = `${MAX_PAYLOAD_BYTES / (1024 * 1024)}MB`;
const MAX_PENDING = "64MB";

/**
 * nats-server parses the value of a `$VAR` reference as a config token, so a password that looks like a number,
 * a size (`12MB`) or a boolean would change type: a letter first and hex digits after keep it a plain string.
 */
export function randomPassword(): string {
  return `sg${randomBytes(24).toString("hex")}`;
}

/** Env var of the NATS server that holds a user's password: `greeter-proxy` -> `GREETER_PROXY_NATS_PASSWORD`. */
export function passwordEnvName(user: string): string {
  return `${user.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_NATS_PASSWORD`;
}

/** The Secret that holds every NATS user's password, keyed by user name. */
export function credentialsSecretName(graph: ResolvedGraph): string {
  return `${graph.name}-nats-credentials`;
}

const confList = (xs: readonly string[]): string => `[${xs.map((x) => JSON.stringify(x)).join(", ")}]`;

/**
 * `allow_responses` of a node whose requests last at most `timeoutMs`: one reply per request received, within that
 * time. Exactly one, so the server forgets an answered reply subject at its next prune (nats-permissions.ts says
 * why more would cost); the heartbeats its callers ask for have a publish permission of their own.
 */
function allowResponses(timeoutMs: number): string {
  return `{ max: 1, expires: "${Math.ceil(timeoutMs / 1000) + 5}s" }`;
}

/** `timeoutMs`: how long the user's requests last (a node's timeout); undefined: one reply per request, no expiry. */
function confUser(name: string, perms: NatsPermissions, why: string, timeoutMs?: number): string[] {
  return [
    `    # ${why}`,
    "    {",
    `      user: ${JSON.stringify(name)}`,
    `      password: $${passwordEnvName(name)}`,
    "      permissions: {",
    // An empty allow list may read as "no restriction": a node without edges is denied every publish instead.
    `        publish: ${perms.publish.length ? `{ allow: ${confList(perms.publish)} }` : `{ deny: [">"] }`}`,
    `        subscribe: { allow: ${confList(perms.subscribe)} }`,
    `        allow_responses: ${timeoutMs === undefined ? "true" : allowResponses(timeoutMs)}`,
    "      }",
    "    }",
  ];
}

/**
 * The `authorization` block: one password user per node plus the ops user, each with its permissions from
 * nats-permissions.ts, passwords as `$<USER>_NATS_PASSWORD` env references. `opsControl`: the ops user may also
 * serve and call `sg.ops.control` (the local broker of `servegraph up`, whose supervisor is the ops user).
 */
export function natsAuthorization(
  graph: ResolvedGraph,
  nodes: readonly string[],
  opts: { opsControl?: boolean } = {},
): string[] {
  return [
    "authorization {",
    "  users: [",
    ...nodes.flatMap((n) =>
      confUser(
        n,
        natsPermissions(graph, n, { control: opts.opsControl ?? false }),
        `node ${n}: publishes to its edges, subscribes to its own subjects`,
        graph.nodes[n]!.timeoutMs,
      ),
    ),
    ...confUser(
      OPS_USER,
      opsPermissions(graph, { control: opts.opsControl ?? false }),
      opts.opsControl
        ? "servegraph up and the ops commands: control, discovery and requests to any node"
        : "servegraph ops (status, request): discovery and requests to any node",
    ),
    "  ]",
    "}",
  ];
}

/** The cluster a nats.conf joins: every server lists the routes of all (its own is recognised and skipped). */
export interface NatsClusterConf {
  /** Cluster name, the same on every server. */
  readonly name: string;
  /** `nats-route://<host>:<port>` of every server (the StatefulSet pods by their headless-Service DNS names). */
  readonly routes: readonly string[];
}

/**
 * nats.conf of a cluster server: limits, monitoring, clustering, and one user per node plus the ops user. The
 * server's name is `$POD_NAME` (each StatefulSet pod sets it from its own name), so every server is told apart in
 * routes and monitoring.
 */
export function natsConfig(
  graph: ResolvedGraph,
  graphNames: readonly string[],
  nodes: readonly string[],
  cluster: NatsClusterConf,
): string {
  return [
    `# nats.conf of graph ${graph.name} (${graphNames.join(", ")}), written by \`servegraph manifests\` from graph.config.ts.`,
    `# Passwords are env references, filled from the Secret ${credentialsSecretName(graph)}; POD_NAME is the pod's name.`,
    "server_name: $POD_NAME",
    `port: ${NATS_CLIENT_PORT}`,
    `http_port: ${NATS_MONITOR_PORT}`,
    `pid_file: ${JSON.stringify(NATS_PID_FILE)}`,
    `lame_duck_duration: "${NATS_LAME_DUCK_S}s"`,
    "# An 8 MB image must fit one request (the same limits as the local server of `servegraph up`).",
    `max_payload: ${MAX_PAYLOAD}`,
    `max_pending: ${MAX_PENDING}`,
    "# The servers of the StatefulSet, routed to each other through the headless Service's per-pod DNS names.",
    "# The route port is not exposed outside the NATS pods (the NetworkPolicy beside this ConfigMap).",
    "cluster {",
    `  name: ${JSON.stringify(cluster.name)}`,
    `  port: ${NATS_CLUSTER_PORT}`,
    `  routes: ${confList(cluster.routes)}`,
    "  connect_retries: 120",
    "}",
    ...natsAuthorization(graph, nodes),
    "",
  ].join("\n");
}
