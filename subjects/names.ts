/**
 * Subject naming. Every endpoint of a node lives at `sg.v1.<node>.<endpoint>`; the node name is also the
 * NATS micro service name and the queue group, so a replica is one member of that queue group.
 */
export const SUBJECT_PREFIX = "sg.v1";

const TOKEN = /^[A-Za-z0-9_-]+$/;

export function isToken(s: string): boolean {
  return TOKEN.test(s);
}

export function endpointSubject(node: string, endpoint: string, prefix: string = SUBJECT_PREFIX): string {
  if (!isToken(node)) throw new TypeError(`invalid node name for a subject token: ${JSON.stringify(node)}`);
  if (!isToken(endpoint)) throw new TypeError(`invalid endpoint name for a subject token: ${JSON.stringify(endpoint)}`);
  return `${prefix}.${node}.${endpoint}`;
}

/** ADR-32 discovery subjects (`nats micro ls/info/stats` use them). */
export const Discovery = {
  ping: (name?: string, id?: string) => ["$SRV.PING", name, id].filter(Boolean).join("."),
  info: (name?: string, id?: string) => ["$SRV.INFO", name, id].filter(Boolean).join("."),
  stats: (name?: string, id?: string) => ["$SRV.STATS", name, id].filter(Boolean).join("."),
} as const;

/**
 * Control subject of a running `servegraph up` supervisor (scale requests). A full `up` answers it; every `up`,
 * worker hosts (`--only`) included, also answers {@link opsControlSubjectOf} its host.
 */
export const OPS_CONTROL_SUBJECT = "sg.ops.control";
/**
 * Read-only: the autoscaler of the full `servegraph up` answers its state on it (the `{op: "autoscaler"}` answer of
 * the control subject) whatever the request holds. The ingress's /dashboard may ask it; it may not ask for a scale.
 */
export const OPS_AUTOSCALER_SUBJECT = "sg.ops.autoscaler";
/** Control subject of the `servegraph up` on one host (`servegraph scale --host`). */
export const opsControlSubjectOf = (host: string): string =>
  `${OPS_CONTROL_SUBJECT}.${host.replace(/[^A-Za-z0-9_-]/g, "_")}`;

/**
 * Heartbeats of a request (liveness, runtime/requester.ts) travel apart from its reply: a requester whose replies
 * arrive on `<inbox>.<token>` asks for them on `<inbox>.hb.<token>` (the `Graph-Heartbeat-To` header). Apart,
 * because a broker that let a callee send several messages to one reply subject (`allow_responses` with `max` > 1)
 * keeps each answered reply subject until it expires, and nats-server rescans that whole map on every delivered
 * message once it holds more than 4,096: at a few thousand requests per second that halved the chain's throughput.
 */
export const heartbeatSubjectOf = (inbox: string, token: string): string => `${inbox}.hb.${token}`;
/**
 * What a callee may publish heartbeats to, for a caller whose inboxes are `<inboxPrefix>.<id>`: the heartbeat
 * subjects of its requests and nothing else (a reply subject has one token fewer, so it never matches).
 */
export const heartbeatPatternOf = (inboxPrefix: string): string => `${inboxPrefix}.*.hb.*`;

/** Edit distance of two short names. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}

/** The candidate `name` was most likely meant to be ("did you mean"), if one is close enough; undefined otherwise. */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  let best: { c: string; d: number } | undefined;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (!best || d < best.d) best = { c, d };
  }
  return best && best.d <= Math.max(2, Math.floor(name.length / 3)) ? best.c : undefined;
}
