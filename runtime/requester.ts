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
 * timeout -> DEADLINE_EXCEEDED. While the connection to the broker is down, attempts fail at once and pending
 * ones are failed when it drops (UNAVAILABLE): the broker lost them, and waiting out the deadline helps nobody.
 */
import { createInbox, errors, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { GraphError } from "../subjects/errors.ts";
import { Headers } from "../subjects/headers.ts";
import { heartbeatSubjectOf } from "../subjects/names.ts";
import { isConnected, onConnectionChange } from "./nats.ts";

export function toGraphError(err: unknown, subject: string): GraphError {
  if (err instanceof GraphError) return err;
  if (err instanceof errors.RequestError && err.isNoResponders()) {
    return new GraphError("UNAVAILABLE", `no replica of ${subject} is running`, { cause: err });
  }
  if (err instanceof errors.TimeoutError) return new GraphError("DEADLINE_EXCEEDED", `${subject} did not answer before the deadline`, { cause: err });
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
    super("UNAVAILABLE", `the replica of ${subject} handling the request stopped answering (no heartbeat for ${silentMs} ms)`, { details: { lost: true } });
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
  resolve: (m: Msg) => void;
  reject: (e: GraphError) => void;
  timer: ReturnType<typeof setTimeout>;
  livenessMs: number | undefined;
  heardAt: number;
}

/** How often the liveness of pending attempts is checked (one timer for all of them). */
const LIVENESS_TICK_MS = 100;

export function createRequester(nc: NatsConnection): Send {
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
      p?.reject(toGraphError(err, p.subject));
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
          p.reject(toGraphError(new errors.RequestError(nr.message, { cause: nr }), p.subject));
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
  onConnectionChange(nc, (connected) => {
    if (!connected) failAll(new GraphError("UNAVAILABLE", "lost the connection to the NATS broker"));
  });

  return (subject, payload, h, o) => new Promise<Msg>((resolve, reject) => {
    try {
      if (nc.isClosed()) throw new errors.ClosedConnectionError();
      if (nc.isDraining()) throw new errors.DrainingConnectionError();
      if (!isConnected(nc)) throw new GraphError("UNAVAILABLE", "the NATS broker is unreachable");
      if (!sub) open();
    } catch (err) {
      reject(toGraphError(err, subject));
      return;
    }
    const token = (++seq).toString(36);
    const timer = setTimeout(() => {
      const p = settle(token);
      p?.reject(toGraphError(new errors.TimeoutError(), subject));
    }, o.timeoutMs);
    const livenessMs = o.livenessMs !== undefined && o.livenessMs < o.timeoutMs ? o.livenessMs : undefined;
    if (livenessMs !== undefined) {
      h.set(Headers.HeartbeatMs, String(Math.max(1, Math.floor(livenessMs / 4))));
      h.set(Headers.HeartbeatTo, heartbeatSubjectOf(inbox, token));
      live++;
      ticker ??= setInterval(checkLiveness, LIVENESS_TICK_MS);
      ticker.unref();
    }
    pending.set(token, { subject, resolve, reject, timer, livenessMs, heardAt: performance.now() });
    try {
      nc.publish(subject, payload, { reply: base + token, headers: h });
    } catch (err) {
      settle(token);
      reject(toGraphError(err, subject));
    }
  });
}
