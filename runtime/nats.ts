/**
 * One NATS connection per process, reconnecting forever, and whether it is connected right now: while the broker
 * is unreachable, callers fail at once (UNAVAILABLE) instead of waiting out their deadlines on a dead socket.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { readNatsEnv, type NatsCredentials } from "./env.ts";
import type { Logger } from "./log.ts";
import { accountExternalMemoryInHeapLimit, coalesceWrites, presizeReads } from "./nats-io.ts";

const disconnected = new WeakSet<NatsConnection>();
const onChange = new WeakMap<NatsConnection, ((connected: boolean) => void)[]>();

/** False from a disconnect until the reconnect (and once closed). Connections not made by connectNats count as connected. */
export function isConnected(nc: NatsConnection): boolean {
  return !nc.isClosed() && !disconnected.has(nc);
}

/** Calls `fn` on every disconnect (false) and reconnect (true) of a connection made by {@link connectNats}. */
export function onConnectionChange(nc: NatsConnection, fn: (connected: boolean) => void): void {
  const list = onChange.get(nc) ?? [];
  list.push(fn);
  onChange.set(nc, list);
}

export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

export async function connectNats(opts: {
  name: string;
  /** Comma-separated server URLs; default NATS_URL, else DEFAULT_NATS_URL. */
  servers?: string;
  /** The NATS user to connect as; default NATS_USER / NATS_PASSWORD / NATS_INBOX_PREFIX (runtime/env.ts), else none. */
  credentials?: NatsCredentials;
  log?: Logger;
  /** Timeout of one connection attempt (default 10 s). */
  timeoutMs?: number;
  /**
   * true (default): retry until a server answers, so a node may start before its broker. false: reject when
   * the first attempt fails, for a command probing a broker that may not be there (`servegraph status`,
   * `bench`). Once connected, the connection reconnects forever either way.
   */
  waitOnFirstConnect?: boolean;
}): Promise<NatsConnection> {
  const env = readNatsEnv();
  const servers = opts.servers || env.servers || DEFAULT_NATS_URL;
  const creds = opts.credentials ?? env.credentials;
  const nc = await connect({
    servers: servers.split(","),
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    timeout: opts.timeoutMs ?? 10_000,
    waitOnFirstConnect: opts.waitOnFirstConnect ?? true,
    ...(creds ? { user: creds.user, pass: creds.password } : {}),
    // With per-node permissions each user may only read its own reply inbox (servegraph manifests).
    ...(creds?.inboxPrefix ? { inboxPrefix: creds.inboxPrefix } : {}),
  });
  const log = opts.log;
  accountExternalMemoryInHeapLimit();
  if (!coalesceWrites(nc))
    log?.warn(
      "nats: this nats.js has no sendCommand/flushPending to coalesce writes with; one socket write per microtask turn",
    );
  if (!presizeReads(nc))
    log?.warn(
      "nats: this nats.js parser cannot be given presized read buffers; large messages are gathered by doubling",
    );
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "disconnect" || s.type === "reconnect") {
        const connected = s.type === "reconnect";
        if (connected) disconnected.delete(nc);
        else disconnected.add(nc);
        for (const fn of onChange.get(nc) ?? []) {
          try {
            fn(connected);
          } catch {
            /* a listener's failure is its own */
          }
        }
      }
      if (
        log &&
        (s.type === "disconnect" || s.type === "reconnect" || s.type === "error" || s.type === "slowConsumer")
      ) {
        log.warn(`nats ${s.type}`, { server: "server" in s ? s.server : undefined });
      }
    }
  })().catch(() => {});
  return nc;
}
