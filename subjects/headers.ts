/** Header names used on the wire. ADR-32 names are fixed by the NATS services protocol. */
export const Headers = {
  /** ADR-32: numeric HTTP-like status of an error reply. */
  ServiceErrorCode: "Nats-Service-Error-Code",
  /** ADR-32: human-readable, safe-to-show error message. */
  ServiceError: "Nats-Service-Error",
  /** Our stable string code from the error table. */
  GraphError: "Graph-Error",
  /** Absolute deadline of the request, epoch milliseconds. Each hop derives its own timeout from it. */
  Deadline: "Graph-Deadline",
  /** Binary payloads: element type, e.g. "float32". */
  Dtype: "Graph-Dtype",
  /** Binary payloads: comma-separated shape, e.g. "3,224,224". */
  Shape: "Graph-Shape",
  /** Content type of a binary payload that is not a tensor (e.g. image/jpeg). */
  ContentType: "Content-Type",
  /** Classification: how many predictions to return (1..1000, default 5). */
  TopK: "Graph-Top-K",
  /** A/B routing: the variant chosen and who decided it (router replies). */
  Variant: "Graph-Variant",
  /**
   * Request: the caller wants a heartbeat every this many ms while a replica works on it (liveness, so a request
   * whose replica died is retried instead of waiting out its deadline), sent to `Graph-Heartbeat-To`: an empty
   * message with `Graph-Heartbeat`, never on the reply subject. Callers that do not ask get no heartbeats.
   */
  HeartbeatMs: "Graph-Heartbeat-Ms",
  /** Request: the subject those heartbeats go to (subjects/names.ts heartbeatSubjectOf); without it, none are sent. */
  HeartbeatTo: "Graph-Heartbeat-To",
  Heartbeat: "Graph-Heartbeat",
  /**
   * Reply: where the replica's time went, in HTTP `Server-Timing` syntax (`preprocess;dur=12.5, infer;dur=30.1`,
   * milliseconds). Informational; the ingress passes it on to HTTP clients with its own entries.
   */
  ServerTiming: "Server-Timing",
  /** W3C trace context. */
  Traceparent: "traceparent",
  Tracestate: "tracestate",
} as const;

/** A request's ask for heartbeats: every `everyMs` (at least {@link MIN_HEARTBEAT_MS}) to `to`; undefined: none. */
export interface HeartbeatAsk {
  readonly to: string;
  readonly everyMs: number;
}

/** The shortest heartbeat interval a replica honours, whatever the caller asks. */
export const MIN_HEARTBEAT_MS = 50;

/**
 * Reads `Graph-Heartbeat-Ms` and `Graph-Heartbeat-To` of a request's headers (nats.js MsgHdrs, whose `get` answers
 * "" for a missing header): the one parser of the replica and the activator.
 */
export function heartbeatAskOf(h: { get(name: string): string } | undefined): HeartbeatAsk | undefined {
  if (!h) return undefined;
  const ms = h.get(Headers.HeartbeatMs);
  const to = h.get(Headers.HeartbeatTo);
  if (!ms || !to || !/^[0-9]{1,6}$/.test(ms)) return undefined;
  return { to, everyMs: Math.max(MIN_HEARTBEAT_MS, Number(ms)) };
}
