#!/usr/bin/env node
/**
 * Readiness probe of a node replica without HTTP, run by Kubernetes in the replica's container (an exec probe):
 * exits 0 when THIS replica answers `$SRV.PING.<node>` over NATS, 1 otherwise. A replica answers PING only once
 * its endpoints are served (runtime/service.ts), and stops before it drains, so this is "ready to take requests".
 *
 * It reads the replica's own env: NATS_URL, NATS_USER, NATS_PASSWORD, NATS_INBOX_PREFIX (the node's NATS user,
 * whose permissions allow its own `$SRV.PING.<node>`), SG_NODE, and SG_REPLICA_ID (the pod name, which the
 * replica puts in its PING metadata as `replica`). Every replica of the node answers the PING; the probe waits for
 * the one whose `replica` is its own, at most SG_PROBE_TIMEOUT_MS (default 3000).
 *
 * Plain JavaScript (no tsx): it starts in a fraction of the time a TypeScript entry would, every probe period.
 */
import { connect } from "@nats-io/transport-node";

const env = process.env;
const node = env.SG_NODE;
const replica = env.SG_REPLICA_ID;
const timeoutMs = Number(env.SG_PROBE_TIMEOUT_MS || 3000);

function fail(message) {
  process.stderr.write(`srv-ping: ${message}\n`);
  process.exit(1);
}

if (!node || !replica) fail("SG_NODE and SG_REPLICA_ID must be set");

const timer = setTimeout(() => fail(`no $SRV.PING answer from replica ${replica} of ${node} within ${timeoutMs} ms`), timeoutMs);
let nc;
try {
  nc = await connect({
    servers: (env.NATS_URL || "nats://127.0.0.1:4222").split(","),
    name: `${replica}-probe`,
    timeout: timeoutMs,
    ...(env.NATS_USER ? { user: env.NATS_USER, pass: env.NATS_PASSWORD ?? "" } : {}),
    ...(env.NATS_INBOX_PREFIX ? { inboxPrefix: env.NATS_INBOX_PREFIX } : {}),
  });
} catch (err) {
  fail(`cannot connect to NATS: ${err instanceof Error ? err.message : String(err)}`);
}
const inbox = `${env.NATS_INBOX_PREFIX || "_INBOX"}.probe.${replica}.${process.pid}`;
const sub = nc.subscribe(inbox);
nc.publish(`$SRV.PING.${node}`, "", { reply: inbox });
for await (const m of sub) {
  let ping;
  try {
    ping = m.json();
  } catch {
    continue;
  }
  if (ping?.name === node && ping?.metadata?.replica === replica) {
    clearTimeout(timer);
    await nc.close();
    process.exit(0);
  }
}
