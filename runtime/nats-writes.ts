/**
 * One socket write per event-loop turn instead of one per microtask turn.
 *
 * nats.js (nats-core 3.4 `ProtocolHandler.sendCommand`) queues what a publish or request encodes and flushes it
 * to the socket from a microtask. Under load a replica handles many messages of one socket read in one turn, but
 * their replies leave at different microtask depths (each handler awaits its own work), so the queue is flushed
 * after the first of them and each of the others pays a write syscall of its own: on loopback a write also runs the
 * receiver's TCP path, so on two shared cores the chain spent a third of its CPU in `writeBuffer`, one write per
 * message. Flushing from `setImmediate` instead sends everything the turn produced in one write, before the event
 * loop polls again: no added wait (the check phase follows the poll phase of the same turn), fewer and larger
 * writes. Measured on the chain (ingress -> greeter-proxy -> greeter, 2-core VM): about 1.3x the throughput at
 * C=16 (README, Benchmarks).
 *
 * This replaces one method of nats.js's protocol handler, so the version is pinned (package.json) and
 * test/integration/nats-writes.test.ts checks both that it still applies and what it does; where the handler does
 * not have the shape expected, nothing is replaced and nats.js's own flushing stays (coalesceWrites returns false).
 */
import type { NatsConnection } from "@nats-io/transport-node";

interface ProtocolHandler {
  outbound: { fill(buf: Uint8Array, ...payloads: Uint8Array[]): void; size(): number };
  pendingLimit: number;
  sendCommand(cmd: string | Uint8Array, ...payloads: Uint8Array[]): void;
  flushPending(): void;
}

const patched = new WeakSet<object>();

function protocolOf(nc: NatsConnection): ProtocolHandler | undefined {
  const p = (nc as unknown as { protocol?: Partial<ProtocolHandler> }).protocol;
  if (!p || typeof p.sendCommand !== "function" || typeof p.flushPending !== "function" || typeof p.pendingLimit !== "number") return undefined;
  if (!p.outbound || typeof p.outbound.fill !== "function" || typeof p.outbound.size !== "function") return undefined;
  return p as ProtocolHandler;
}

/** Whether `nc`'s writes are coalesced per event-loop turn (see the top of this file). */
export function writesCoalesced(nc: NatsConnection): boolean {
  const p = protocolOf(nc);
  return p !== undefined && patched.has(p);
}

/** Makes `nc` write once per event-loop turn; false (and nothing changed) where nats.js is not the expected shape. */
export function coalesceWrites(nc: NatsConnection): boolean {
  const p = protocolOf(nc);
  if (!p) return false;
  if (patched.has(p)) return true;
  const enc = new TextEncoder();
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    // Does nothing while disconnected; the handler flushes what is queued itself once it reconnects.
    p.flushPending();
  };
  p.sendCommand = (cmd, ...payloads) => {
    p.outbound.fill(typeof cmd === "string" ? enc.encode(cmd) : cmd, ...payloads);
    if (p.outbound.size() >= p.pendingLimit) p.flushPending(); // a large backlog goes out at once, as before
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  patched.add(p);
  return true;
}
