/**
 * One discovery poller for every open dashboard: a reading (runtime `collectStatus`, and the autoscaler of
 * `servegraph up` when one answers) at most once per `intervalMs`, however many pages are open.
 *
 * Ownership: the first subscriber starts the loop, the last one to leave stops it (its timer is cleared; a reading
 * in flight finishes and is dropped). Readings never overlap, and two start at least `intervalMs` apart, also
 * across a stop and a restart. A new subscriber gets the latest frame at once.
 *
 * Failure: a failed reading (NATS down, permissions) is a frame with `error` set and the last known nodes; a
 * listener that throws is dropped; nothing escapes to the process. The autoscaler is optional: its absence (no
 * responder, an error reply, a timeout) is normal and shows as no autoscaler figures.
 */
import type { GraphStatus, Logger } from "../../../../runtime/index.ts";
import { autoscalerOf, frameOf, ratesOf, type LiveFrame, type Reading } from "./live.ts";

export interface StatusPollerOptions {
  read: () => Promise<GraphStatus>;
  /** The autoscaler's answer, or undefined when there is none. */
  readAutoscaler?: () => Promise<unknown>;
  intervalMs?: number;
  /** Monotonic ms (default performance.now). */
  now?: () => number;
  log?: Logger;
}

export type FrameListener = (frame: LiveFrame) => void;

export interface StatusPoller {
  /** Starts the loop on the first subscriber; the returned function unsubscribes (idempotent). */
  subscribe(listener: FrameListener): () => void;
  readonly subscribers: number;
  /** Readings started so far. */
  readonly readings: number;
  /** Drops every subscriber and stops the loop. */
  close(): void;
}

export const POLL_INTERVAL_MS = 1000;

export function createStatusPoller(opts: StatusPollerOptions): StatusPoller {
  const intervalMs = opts.intervalMs ?? POLL_INTERVAL_MS;
  const now = opts.now ?? (() => performance.now());
  const listeners = new Set<FrameListener>();
  let generation = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let reading: Promise<void> | undefined;
  let lastStartMs = -Infinity;
  let readings = 0;
  let prev: Reading | undefined;
  let last: LiveFrame | undefined;
  let failing = false;

  const deliver = (frame: LiveFrame): void => {
    for (const l of [...listeners]) {
      try {
        l(frame);
      } catch (err) {
        listeners.delete(l);
        opts.log?.warn("dashboard listener failed; dropped", {
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
  };

  const readOnce = async (gen: number): Promise<void> => {
    const atMs = now();
    lastStartMs = atMs;
    readings++;
    let frame: LiveFrame;
    try {
      const [status, auto] = await Promise.all([opts.read(), opts.readAutoscaler?.().catch(() => undefined)]);
      const cur: Reading = { atMs, nodes: status.nodes };
      const rates = ratesOf(prev, cur);
      prev = cur;
      frame = frameOf(status, rates, auto === undefined ? null : autoscalerOf(auto));
      failing = false;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (!failing) opts.log?.warn("dashboard: discovery reading failed", { error: message });
      failing = true;
      frame = { at: new Date().toISOString(), nodes: last?.nodes ?? [], error: `discovery failed: ${message}` };
    }
    if (gen !== generation) return;
    last = frame;
    deliver(frame);
  };

  const schedule = (gen: number): void => {
    const wait = Math.max(0, lastStartMs + intervalMs - now());
    timer = setTimeout(() => {
      timer = undefined;
      if (gen !== generation) return;
      // A reading of a stopped loop may still be out: wait for it, so that readings never overlap.
      const start = async (): Promise<void> => {
        if (reading) await reading;
        if (gen !== generation) return;
        if (now() < lastStartMs + intervalMs) return schedule(gen);
        const r = (reading = readOnce(gen).finally(() => {
          if (reading === r) reading = undefined;
        }));
        await r;
        if (gen === generation) schedule(gen);
      };
      void start();
    }, wait);
    timer.unref?.();
  };

  const stop = (): void => {
    generation++;
    if (timer) clearTimeout(timer);
    timer = undefined;
    // A later start computes rates afresh: a reading minutes old would give an average over the pause.
    prev = undefined;
    last = undefined;
  };

  return {
    subscribe(listener) {
      listeners.add(listener);
      if (listeners.size === 1) schedule(generation);
      else if (last) {
        try {
          listener(last);
        } catch {
          listeners.delete(listener);
        }
      }
      return () => {
        if (!listeners.delete(listener)) return;
        if (listeners.size === 0) stop();
      };
    },
    get subscribers() {
      return listeners.size;
    },
    get readings() {
      return readings;
    },
    close() {
      listeners.clear();
      stop();
    },
  };
}
