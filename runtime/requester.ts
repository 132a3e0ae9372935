/**
 * Request-reply over one wildcard inbox subscription (`<inbox>.<token>`), created on first use: the muxing
 * `nc.request` does, without its three stack-capturing Error objects per request (~15% of a hop's CPU).
 *
 * Liveness: an attempt may ask the callee for heartbeats (`Graph-Heartbeat-Ms` and `Graph-Heartbeat-To` request
 * headers). A servegraph replica then sends an empty message with a `Graph-Heartbeat` header every that many ms
 * while it works on the request, to `<inbox>.hb.<token>` (never to the reply subject: subjects/names.ts says why),
 * and an attempt that hears nothing for `livenessMs` is declared lost: its replica died (SIGKILL, OOM, a frozen
 * process) and no reply will come. Only callers that know the callee is ours ask for this.
 *
 * Failures are the errors `nc.request` would raise, mapped to GraphError: closed or draining connection,
 * publish errors (max_payload, bad subject), no responders (the server's empty 503 status reply) -> UNAVAILABLE,
 * timeout -> DEADLINE_EXCEEDED; a publish the broker's permissions refuse (a call outside the node's declared
 * edges) -> FORBIDDEN at once, instead of a silence taken for a dead replica. While the connection to the broker is
 * down, attempts fail at once and pending ones are failed when it drops (UNAVAILABLE): the broker lost them, and
 * waiting out the deadline helps nobody.
 */
import {
  createInbox,
  errors,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";
import { GraphError } from "../subjects/errors.ts";
import { Headers } from "../subjects/headers.ts";
import { closestName, Discovery, heartbeatSubjectOf, isToken } from "../subjects/names.ts";
import { isConnected, onConnectionChange } from "./nats.ts";

export function natsErrorToGraphError(err: unknown, subject: string): GraphError {
  if (err instanceof GraphError) return err;
  if (err instanceof errors.RequestError && err.isNoResponders()) {
    return new GraphError("UNAVAILABLE", `no replica of ${subject} is running`, { cause: err });
  }
  if (err instanceof errors.TimeoutError)
    return new GraphError("DEADLINE_EXCEEDED", `${subject} did not answer before the deadline`, { cause: err });
  if (err instanceof errors.InvalidArgumentError && /max_payload/.test(err.message)) {
    return new GraphError("PAYLOAD_TOO_LARGE", "message exceeds the NATS max_payload", { cause: err });
  }
  if (err instanceof errors.ClosedConnectionError || err instanceof errors.DrainingConnectionError) {
    return new GraphError("UNAVAILABLE", "NATS connection is closing", { cause: err });
  }
  return GraphError.from(err);
}

/** Raised (as UNAVAILABLE) when an attempt's replica stopped sending heartbeats: the request may be sent again. */
export class AttemptLostError extends GraphError {
  constructor(subject: string, silentMs: number) {
    super(
      "UNAVAILABLE",
      `the replica of ${subject} handling the request stopped answering (no heartbeat for ${silentMs} ms)`,
      { details: { lost: true } },
    );
  }
}

export interface AttemptOptions {
  timeoutMs: number;
  /** Ask for heartbeats and declare the attempt lost after this long without one (undefined: no liveness). */
  livenessMs?: number;
}

export type Send = (subject: string, payload: Uint8Array, h: MsgHdrs, o: AttemptOptions) => Promise<Msg>;

interface Pending {
  subject: string;
  /** performance.now() at which the attempt times out. */
  endsAt: number;
  resolve: (m: Msg) => void;
  reject: (e: GraphError) => void;
  timer: ReturnType<typeof setTimeout>;
  livenessMs: number | undefined;
  heardAt: number;
}

/** How often the liveness of pending attempts is checked (one timer for all of them). */
const LIVENESS_TICK_MS = 100;

/** How long a no-responders answer waits for the node's $SRV.INFO to tell a down node from an unknown endpoint. */
const UNKNOWN_ENDPOINT_LOOKUP_MS = 250;

/**
 * NOT_FOUND listing the endpoints of the node that `subject` (`<prefix>.<node>.<endpoint>`) names, when a replica of
 * that node answers $SRV.INFO within `ms` and serves no such subject; undefined otherwise (the node is down).
 */
export async function unknownEndpoint(
  nc: NatsConnection,
  subject: string,
  ms: number,
): Promise<GraphError | undefined> {
  const tokens = subject.split(".");
  const node = tokens[tokens.length - 2];
  const name = tokens[tokens.length - 1]!;
  if (tokens.length < 3 || !node || !isToken(node) || ms < 1 || nc.isClosed()) return undefined;
  try {
    const info = (await nc.request(Discovery.info(node), undefined, { timeout: Math.floor(ms) })).json() as {
      endpoints?: { name?: unknown; subject?: unknown }[];
    };
    const eps = (info.endpoints ?? []).filter(
      (e): e is { name: string; subject: string } => typeof e.name === "string" && typeof e.subject === "string",
    );
    if (eps.length === 0 || eps.some((e) => e.subject === subject)) return undefined;
    const near = closestName(
      name,
      eps.map((e) => e.name),
    );
    const hint = near === undefined ? "" : ` Did you mean ${eps.find((e) => e.name === near)!.subject}?`;
    return new GraphError(
      "NOT_FOUND",
      `${node} has no endpoint "${name}"; it serves ${eps.map((e) => `${e.name} (${e.subject})`).join(", ")}.${hint}`,
      {
        details: { node, endpoint: name, endpoints: eps.map((e) => ({ name: e.name, subject: e.subject })) },
      },
    );
  } catch {
    return undefined; // no replica answered (or discovery is not ours to ask): the node is down
  }
}

/** The error of a call the broker refused to deliver: not one of the caller's declared edges. */
export function forbiddenCall(caller: string, subject: string): GraphError {
  return new GraphError(
    "FORBIDDEN",
    `${caller} may not call ${subject}: add the call to graph.config.ts (the broker's permissions come from the graph's declared edges)`,
    { details: { caller, subject } },
  );
}

/** `caller`: who calls, for the FORBIDDEN message (the node's name). */
export function createRequester(nc: NatsConnection, caller = "this node"): Send {
  const pending = new Map<string, Pending>();
  let live = 0;
  let ticker: ReturnType<typeof setInterval> | undefined;
  let sub: Subscription | undefined;
  let base = "";
  let inbox = "";
  let seq = 0;

  const settle = (token: string): Pending | undefined => {
    const p = pending.get(token);
    if (p) {
      pending.delete(token);
      clearTimeout(p.timer);
      if (p.livenessMs !== undefined && --live === 0 && ticker) {
        clearInterval(ticker);
        ticker = undefined;
      }
    }
    return p;
  };

  const failAll = (err: Error): void => {
    for (const token of [...pending.keys()]) {
      const p = settle(token);
      p?.reject(natsErrorToGraphError(err, p.subject));
    }
  };

  const checkLiveness = (): void => {
    const now = performance.now();
    for (const [token, p] of pending) {
      if (p.livenessMs !== undefined && now - p.heardAt > p.livenessMs) {
        settle(token);
        p.reject(new AttemptLostError(p.subject, Math.round(now - p.heardAt)));
      }
    }
  };

  const open = (): void => {
    const prefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
    const ib = createInbox(prefix);
    const b = `${ib}.`;
    const beats = heartbeatSubjectOf(ib, "");
    // One subscription for both: replies on <inbox>.<token>, heartbeats on <inbox>.hb.<token>.
    const s = nc.subscribe(`${b}>`, {
      callback: (err, msg) => {
        if (err) {
          // e.g. a permission violation on the inbox: fail what is pending, open a new inbox next time
          failAll(new errors.RequestError(err.message, { cause: err }));
          if (sub === s) sub = undefined;
          s.unsubscribe();
          return;
        }
        if (msg.subject.startsWith(beats)) {
          const p = pending.get(msg.subject.slice(beats.length));
          if (p) p.heardAt = performance.now();
          return;
        }
        const token = msg.subject.slice(b.length);
        const p = settle(token);
        if (!p) return; // late reply to a request that already timed out or was retried elsewhere
        if (msg.data.length === 0 && msg.headers?.code === 503) {
          const nr = new errors.NoRespondersError(p.subject);
          const unavailable = natsErrorToGraphError(new errors.RequestError(nr.message, { cause: nr }), p.subject);
          // Nobody listens on the subject: the node is down, or it runs and has no such endpoint (a typo).
          void unknownEndpoint(nc, p.subject, Math.min(UNKNOWN_ENDPOINT_LOOKUP_MS, p.endsAt - performance.now())).then(
            (nf) => p.reject(nf ?? unavailable),
          );
        } else {
          p.resolve(msg);
        }
      },
    });
    sub = s;
    base = b;
    inbox = ib;
    void s.closed.then(() => {
      if (sub !== s) return;
      sub = undefined;
      // Drained with the connection: pending requests fail when it closes (below), as nc.request's do.
      if (!nc.isDraining() && !nc.isClosed()) failAll(new errors.RequestError("connection closed"));
    });
  };
  void nc.closed().then(() => failAll(new errors.RequestError("connection closed")));
  // The server answers a refused publish with -ERR and delivers nothing: fail the attempts sent to that subject now.
  void (async () => {
    for await (const s of nc.status()) {
      if (
        s.type !== "error" ||
        !(s.error instanceof errors.PermissionViolationError) ||
        s.error.operation !== "publish"
      )
        continue;
      const denied = s.error.subject;
      for (const [token, p] of [...pending]) {
        if (p.subject !== denied) continue;
        settle(token);
        p.reject(forbiddenCall(caller, denied));
      }
    }
  })().catch(() => {});
  onConnectionChange(nc, (connected) => {
    if (!connected) failAll(new GraphError("UNAVAILABLE", "lost the connection to the NATS broker"));
  });

  return (subject, payload, h, o) =>
    new Promise<Msg>((resolve, reject) => {
      try {
        if (nc.isClosed()) throw new errors.ClosedConnectionError();
        if (nc.isDraining()) throw new errors.DrainingConnectionError();
        if (!isConnected(nc)) throw new GraphError("UNAVAILABLE", "the NATS broker is unreachable");
        if (!sub) open();
      } catch (err) {
        reject(natsErrorToGraphError(err, subject));
        return;
      }
      const token = (++seq).toString(36);
      const timer = setTimeout(() => {
        const p = settle(token);
        p?.reject(natsErrorToGraphError(new errors.TimeoutError(), subject));
      }, o.timeoutMs);
      const livenessMs = o.livenessMs !== undefined && o.livenessMs < o.timeoutMs ? o.livenessMs : undefined;
      if (livenessMs !== undefined) {
        h.set(Headers.HeartbeatMs, String(Math.max(1, Math.floor(livenessMs / 4))));
        h.set(Headers.HeartbeatTo, heartbeatSubjectOf(inbox, token));
        live++;
        ticker ??= setInterval(checkLiveness, LIVENESS_TICK_MS);
        ticker.unref();
      }
      pending.set(token, {
        subject,
        endsAt: performance.now() + o.timeoutMs,
        resolve,
        reject,
        timer,
        livenessMs,
        heardAt: performance.now(),
      });
      try {
        nc.publish(subject, payload, { reply: base + token, headers: h });
      } catch (err) {
        settle(token);
        reject(natsErrorToGraphError(err, subject));
      }
    });
}
