/**
 * A NATS cluster over the hosts of a {@link HostNetwork}: one nats-server per host, listening on that host's
 * address on the ports of the manifests' servers (clients on 4222, routes on 6222, monitoring on 8222), each
 * routing to all the others, so that a client connected to any server reaches every subscriber and learns the
 * other servers' client URLs from the cluster's gossip (INFO `connect_urls`): nats.js adds them to its server
 * pool, which is how a client whose server dies reconnects to another one without being told.
 *
 * Limits are those of the embedded broker (ops/nats-server.ts): max_payload 16 MB, max_pending at least 64 MB. No
 * authorization: the cluster is reachable only inside the run's namespaces.
 *
 * Ownership: the servers are processes of the host network (its destroy() kills them whatever happens); stop()
 * stops them gracefully first. A server killed on purpose (`kill`) is not restarted: that is the fault under test.
 */
import type { ChildProcess } from "node:child_process";
import { MAX_PAYLOAD_BYTES } from "../../subjects/limits.ts";
import { createWriteStream, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NATS_CLIENT_PORT, NATS_CLUSTER_PORT, NATS_MONITOR_PORT } from "../../ops/manifests/index.ts";
import { findNatsServer, NATS_INSTALL_HINT } from "../../ops/nats-server.ts";
import type { HostNetwork } from "./netns.ts";

const START_TIMEOUT_MS = 15_000;

export interface ClusterServer {
  readonly host: string;
  readonly name: string;
  /** nats://<host address>:4222 */
  readonly url: string;
  /** http://<host address>:8222 (varz, routez, connz) */
  readonly monitorUrl: string;
  readonly process: ChildProcess;
  alive(): boolean;
  kill(signal?: NodeJS.Signals): void;
}

export interface NatsCluster {
  readonly name: string;
  readonly servers: Readonly<Record<string, ClusterServer>>;
  /** Resolves once every live server has a route to every other live one. */
  waitFormed(timeoutMs?: number): Promise<void>;
  /** SIGTERM to every live server, SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** A client connection as a server's /connz lists it. */
export interface ConnzEntry {
  cid: number;
  name?: string;
  ip: string;
  start: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function getJson<T>(url: string, timeoutMs = 1000): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

/** The config of one server of the cluster. */
export function clusterServerConfig(o: {
  serverName: string;
  clusterName: string;
  address: string;
  peers: readonly string[];
}): string {
  return [
    `server_name: "${o.serverName}"`,
    `listen: "${o.address}:${NATS_CLIENT_PORT}"`,
    `client_advertise: "${o.address}:${NATS_CLIENT_PORT}"`,
    `http: "${o.address}:${NATS_MONITOR_PORT}"`,
    `max_payload: ${MAX_PAYLOAD_BYTES}`,
    `max_pending: ${Math.max(64 * 1024 * 1024, MAX_PAYLOAD_BYTES * 4)}`,
    "cluster {",
    `  name: "${o.clusterName}"`,
    `  listen: "${o.address}:${NATS_CLUSTER_PORT}"`,
    `  advertise: "${o.address}:${NATS_CLUSTER_PORT}"`,
    `  routes: [${o.peers.map((p) => `"nats-route://${p}:${NATS_CLUSTER_PORT}"`).join(", ")}]`,
    "}",
    "",
  ].join("\n");
}

/** Starts one server per host of `net` (all of them, or `hosts`) and waits until each answers its monitor port. */
export async function startNatsCluster(
  net: HostNetwork,
  opts: { hosts?: readonly string[]; log?: (line: string) => void } = {},
): Promise<NatsCluster> {
  const bin = findNatsServer();
  if (!bin) throw new Error(NATS_INSTALL_HINT);
  const names = opts.hosts ?? Object.keys(net.hosts);
  const clusterName = `sg-${net.runId}`;
  const servers: Record<string, ClusterServer> = {};
  for (const host of names) {
    const h = net.hosts[host]!;
    const conf = join(net.dir, `nats-${h.name}.conf`);
    const serverName = `${clusterName}-${h.name}`;
    writeFileSync(
      conf,
      clusterServerConfig({
        serverName,
        clusterName,
        address: h.address,
        peers: names.filter((n) => n !== host).map((n) => net.hosts[n]!.address),
      }),
    );
    const logFile = createWriteStream(join(net.dir, `nats-${h.name}.log`));
    const c = net.spawnIn(host, bin, ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
    c.stderr!.pipe(logFile);
    const alive = (): boolean => c.exitCode === null && c.signalCode === null;
    servers[host] = {
      host,
      name: serverName,
      url: `nats://${h.address}:${NATS_CLIENT_PORT}`,
      monitorUrl: `http://${h.address}:${NATS_MONITOR_PORT}`,
      process: c,
      alive,
      kill: (signal = "SIGKILL") => {
        if (alive()) c.kill(signal);
      },
    };
  }
  const t0 = Date.now();
  for (const s of Object.values(servers)) {
    for (;;) {
      if (!s.alive())
        throw new Error(
          `nats-server of host ${s.host} exited (${s.process.exitCode ?? s.process.signalCode}); see ${join(net.dir, `nats-${s.host}.log`)}`,
        );
      try {
        await getJson(`${s.monitorUrl}/varz`, 500);
        break;
      } catch {
        if (Date.now() - t0 > START_TIMEOUT_MS)
          throw new Error(
            `nats-server of host ${s.host} did not answer on ${s.monitorUrl} in ${START_TIMEOUT_MS / 1000} s`,
          );
        await sleep(50);
      }
    }
  }
  opts.log?.(
    `NATS cluster ${clusterName}: ${Object.values(servers)
      .map((s) => `${s.host} ${s.url}`)
      .join(", ")}`,
  );

  const waitFormed = async (timeoutMs = START_TIMEOUT_MS): Promise<void> => {
    const start = Date.now();
    for (;;) {
      const live = Object.values(servers).filter((s) => s.alive());
      const routes = await Promise.all(
        live.map((s) =>
          getJson<{ num_routes: number }>(`${s.monitorUrl}/routez`).then(
            (r) => r.num_routes,
            () => -1,
          ),
        ),
      );
      if (routes.every((n) => n >= live.length - 1)) return;
      if (Date.now() - start > timeoutMs)
        throw new Error(`NATS cluster not formed after ${timeoutMs} ms (routes per server: ${routes.join(", ")})`);
      await sleep(100);
    }
  };

  const stop = async (graceMs = 2000): Promise<void> => {
    await Promise.all(
      Object.values(servers).map(async (s) => {
        if (!s.alive()) return;
        const exited = new Promise((r) => s.process.once("exit", r));
        s.kill("SIGTERM");
        const t = setTimeout(() => s.kill("SIGKILL"), graceMs);
        await exited;
        clearTimeout(t);
      }),
    );
  };
  return { name: clusterName, servers, waitFormed, stop };
}

/** The client connections a server has now (its /connz); [] when it does not answer. */
export async function connectionsOf(server: ClusterServer): Promise<ConnzEntry[]> {
  try {
    return (
      (await getJson<{ connections?: ConnzEntry[] }>(`${server.monitorUrl}/connz?limit=4096`, 1000)).connections ?? []
    );
  } catch {
    return [];
  }
}
