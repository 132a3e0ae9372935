/** One NATS connection per process, reconnecting forever. */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "./log.ts";

export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

export async function connectNats(opts: {
  name: string;
  /** Comma-separated server URLs; default NATS_URL, else DEFAULT_NATS_URL. */
  servers?: string;
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
  const servers = opts.servers || process.env.NATS_URL || DEFAULT_NATS_URL;
  const nc = await connect({
    servers: servers.split(","),
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    timeout: opts.timeoutMs ?? 10_000,
    waitOnFirstConnect: opts.waitOnFirstConnect ?? true,
    // nats.js ignores credentials in the URL: a deployment passes them as NATS_USER / NATS_PASSWORD.
    ...(process.env.NATS_USER ? { user: process.env.NATS_USER, pass: process.env.NATS_PASSWORD ?? "" } : {}),
    // With per-node permissions each user may only read its own reply inbox (servegraph manifests).
    ...(process.env.NATS_INBOX_PREFIX ? { inboxPrefix: process.env.NATS_INBOX_PREFIX } : {}),
  });
  if (opts.log) {
    const log = opts.log;
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect" || s.type === "reconnect" || s.type === "error" || s.type === "slowConsumer") {
          log.warn(`nats ${s.type}`, { server: "server" in s ? s.server : undefined });
        }
      }
    })().catch(() => {});
  }
  return nc;
}
