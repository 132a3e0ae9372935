/**
 * The NATS permission policy of a graph in a cluster: who may publish and subscribe to what. This is security
 * policy, and this file is all of it: nats-conf.ts only writes these lists into nats.conf, and kubernetes.ts only
 * gives each node the credentials and inbox prefix named here.
 *
 * Users: one NATS user per node of the deployed closure, named as the node, plus the ops user {@link OPS_USER}.
 * Every user authenticates with a password (nats-conf.ts); there is no anonymous access.
 *
 * A node may PUBLISH to:
 *   - the subjects of its edges, and nothing wider: the calls graph.config.ts declares for it (a subject
 *     parameter `subjectOf(...)`, a `calls` entry, an HTTP node's routes), exactly, never a wildcard;
 *   - `$SRV.*.<target>` for each node that one of those subjects belongs to: ADR-32 discovery (PING, INFO, STATS)
 *     of the services it calls, e.g. the ingress counts their replicas for /readyz.
 *   - `$SRV.PING.<node>`, a node without `http` only: its own discovery PING, so that the readiness probe of a
 *     replica in a cluster (deploy/probe/srv-ping.mjs, with the node's credentials) can ask whether this replica
 *     answers. (An HTTP node's probe is its /readyz.)
 *   - `$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`, a node with `http` only: discovery of every node, which its
 *     /dashboard shows; and, on the local broker of `servegraph up` only, `sg.ops.autoscaler`: the autoscaler's
 *     figures, read-only (the control subject `sg.ops.control`, which scales, stays the ops user's).
 *   - `<inbox prefix of C>.*.hb.*` for each node C that calls it, and `_INBOX.*.hb.*` for the ops user's requests:
 *     the heartbeats its callers ask for (subjects/names.ts heartbeatSubjectOf), which cannot match a reply subject.
 *   Replies to the requests a node serves need no publish permission: `allow_responses` (nats-conf.ts) lets it send
 *   one response per request it received, to the reply subject the server delivered with it, within its timeout.
 *   One, not one plus heartbeats: a reply subject allowed several messages stays in the server's reply map until it
 *   expires even once answered, and nats-server rescans that map on every message delivered to the node once it
 *   holds 4,096 entries (a few seconds of traffic at the chain's rate), which halved the chain's throughput.
 *
 * A node may SUBSCRIBE to:
 *   - `<prefix>.<node>.>`: its own subjects only, so no node can listen on (or steal requests of) another node;
 *   - `$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`, `$SRV.*.<node>`, `$SRV.*.<node>.*`: discovery addressed to all
 *     services or to it, so that it answers discovery;
 *   - `_INBOX_<node>.>`: its own reply inbox. The node connects with that inbox prefix (NATS_INBOX_PREFIX, see
 *     {@link inboxPrefix}), so no node can read the replies meant for another.
 *
 * The ops user (`servegraph status`, `servegraph request` inside the cluster) may publish to `$SRV.>`, `_INBOX.>`
 * and every subject of the graph (`<prefix>.>`), and subscribe to `$SRV.>` and `_INBOX.>`: it sees every node's
 * discovery, may call any node, and keeps the default `_INBOX.` prefix for its own replies.
 *
 * On the local broker of `servegraph up` (same users, fresh random passwords per run), the ops user is also the
 * supervisor: it may in addition publish and subscribe to `sg.ops.control` ({@link OPS_CONTROL_SUBJECT}), the
 * subject `up` serves and `servegraph scale` calls. No node may subscribe to it, only an HTTP node publish to it (its
 * /dashboard, above), and a client without credentials cannot connect.
 */
import { GraphConfigError, type ResolvedGraph, type ResolvedNode } from "../../runtime/index.ts";
import { heartbeatPatternOf, OPS_AUTOSCALER_SUBJECT, OPS_CONTROL_SUBJECT } from "../../subjects/names.ts";

/** The NATS user of the ops command line (`servegraph status`, `request`) inside the cluster. */
export const OPS_USER = "servegraph";

export interface NatsPermissions {
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
}

/**
 * The subjects a node sends requests to: its declared calls (graph.config.ts: subject parameters, `calls`, an HTTP
 * node's routes; runtime/config.ts resolves them into `node.calls`), never inferred from parameter strings.
 */
export function edgeSubjects(_graph: ResolvedGraph, node: ResolvedNode): string[] {
  return node.calls.map((c) => c.subject);
}

/** The nodes with an edge to `nodeName`, in name order. */
export function callersOf(graph: ResolvedGraph, nodeName: string): string[] {
  return Object.values(graph.nodes)
    .filter((n) => n.calls.some((c) => c.node === nodeName))
    .map((n) => n.name)
    .sort();
}

/** The inbox prefix of the ops user's requests (the nats.js default: it may read `_INBOX.>`). */
const OPS_INBOX_PREFIX = "_INBOX";

/** The reply-inbox prefix of a node's NATS user (a subject token may hold letters, digits, - and _). */
export function inboxPrefix(nodeName: string): string {
  return `_INBOX_${nodeName}`;
}

/** A node's NATS permissions: see the policy at the top of this file. `control`: the local broker of `servegraph up`. */
export function natsPermissions(
  graph: ResolvedGraph,
  nodeName: string,
  opts: { control?: boolean } = {},
): NatsPermissions {
  const node = graph.nodes[nodeName];
  if (!node) throw new GraphConfigError([{ path: `nodes.${nodeName}`, message: `unknown node "${nodeName}"` }]);
  const edges = edgeSubjects(graph, node);
  const targets = [...new Set(node.calls.map((c) => c.node))];
  return {
    publish: [
      ...edges,
      ...targets.map((t) => `$SRV.*.${t}`),
      ...(node.http ? [] : [`$SRV.PING.${nodeName}`]),
      ...(node.http ? ["$SRV.PING", "$SRV.INFO", "$SRV.STATS", ...(opts.control ? [OPS_AUTOSCALER_SUBJECT] : [])] : []),
      ...[...callersOf(graph, nodeName).map(inboxPrefix), OPS_INBOX_PREFIX].map(heartbeatPatternOf),
    ],
    subscribe: [
      `${graph.subjectPrefix}.${nodeName}.>`,
      "$SRV.PING",
      "$SRV.INFO",
      "$SRV.STATS",
      `$SRV.*.${nodeName}`,
      `$SRV.*.${nodeName}.*`,
      `${inboxPrefix(nodeName)}.>`,
    ],
  };
}

/**
 * The ops user's permissions: discovery of every node, requests to any subject of the graph; `control`: also the
 * supervisor's control subject, both ways (the local broker of `servegraph up`), and, for each node with
 * `replicas: [0, N]`, what its activator needs while the node has no replica (ops/activator.ts): subscribe to the
 * node's subjects, and publish heartbeats and error replies to the reply inboxes of the nodes that call it.
 */
export function opsPermissions(graph: ResolvedGraph, opts: { control?: boolean } = {}): NatsPermissions {
  const control = opts.control ? [OPS_CONTROL_SUBJECT, `${OPS_CONTROL_SUBJECT}.*`, OPS_AUTOSCALER_SUBJECT] : [];
  const toZero = opts.control
    ? Object.values(graph.nodes)
        .filter((n) => n.replicas.min === 0)
        .map((n) => `${graph.subjectPrefix}.${n.name}.`)
    : [];
  const callers = Object.values(graph.nodes).filter((n) =>
    edgeSubjects(graph, n).some((s) => toZero.some((z) => s.startsWith(z))),
  );
  return {
    publish: [
      "$SRV.>",
      `${OPS_INBOX_PREFIX}.>`,
      `${graph.subjectPrefix}.>`,
      ...control,
      ...callers.map((n) => `${inboxPrefix(n.name)}.>`),
    ],
    subscribe: ["$SRV.>", `${OPS_INBOX_PREFIX}.>`, ...control, ...toZero.map((z) => `${z}>`)],
  };
}
