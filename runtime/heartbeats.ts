/**
 * Heartbeats to callers that asked for them (Graph-Heartbeat-Ms / Graph-Heartbeat-To, runtime/client.ts), so that
 * a caller can tell a slow request from a lost one. One pump per connection-holder (a replica's service, an
 * activator holding requests for a node at zero): one timer for every request it has, running only while some
 * caller asked, each beat an empty message with `Graph-Heartbeat: 1` to the caller's inbox at the pace it asked.
 *
 * The deadline of a request is read here too, the same way for both: Graph-Deadline (epoch ms) clamped to the
 * node's timeout, so that a far-future or malformed one cannot hold a request forever or overflow a timer.
 */
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { Headers, heartbeatAskOf, MIN_HEARTBEAT_MS } from "../subjects/headers.ts";

/** A caller's heartbeats while its request is held or handled; give it back to {@link HeartbeatPump.stop}. */
export interface Heartbeat {
  readonly to: string;
  readonly everyMs: number;
  lastMs: number;
}

export interface HeartbeatPump {
  /** Starts beating for the request with headers `h` if its caller asked (undefined: it did not). */
  start(h: MsgHdrs | undefined): Heartbeat | undefined;
  /** Stops the beats of one request (its reply went out, or it was forwarded or answered elsewhere). */
  stop(b: Heartbeat | undefined): void;
  /** Stops every beat and the timer. */
  clear(): void;
  /** Requests beating now. */
  size(): number;
}

export function createHeartbeatPump(nc: NatsConnection): HeartbeatPump {
  const beating = new Set<Heartbeat>();
  let timer: ReturnType<typeof setInterval> | undefined;
  const beat = natsHeaders();
  beat.set(Headers.Heartbeat, "1");
  const stopTimer = (): void => {
    clearInterval(timer);
    timer = undefined;
  };
  const send = (): void => {
    if (beating.size === 0) return stopTimer();
    const t = performance.now();
    for (const b of beating) {
      if (t - b.lastMs < b.everyMs) continue;
      b.lastMs = t;
      try {
        nc.publish(b.to, undefined, { headers: beat });
      } catch {
        // connection closing: the caller sees the attempt as lost
      }
    }
  };
  return {
    start(h) {
      const ask = heartbeatAskOf(h);
      if (!ask) return undefined;
      const b: Heartbeat = { to: ask.to, everyMs: ask.everyMs, lastMs: performance.now() };
      beating.add(b);
      if (!timer) (timer = setInterval(send, MIN_HEARTBEAT_MS)).unref();
      return b;
    },
    stop(b) {
      if (b) beating.delete(b);
    },
    clear() {
      beating.clear();
      stopTimer();
    },
    size: () => beating.size,
  };
}

/** The request's deadline (epoch ms): Graph-Deadline when it is a plain epoch-ms number, never later than now + timeoutMs. */
export function deadlineOf(h: { get(name: string): string } | undefined, nowMs: number, timeoutMs: number): number {
  const raw = h?.get(Headers.Deadline) || "";
  const dl = /^[0-9]{1,15}$/.test(raw) ? Number(raw) : NaN;
  return Math.min(Number.isFinite(dl) ? dl : Infinity, nowMs + timeoutMs);
}
