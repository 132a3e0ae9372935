/**
 * The multi-host scenario: a classify graph spread over three hosts (network namespaces, tools/cluster/netns.ts),
 * each with its own server of a 3-server NATS cluster (nats-cluster.ts), under a bounded closed-loop load; then
 * host B loses its NATS server, then host B is lost altogether. `npm run demo:cluster` and
 * test/integration/cluster.test.ts both run {@link runClusterScenario}; only the durations differ.
 *
 * Topology: A runs the ingress (`up --only ingress=1 --host A`, HTTP on A's address), B two preprocess replicas
 * (`--only preprocess=2 --host B`), C one preprocess and the infer node (`--only preprocess=1,infer=1 --host C`,
 * the trivial model: the run is about routing, not compute). Each `up` connects to its own host's server only.
 *
 * Phases (by the time a request was sent): `warm` (all hosts serve), `nats-b-killed` (SIGKILL of B's nats-server:
 * B's processes reconnect through the URLs the cluster gossiped, to A's or C's server), `host-b-lost` (SIGKILL of
 * B's whole `up` process group, i.e. its replicas, during the liveness window that follows), `after` (the rest).
 *
 * The bound (what a client may see), from how the runtime behaves (runtime/requester.ts, runtime/client.ts):
 *  - When B's server dies, a B replica's own requests to infer that are pending fail at once with UNAVAILABLE (its
 *    requester fails what is pending when its connection drops), and so do the ones it starts before its
 *    reconnect completes; it answers the ingress with that error once reconnected, and an error reply is not
 *    retried. So: only requests in flight at the moment of that kill may fail, each as 503 `UNAVAILABLE`, at most
 *    once each: failures <= requests in flight at the kill <= clients. Requests lost on the way (in B's server)
 *    are not failures: the caller hears no heartbeat for the liveness window and sends them again.
 *  - When B's replicas die, what they were working on goes silent: the ingress declares each attempt lost after
 *    the liveness window (LIVENESS_MS) and sends it once more, to C. So no request fails.
 *  - Nothing else fails: requests sent after B is gone are served by C, and C does serve them.
 * A run that breaks any of these (or whose B or C served nothing, or whose B replicas did not reconnect) lists
 * the breach in `violations` and does not meet its bound.
 */
import type { ChildProcess } from "node:child_process";
import { createWriteStream, readFileSync, type WriteStream } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { NatsConnection } from "@nats-io/transport-node";
import { collectStatus, connectNats, gather, LIVENESS_MS } from "../../runtime/index.ts";
import { Discovery } from "../../subjects/names.ts";
import { startClosedLoop, nowMs, type RequestRecord } from "./load.ts";
import { connectionsOf, startNatsCluster, type NatsCluster } from "./nats-cluster.ts";
import { createHostNetwork, type HostNetwork } from "./netns.ts";
import { startUpProcess, type UpSummary } from "../harness/spawn-up.ts";

const REPO_ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const CLI = join(REPO_ROOT, "ops/cli.ts");
/** The graph the scenario runs: the test graph (ingress on a free port, short fixture timeouts). */
export const CLUSTER_GRAPH_FILE = join(REPO_ROOT, "test/fixtures/cluster-graph.config.ts");
export const CLUSTER_IMAGE = join(REPO_ROOT, "data/images/kite-sky-small.jpg");

const HOSTS = ["A", "B", "C"] as const;
/** What each host's `up` runs. */
const ONLY: Record<(typeof HOSTS)[number], string> = { A: "ingress=1", B: "preprocess=2", C: "preprocess=1,infer=1" };
const START_TIMEOUT_MS = 180_000;
const RECONNECT_TIMEOUT_MS = 20_000;

export interface ClusterScenarioOptions {
  /** Concurrent closed-loop clients. */
  clients?: number;
  /** Load before the first fault. */
  warmMs?: number;
  /** Load between the kill of B's nats-server and the loss of host B. */
  afterNatsKillMs?: number;
  /** Load after host B is lost, beyond the liveness window. */
  afterHostLossMs?: number;
  /** The image POSTed to /classify. */
  image?: string;
  log?: (line: string) => void;
}

export interface PhaseSummary {
  name: string;
  /** From the start of the load. */
  start_ms: number;
  duration_ms: number;
  requests: number;
  ok: number;
  failed: number;
  /** The slowest answer of a request sent in the phase (a retried one waited out the liveness window). */
  max_ms: number;
}

export interface ClusterScenarioSummary {
  met_bound: boolean;
  requests: number;
  ok: number;
  failed: number;
  /** Failed requests by HTTP status and code. */
  failures: Record<string, number>;
  /** The first 20 failed requests: when each was sent and answered, relative to the kill of B's nats-server. */
  failed_requests: { status: number; code: string | null; sent_ms: number; answered_ms: number }[];
  /** Requests each host's preprocess replicas received ($SRV.STATS num_requests, grouped by host). */
  per_host_served: Record<string, number>;
  /** The same for every node. */
  served_by_node: Record<string, Record<string, number>>;
  /** SIGKILL of B's nats-server -> the last of B's connections is open again on another server (that server's /connz). */
  reconnect_ms: number | null;
  /** Where each of B's connections went (its name -> host of the server). */
  reconnected_to: Record<string, string>;
  /** SIGKILL of B's nats-server -> every B preprocess replica answers $SRV.PING again through the cluster (polled: 50 ms windows). */
  rejoin_ms: number | null;
  /** Requests in flight when B's nats-server was killed: the most that may fail. */
  in_flight_at_nats_kill: number;
  bound: { max_failed: number; rule: string };
  /** Requests sent after host B was lost and the liveness window passed: all served, by C. */
  after_loss: { requests: number; ok: number; served_by_c: number };
  phases: PhaseSummary[];
  violations: string[];
  run_id: string;
  subnet: string;
  clients: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** RFC 3339 with nanoseconds (nats-server's connz `start`) -> epoch ms with a fraction. */
function parseStart(s: string): number {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(s);
  if (!m) return Date.parse(s);
  return Date.parse(m[1]! + m[3]!) + Number(`0.${m[2] ?? "0"}`) * 1000;
}

interface UpProcess {
  host: string;
  proc: ChildProcess;
  summary: UpSummary;
  stderrTail(): string;
}

/** Starts `servegraph up --only ... --host <host>` inside the host, connected to its own server; resolves when ready. */
async function startUp(
  net: HostNetwork,
  cluster: NatsCluster,
  host: (typeof HOSTS)[number],
  extra: string[],
  env: NodeJS.ProcessEnv,
): Promise<UpProcess> {
  const logFile: WriteStream = createWriteStream(join(net.dir, `up-${host}.log`));
  const up = startUpProcess({
    args: [
      "classify",
      "--graph",
      CLUSTER_GRAPH_FILE,
      "--nats",
      cluster.servers[host]!.url,
      "--only",
      ONLY[host],
      "--host",
      host,
      ...extra,
    ],
    cwd: REPO_ROOT,
    cli: CLI,
    env,
    keepNatsEnv: true,
    startTimeoutMs: START_TIMEOUT_MS,
    label: `up on host ${host}`,
    spawn: (command, args, options) => net.spawnIn(host, command, args, options),
    onOutput: (d) => logFile.write(d),
  });
  up.proc.once("close", () => logFile.end());
  try {
    const summary = await up.summary;
    return { host, proc: up.proc, summary, stderrTail: () => up.stderr().slice(-3000) };
  } catch (e) {
    net.killGroup(up.proc);
    throw e;
  }
}

/** SIGTERM to `up` (it stops its replicas in order), SIGKILL to its group after `graceMs`. */
async function stopUp(net: HostNetwork, up: UpProcess | undefined, graceMs = 15_000): Promise<void> {
  const p = up?.proc;
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once("exit", r));
  p.kill("SIGTERM");
  const t = setTimeout(() => net.killGroup(p), graceMs);
  await exited;
  clearTimeout(t);
}

type Served = Map<string, { node: string; host: string; requests: number }>;

/** Records every replica's num_requests (last value seen per replica: a lost replica keeps its last count). */
async function sampleServed(nc: NatsConnection, url: string, served: Served): Promise<void> {
  const s = await collectStatus(nc, url, [], 300);
  for (const n of s.nodes)
    for (const r of n.replica_list) served.set(r.id, { node: n.node, host: r.host, requests: r.requests });
}

function servedBy(served: Served, node?: string): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const { node: n, host, requests } of served.values()) {
    // An HTTP-only node (the ingress) serves no NATS endpoint: nothing to count.
    if ((node && n !== node) || requests === 0) continue;
    const o = (out[n] ??= {});
    o[host] = (o[host] ?? 0) + requests;
  }
  return out;
}

export async function runClusterScenario(opts: ClusterScenarioOptions = {}): Promise<ClusterScenarioSummary> {
  const clients = opts.clients ?? 6;
  const warmMs = opts.warmMs ?? 8000;
  const afterNatsKillMs = opts.afterNatsKillMs ?? 6000;
  const afterHostLossMs = opts.afterHostLossMs ?? 6000;
  const log = opts.log ?? (() => {});
  const image = readFileSync(opts.image ?? CLUSTER_IMAGE);

  const net = createHostNetwork({ hosts: HOSTS, log });
  let cluster: NatsCluster | undefined;
  let nc: NatsConnection | undefined;
  const ups: Partial<Record<(typeof HOSTS)[number], UpProcess>> = {};
  let load: ReturnType<typeof startClosedLoop> | undefined;
  try {
    cluster = await startNatsCluster(net, { log });
    await cluster.waitFormed();
    log("NATS cluster formed: every server routes to the other two");
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      SG_LOG_LEVEL: "warn",
      OTEL_TRACES_EXPORTER: "none",
      SG_STATE_FILE: join(net.dir, "state.json"),
    };
    delete env.NATS_URL;
    delete env.HOST;
    log(
      `starting: A ${ONLY.A}, B ${ONLY.B}, C ${ONLY.C} (each \`servegraph up --only ... --host X\` in its namespace, on its own server)`,
    );
    const t0 = Date.now();
    const [a, b, c] = await Promise.all([
      // The ingress listens on A's address, where this process (and any other host) reaches it.
      startUp(net, cluster, "A", [], { ...env, HOST: net.hosts.A!.address }),
      startUp(net, cluster, "B", [], env),
      startUp(net, cluster, "C", ["--param", "infer.MODEL=trivial"], env),
    ]);
    Object.assign(ups, { A: a, B: b, C: c });
    const ingress = a.summary.ingress;
    if (!ingress) throw new Error("host A's up reports no ingress URL");
    log(`all hosts up in ${((Date.now() - t0) / 1000).toFixed(1)} s; ingress ${ingress}`);

    nc = await connectNats({ name: "cluster-scenario", servers: cluster.servers.A!.url, waitOnFirstConnect: false });
    const status = await collectStatus(nc, cluster.servers.A!.url, [], 300);
    for (const n of status.nodes)
      log(
        `  ${n.node.padEnd(12)} ${n.replicas} replica(s)  ${Object.entries(n.hosts)
          .map(([h, k]) => `${h}:${k}`)
          .join(" ")}`,
      );
    const bPreprocess =
      status.nodes
        .find((n) => n.node === "preprocess")
        ?.replica_list.filter((r) => r.host === "B")
        .map((r) => r.id) ?? [];

    const served: Served = new Map();
    const loadStart = nowMs();
    load = startClosedLoop({
      clients,
      requestTimeoutMs: 60_000,
      send: (_i, signal) =>
        fetch(`${ingress}/classify`, {
          method: "POST",
          body: image,
          headers: { "content-type": "image/jpeg" },
          signal,
        }),
    });
    log(`load: ${clients} closed-loop clients POST /classify (${image.length} B JPEG)`);
    await sleep(warmMs);
    await sampleServed(nc, cluster.servers.A!.url, served);
    const warmServed = servedBy(served, "preprocess").preprocess ?? {};
    log(`warm: ${load.records.length} answered; preprocess served by host ${JSON.stringify(warmServed)}`);

    // --- B's nats-server dies --------------------------------------------------------------------------------
    const bAddress = net.hosts.B!.address;
    const bConns = (await connectionsOf(cluster.servers.B!)).filter((x) => x.ip === bAddress);
    const natsKill = nowMs();
    const natsKillWall = Date.now();
    const inFlightAtKill = load.inFlight();
    const bServer = cluster.servers.B!;
    const bServerGone = new Promise((r) => bServer.process.once("exit", r));
    bServer.kill("SIGKILL");
    log(
      `SIGKILL nats-server of host B (${bConns.length} connections of B's processes on it; ${inFlightAtKill} requests in flight)`,
    );
    // Both watched at once from the kill: B's connections on the other servers, and B's replicas answering again.
    const reconnectedTo: Record<string, string> = {};
    const watchReconnect = async (): Promise<number | null> => {
      for (const deadline = Date.now() + RECONNECT_TIMEOUT_MS; Date.now() < deadline;) {
        const found: { name: string; start: number; host: string }[] = [];
        for (const h of ["A", "C"] as const) {
          for (const x of await connectionsOf(cluster!.servers[h]!)) {
            const start = parseStart(x.start);
            // Named once its CONNECT is in (every process of ours names its connection); `start` is the TCP accept.
            if (x.ip === bAddress && x.name && start >= natsKillWall - 1) found.push({ name: x.name, start, host: h });
          }
        }
        if (found.length >= bConns.length && found.length > 0) {
          for (const f of found) reconnectedTo[f.name] = f.host;
          return Math.max(...found.map((f) => f.start)) - natsKillWall;
        }
        await sleep(20);
      }
      return null;
    };
    const watchRejoin = async (): Promise<number | null> => {
      // Until B's server is gone, a PING could still reach B's replicas through it.
      await bServerGone;
      for (const deadline = Date.now() + RECONNECT_TIMEOUT_MS; Date.now() < deadline;) {
        const pings = await gather<{ metadata?: Record<string, string> }>(nc!, Discovery.ping("preprocess"), 50);
        const ids = new Set(pings.map((p) => p.metadata?.replica));
        if (bPreprocess.length > 0 && bPreprocess.every((id) => ids.has(id))) return nowMs() - natsKill;
      }
      return null;
    };
    const [reconnectMs, rejoinMs] = await Promise.all([watchReconnect(), watchRejoin()]);
    log(
      reconnectMs === null
        ? `B's processes did not reconnect within ${RECONNECT_TIMEOUT_MS / 1000} s`
        : `B reconnected in ${reconnectMs.toFixed(1)} ms (${Object.entries(reconnectedTo)
            .map(([n, h]) => `${n} -> ${h}`)
            .join(
              ", ",
            )}); B's preprocess replicas answer PING through the cluster after ${rejoinMs?.toFixed(0) ?? "-"} ms`,
    );
    await sleep(Math.max(0, afterNatsKillMs - (nowMs() - natsKill)));

    // --- host B is lost --------------------------------------------------------------------------------------
    await sampleServed(nc, cluster.servers.A!.url, served);
    const cBefore = servedBy(served, "preprocess").preprocess?.C ?? 0;
    const bPids = net.pidsIn("B");
    const hostLoss = nowMs();
    net.killGroup(b.proc, "SIGKILL");
    log(
      `SIGKILL host B's up and its replicas (process group ${b.proc.pid}, ${bPids.length} processes); ${load.inFlight()} requests in flight`,
    );
    await sleep(LIVENESS_MS + afterHostLossMs);
    const records = await load.stop();
    const loadEnd = nowMs();
    await sampleServed(nc, cluster.servers.A!.url, served);
    const cAfter = servedBy(served, "preprocess").preprocess?.C ?? 0;
    const leftOnB = net.pidsIn("B");
    log(`load stopped: ${records.length} requests; processes left in host B: ${leftOnB.length}`);

    // --- verdict ---------------------------------------------------------------------------------------------
    const retryEnd = hostLoss + LIVENESS_MS + 1000;
    const phaseDefs: [string, number, number][] = [
      ["warm", loadStart, natsKill],
      ["nats-b-killed", natsKill, hostLoss],
      ["host-b-lost", hostLoss, retryEnd],
      ["after", retryEnd, loadEnd],
    ];
    const phases = phaseDefs.map(([name, from, to]): PhaseSummary => {
      const rs = records.filter((r) => r.startMs >= from && r.startMs < to);
      const ok = rs.filter((r) => r.status === 200).length;
      const maxMs = rs.reduce((m, r) => Math.max(m, r.endMs - r.startMs), 0);
      return {
        name,
        start_ms: Math.round(from - loadStart),
        duration_ms: Math.round(to - from),
        requests: rs.length,
        ok,
        failed: rs.length - ok,
        max_ms: Math.round(maxMs),
      };
    });
    const failed = records.filter((r) => r.status !== 200);
    const failures: Record<string, number> = {};
    for (const r of failed)
      failures[`${r.status} ${r.code ?? ""}`.trim()] = (failures[`${r.status} ${r.code ?? ""}`.trim()] ?? 0) + 1;
    const violations: string[] = [];
    const inFlightAt =
      (t: number) =>
      (r: RequestRecord): boolean =>
        r.startMs <= t && r.endMs >= t;
    const outside = failed.filter((r) => !(inFlightAt(natsKill)(r) && r.status === 503 && r.code === "UNAVAILABLE"));
    if (outside.length) {
      violations.push(
        `${outside.length} failed request(s) beyond the bound (not a 503 UNAVAILABLE of a request in flight at the NATS kill): ${outside
          .slice(0, 5)
          .map(
            (r) =>
              `${r.status} ${r.code ?? ""} sent ${Math.round(r.startMs - natsKill)} ms after the NATS kill, ${Math.round(r.startMs - hostLoss)} ms after the host loss`,
          )
          .join("; ")}`,
      );
    }
    if (failed.length > inFlightAtKill)
      violations.push(`${failed.length} failed, more than the ${inFlightAtKill} in flight at the NATS kill`);
    if (!(warmServed.B! > 0) || !(warmServed.C! > 0))
      violations.push(`preprocess did not serve on both B and C before the faults: ${JSON.stringify(warmServed)}`);
    if (reconnectMs === null)
      violations.push(`B's processes did not reconnect to another server within ${RECONNECT_TIMEOUT_MS / 1000} s`);
    if (rejoinMs === null)
      violations.push(
        `B's preprocess replicas did not answer through the cluster again within ${RECONNECT_TIMEOUT_MS / 1000} s`,
      );
    const after = phases.find((p) => p.name === "after")!;
    if (after.ok === 0) violations.push("no request succeeded after host B was lost");
    if (cAfter <= cBefore)
      violations.push(`C's preprocess served nothing after host B was lost (${cBefore} -> ${cAfter})`);
    if (leftOnB.length) violations.push(`${leftOnB.length} process(es) still ran in host B after its loss`);

    const servedByNode = servedBy(served);
    const summary: ClusterScenarioSummary = {
      met_bound: violations.length === 0,
      requests: records.length,
      ok: records.length - failed.length,
      failed: failed.length,
      failures,
      failed_requests: failed.slice(0, 20).map((r) => ({
        status: r.status,
        code: r.code ?? null,
        sent_ms: Math.round(r.startMs - natsKill),
        answered_ms: Math.round(r.endMs - natsKill),
      })),
      per_host_served: servedByNode.preprocess ?? {},
      served_by_node: servedByNode,
      reconnect_ms: reconnectMs === null ? null : Math.round(reconnectMs * 10) / 10,
      reconnected_to: reconnectedTo,
      rejoin_ms: rejoinMs === null ? null : Math.round(rejoinMs),
      in_flight_at_nats_kill: inFlightAtKill,
      bound: {
        max_failed: inFlightAtKill,
        rule: "only requests in flight when B's nats-server died may fail, each once, as 503 UNAVAILABLE; none from B's host loss (lost attempts are retried once on C) nor at any other time",
      },
      after_loss: { requests: after.requests, ok: after.ok, served_by_c: cAfter - cBefore },
      phases,
      violations,
      run_id: net.runId,
      subnet: net.subnet,
      clients,
    };
    return summary;
  } finally {
    await load?.stop();
    await nc?.close().catch(() => {});
    await Promise.all([stopUp(net, ups.A), stopUp(net, ups.C), stopUp(net, ups.B, 0)]);
    await cluster?.stop();
    net.destroy();
  }
}
