/**
 * nats.conf of the graph's single NATS server: ports, limits, and one password user per node plus the ops user,
 * each with the permissions of nats-permissions.ts. Passwords are never written here: each is an env reference
 * (`$<USER>_NATS_PASSWORD`) that the server's Deployment fills from the credentials Secret (in a cluster) or that
 * `servegraph up` passes to its local nats-server (ops/nats-server.ts, the same authorization block).
 */
import { randomBytes } from "node:crypto";
import { type ResolvedGraph } from "../../runtime/index.ts";
import { natsPermissions, opsPermissions, OPS_USER, type NatsPermissions } from "./nats-permissions.ts";

export const NATS_CLIENT_PORT = 4222;
export const NATS_MONITOR_PORT = 8222;
/** An 8 MB image must fit one request: the same limits as the local server of `servegraph up`. */
const MAX_PAYLOAD = "16MB";
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

function confUser(name: string, perms: NatsPermissions, why: string): string[] {
  return [
    `    # ${why}`,
    "    {",
    `      user: ${JSON.stringify(name)}`,
    `      password: $${passwordEnvName(name)}`,
    "      permissions: {",
    // An empty allow list may read as "no restriction": a node without edges is denied every publish instead.
    `        publish: ${perms.publish.length ? `{ allow: ${confList(perms.publish)} }` : `{ deny: [">"] }`}`,
    `        subscribe: { allow: ${confList(perms.subscribe)} }`,
    "        allow_responses: true",
    "      }",
    "    }",
  ];
}

/**
 * The `authorization` block: one password user per node plus the ops user, each with its permissions from
 * nats-permissions.ts, passwords as `$<USER>_NATS_PASSWORD` env references. `opsControl`: the ops user may also
 * serve and call `sg.ops.control` (the local broker of `servegraph up`, whose supervisor is the ops user).
 */
export function natsAuthorization(graph: ResolvedGraph, nodes: readonly string[], opts: { opsControl?: boolean } = {}): string[] {
  return [
    "authorization {",
    "  users: [",
    ...nodes.flatMap((n) => confUser(n, natsPermissions(graph, n), `node ${n}: publishes to its edges, subscribes to its own subjects`)),
    ...confUser(
      OPS_USER, opsPermissions(graph, { control: opts.opsControl ?? false }),
      opts.opsControl ? "servegraph up and the ops commands: control, discovery and requests to any node" : "servegraph ops (status, request): discovery and requests to any node",
    ),
    "  ]",
    "}",
  ];
}

/** nats.conf of the single server: limits, monitoring, and one user per node plus the ops user. */
export function natsConfig(graph: ResolvedGraph, graphNames: readonly string[], nodes: readonly string[]): string {
  return [
    `# nats.conf of graph ${graph.name} (${graphNames.join(", ")}), written by \`servegraph manifests\` from graph.config.ts.`,
    `# Passwords are env references, filled from the Secret ${credentialsSecretName(graph)}.`,
    `port: ${NATS_CLIENT_PORT}`,
    `http_port: ${NATS_MONITOR_PORT}`,
    "# An 8 MB image must fit one request (the same limits as the local server of `servegraph up`).",
    `max_payload: ${MAX_PAYLOAD}`,
    `max_pending: ${MAX_PENDING}`,
    ...natsAuthorization(graph, nodes),
    "",
  ].join("\n");
}
