/** ADR-32 discovery from the caller's side: ping/info/stats every replica of a node (or of all nodes). */
import { createInbox, type NatsConnection } from "@nats-io/transport-node";
import { Discovery } from "../subjects/names.ts";

/**
 * Sends one discovery request and gathers every replica's answer for `windowMs`. Status messages (the
 * server's "no responders" reply to a publish with a reply subject) have no body and are skipped.
 */
export async function gather<T>(nc: NatsConnection, subject: string, windowMs = 200): Promise<T[]> {
  const out: T[] = [];
  // The connection's own inbox prefix: under per-node permissions it is the only inbox this user may read.
  const prefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
  const sub = nc.subscribe(createInbox(prefix), {
    callback: (err, m) => {
      if (err || m.data.length === 0) return;
      try {
        out.push(m.json() as T);
      } catch {
        // not a discovery answer
      }
    },
  });
  nc.publish(subject, new Uint8Array(0), { reply: sub.getSubject() });
  await nc.flush();
  await new Promise((r) => setTimeout(r, windowMs));
  sub.unsubscribe();
  return out;
}

/** Number of replicas of `node` that answer $SRV.PING within `windowMs`. */
export async function countReplicas(nc: NatsConnection, node: string, windowMs = 200): Promise<number> {
  return (await gather(nc, Discovery.ping(node), windowMs)).length;
}
