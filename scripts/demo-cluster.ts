/**
 * npm run demo:cluster: the classify graph on three hosts (network namespaces on this machine, one NATS server
 * each, clustered) under a closed-loop load; host B loses its NATS server, then its replicas. Prints its progress
 * and, as the last line, one JSON summary (ops/cluster/scenario.ts says what the bound is).
 *
 *   npm run demo:cluster [-- --clients 6 --warm-s 8 --after-nats-kill-s 6 --after-host-loss-s 6]
 *   npm run demo:cluster -- --cleanup     remove what earlier runs left (namespaces sg-*, links, processes, dirs)
 *
 * Exit: 0 when the run met its bound, 1 when not (or it failed), 2 when this machine cannot make namespaces (not
 * root, no iproute2).
 */
import { parseArgs } from "node:util";
import { cleanupLeftovers, netnsUnavailableReason, runClusterScenario } from "../tools/cluster/index.ts";

const { values } = parseArgs({
  options: {
    clients: { type: "string" },
    "warm-s": { type: "string" },
    "after-nats-kill-s": { type: "string" },
    "after-host-loss-s": { type: "string" },
    cleanup: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  },
});
const t0 = Date.now();
const log = (line: string): void => {
  process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${line}\n`);
};

if (values.help) {
  process.stdout.write(
    "npm run demo:cluster [-- --clients N --warm-s S --after-nats-kill-s S --after-host-loss-s S | --cleanup]\n",
  );
  process.exit(0);
}
const why = netnsUnavailableReason();
if (why) {
  process.stderr.write(`demo:cluster: ${why}\n`);
  process.exit(2);
}
if (values.cleanup) {
  const r = cleanupLeftovers();
  log(
    `removed ${r.namespaces.length} namespace(s), ${r.links.length} link(s), ${r.pids.length} process(es), ${r.dirs.length} dir(s)`,
  );
  process.stdout.write(JSON.stringify({ cleanup: r }) + "\n");
  process.exit(0);
}
const num = (v: string | undefined, name: string, def: number): number => {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 3600) {
    process.stderr.write(`demo:cluster: --${name} must be a positive number, got "${v}"\n`);
    process.exit(1);
  }
  return n;
};
const clients = Math.round(num(values.clients, "clients", 6));
try {
  const s = await runClusterScenario({
    clients,
    warmMs: num(values["warm-s"], "warm-s", 8) * 1000,
    afterNatsKillMs: num(values["after-nats-kill-s"], "after-nats-kill-s", 6) * 1000,
    afterHostLossMs: num(values["after-host-loss-s"], "after-host-loss-s", 6) * 1000,
    log,
  });
  for (const p of s.phases)
    log(
      `  ${p.name.padEnd(14)} ${String(p.requests).padStart(5)} sent, ${String(p.ok).padStart(5)} ok, ${String(p.failed).padStart(3)} failed, slowest ${p.max_ms} ms`,
    );
  log(
    `served by host (preprocess): ${Object.entries(s.per_host_served)
      .map(([h, n]) => `${h} ${n}`)
      .join(", ")}`,
  );
  log(
    s.met_bound
      ? `met the bound: ${s.failed} failed of ${s.requests} (at most ${s.bound.max_failed}: ${s.bound.rule})`
      : `did NOT meet the bound:\n  - ${s.violations.join("\n  - ")}`,
  );
  process.stdout.write(JSON.stringify(s) + "\n");
  process.exitCode = s.met_bound ? 0 : 1;
} catch (err) {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.stdout.write(
    JSON.stringify({ met_bound: false, error: err instanceof Error ? err.message : String(err) }) + "\n",
  );
  process.exitCode = 1;
}
// nats.js may keep a timer for a server that is gone; everything has stopped.
setTimeout(() => process.exit(), 500).unref();
