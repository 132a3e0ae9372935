/**
 * The activator of a node scaled to zero: while the node has no replica, `servegraph up` holds its requests here
 * instead of letting callers get "no responders" (503 UNAVAILABLE), starts a replica, and hands the requests over.
 *
 * Contract:
 *  - arm() subscribes to the node's subjects (`<prefix>.<node>.>`) in the node's queue group, so that it is one more
 *    member of the group the replicas join. `up` arms it before the node's last replica stops (scale to zero) and
 *    at start-up for a node that starts with none: there is no moment without a subscriber. While a replica still
 *    runs, the server spreads requests over both: what reaches the activator then is held like the rest.
 *  - The first request it holds calls `wake()` (once per cold start): `up` starts a replica, waits until it answers
 *    $SRV.PING (PING means its endpoints are subscribed), calls release(), and only then resolves.
 *  - release() unsubscribes with a drain (UNSUB + a round trip to the server: what the server routed here before
 *    the UNSUB still arrives and is held, not dropped), and only then forwards every held request to the node's
 *    subject with its headers, payload and reply subject unchanged. The replica answers the caller directly:
 *    reply, error headers and heartbeats reach the caller as if the activator were not there, and since the
 *    activator is no longer in the queue group, a forwarded request cannot come back to it. Each held request is
 *    forwarded exactly once and never answered here, except:
 *      - its deadline (Graph-Deadline, else now + the node's timeout) passed while it was held: DEADLINE_EXCEEDED;
 *      - the replica could not start (`wake()` failed): UNAVAILABLE with the reason;
 *      - more than MAX_HELD requests wait: OVERLOADED at once (the caller may retry);
 *      - `up` stops while it holds requests: UNAVAILABLE.
 *  - While it holds a request whose caller asked for heartbeats (Graph-Heartbeat-Ms/-To, runtime/client.ts), it
 *    sends them as a replica would (subjects/headers.ts reads the ask for both), so the caller does not declare a
 *    slow cold start a lost attempt and retry it.
 *
 * Permissions: on the local broker of `servegraph up` the ops user may subscribe to the subjects of nodes whose
 * min is 0 and publish to their callers' reply inboxes (ops/manifests/nats-permissions.ts). Where it may not (a
 * broker of another configuration), arm() resolves false and `up` keeps one replica of the node instead.
 */
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { toHeaders, type Logger, type ResolvedNode } from "../runtime/index.ts";
import { GraphError } from "../subjects/errors.ts";
import { createHeartbeatPump, deadlineOf, type Heartbeat } from "../runtime/heartbeats.ts";

/** Requests held at once; more are refused with OVERLOADED. */
export const MAX_HELD = 10_000;
/** How often held requests are checked for deadlines passed. */
const TICK_MS = 50;

export const ActivatorState = { OFF: "off", ARMED: "armed", WAKING: "waking" } as const;
export type ActivatorState = (typeof ActivatorState)[keyof typeof ActivatorState];

export interface ActivatorOptions {
  nc: NatsConnection;
  node: ResolvedNode;
  /** Starts a replica of the node; resolves once it answers $SRV.PING, then the activator releases its requests. */
  wake: () => Promise<void>;
  log: Logger;
}

export interface Activator {
  readonly node: string;
  state(): ActivatorState;
  /** Requests held now. */
  held(): number;
  /** Subscribes (no-op when armed); false when the broker refuses the subscription. */
  arm(): Promise<boolean>;
  /** Unsubscribes (drain) and forwards what it holds. No-op when not armed. */
  release(): Promise<void>;
  /** `up` stops: unsubscribe and answer what it holds with UNAVAILABLE. */
  stop(): Promise<void>;
}

interface Held {
  msg: Msg;
  deadlineEpochMs: number;
  heartbeat: Heartbeat | undefined;
}

const enc = new TextEncoder();

export function createActivator(opts: ActivatorOptions): Activator {
  const { nc, node, log } = opts;
  const subject = `${node.subjectPrefix}.${node.name}.>`;
  let sub: Subscription | undefined;
  let draining = false;
  let waking: Promise<void> | undefined;
  let held: Held[] = [];
  let timer: NodeJS.Timeout | undefined;
  // Beats while a request is held, as the node's own service would send them (runtime/heartbeats.ts).
  const heartbeats = createHeartbeatPump(nc);

  const expired = (): GraphError =>
    new GraphError("DEADLINE_EXCEEDED", `deadline passed while ${node.name} was starting from zero replicas`);

  /** A held request leaves the activator: no more beats for it from here. */
  const letGo = (h: Held): Msg => {
    heartbeats.stop(h.heartbeat);
    return h.msg;
  };

  const answer = (m: Msg, err: GraphError): void => {
    try {
      m.respond(enc.encode(JSON.stringify(err.toJSON())), { headers: toHeaders(err) });
    } catch (e) {
      log.warn("activator could not answer a held request", { node: node.name, error: e });
    }
  };

  const tick = (): void => {
    const now = Date.now();
    held = held.filter((h) => {
      if (h.deadlineEpochMs > now) return true;
      answer(letGo(h), expired());
      return false;
    });
    if (held.length === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  const startWake = (): void => {
    if (waking || draining) return;
    log.info(`activator: a request for ${node.name}, which has no replica: starting one`, { node: node.name });
    // On success the one who started the replica has released this activator (the autoscaler does, in the same
    // change of the node's count), so that a release cannot race a new arm() of a later scale to zero.
    waking = opts
      .wake()
      .then(
        () => {},
        (err: unknown) => {
          const ge = GraphError.from(err);
          log.error(`activator: ${node.name} could not start: ${ge.message}`, { node: node.name });
          const failed = held;
          held = [];
          for (const h of failed)
            answer(
              letGo(h),
              new GraphError("UNAVAILABLE", `${node.name} has no replica and could not start one: ${ge.message}`),
            );
        },
      )
      .finally(() => {
        waking = undefined;
      });
  };

  const onMessage = (m: Msg): void => {
    if (!m.reply) return; // a publish, not a request: a replica would ignore it too
    if (held.length >= MAX_HELD) {
      answer(
        m,
        new GraphError(
          "OVERLOADED",
          `${node.name} is starting from zero replicas and already holds ${MAX_HELD} requests`,
          { details: { held: MAX_HELD } },
        ),
      );
      return;
    }
    // The deadline as the node's own service would read and clamp it.
    held.push({
      msg: m,
      deadlineEpochMs: deadlineOf(m.headers, Date.now(), node.timeoutMs),
      heartbeat: heartbeats.start(m.headers),
    });
    if (!timer) (timer = setInterval(tick, TICK_MS)).unref();
    if (!draining) startWake();
  };

  /** Forwards what it holds (answers what expired or cannot be sent); returns how many it forwarded. */
  const forwardAll = (): number => {
    const out = held;
    held = [];
    const now = Date.now();
    let forwarded = 0;
    for (const h of out) {
      letGo(h);
      if (h.deadlineEpochMs <= now) {
        answer(h.msg, expired());
        continue;
      }
      try {
        // Headers (deadline, trace context, heartbeat request...), payload and reply subject as the caller sent them.
        nc.publish(h.msg.subject, h.msg.data, {
          reply: h.msg.reply!,
          ...(h.msg.headers ? { headers: h.msg.headers } : {}),
        });
        forwarded++;
      } catch (e) {
        answer(
          h.msg,
          new GraphError(
            "UNAVAILABLE",
            `could not forward the request to ${node.name}: ${e instanceof Error ? e.message : String(e)}`,
          ),
        );
      }
    }
    return forwarded;
  };

  const release = async (): Promise<void> => {
    const s = sub;
    if (!s) return;
    sub = undefined;
    draining = true;
    try {
      // What the server routed here before it saw the UNSUB is still delivered (and held) until the drain ends.
      await s.drain().catch(() => {});
    } finally {
      draining = false;
    }
    const n = forwardAll();
    if (n) log.info(`activator: ${node.name} is up: forwarded ${n} held request(s)`, { node: node.name, forwarded: n });
    await nc.flush().catch(() => {});
  };

  return {
    node: node.name,
    state: () => (waking ? ActivatorState.WAKING : sub ? ActivatorState.ARMED : ActivatorState.OFF),
    held: () => held.length,
    async arm() {
      if (sub) return true;
      let refused: Error | undefined;
      const s = nc.subscribe(subject, {
        queue: node.name,
        callback: (err, m) => {
          if (err) {
            refused = err;
            log.warn(`activator: subscription to ${subject} failed: ${err.message}`, { node: node.name });
            return;
          }
          onMessage(m);
        },
      });
      sub = s;
      // A refused subscription comes back as an error before the server's answer to the flush's PING.
      await nc.flush();
      await new Promise((r) => setImmediate(r));
      if (refused || s.isClosed()) {
        if (sub === s) sub = undefined;
        return false;
      }
      return true;
    },
    release,
    async stop() {
      const s = sub;
      sub = undefined;
      if (s) await s.drain().catch(() => {});
      if (timer) clearInterval(timer);
      timer = undefined;
      const left = held;
      held = [];
      for (const h of left)
        answer(letGo(h), new GraphError("UNAVAILABLE", `servegraph up is stopping; ${node.name} has no replica`));
      heartbeats.clear();
    },
  };
}
