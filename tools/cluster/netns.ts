/**
 * Hosts on one machine: Linux network namespaces wired to one bridge, so that a multi-host graph (one NATS server
 * and one `servegraph up` per host) runs for real, with real TCP between hosts and real host loss, on a laptop or CI.
 *
 * Shape of a run (id: 6 hex digits, names carry it): one namespace per host `sg-<id>-<h>` (loopback up, `eth0` at
 * `<subnet>.<n>`), a switch namespace `sg-<id>-sw` holding the bridge, and one veth from the calling (root)
 * namespace into that bridge, `sg<id>` at `<subnet>.254`, so the caller reaches every host (HTTP, NATS) and nothing
 * else changes in its namespace. The /24 is a 10.x.y.0/24 that no route or address of the root namespace covers.
 * Nothing is routed or forwarded: the only traffic is to loopback and between these namespaces.
 *
 * Processes: {@link HostNetwork.spawnIn} runs a command inside a host (`ip netns exec`), in a process group of its
 * own (the group is the unit a host loss kills), with `SG_CLUSTER_RUN=<id>` in its environment; children inherit
 * it, so every process of a run can be found in /proc whatever namespace it ended up in.
 *
 * Ownership and clean-up: the network owns its namespaces, its link, its temp dir and every process started in
 * its hosts. `destroy()` is synchronous and idempotent (process groups and every pid of each namespace SIGKILLed,
 * namespaces and link deleted, temp dir removed); it also runs on process exit and on SIGINT / SIGTERM (then the
 * signal's default action follows unless someone else listens for it). {@link cleanupLeftovers} removes what
 * earlier runs left behind (a SIGKILLed caller), found by name and by the environment marker.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The environment marker every process of a run carries. */
export const RUN_ENV = "SG_CLUSTER_RUN";
const NAMESPACE_RE = /^sg-[0-9a-f]{6}-[a-z0-9]{1,8}$/;
const LINK_RE = /^sg[0-9a-f]{6}$/;
const DIR_RE = /^sg-cluster-[0-9a-f]{6}-/;
const ROOT_HOST_OCTET = 254;

export interface Host {
  /** The name given (also what `servegraph up --host` reports). */
  readonly name: string;
  /** Its network namespace. */
  readonly ns: string;
  /** Its address on the run's /24. */
  readonly address: string;
}

export interface HostNetwork {
  readonly runId: string;
  /** e.g. 10.213.7.0/24 */
  readonly subnet: string;
  /** The calling namespace's address on the bridge. */
  readonly rootAddress: string;
  readonly hosts: Readonly<Record<string, Host>>;
  /** The run's temp dir (configs, logs); removed by destroy(). */
  readonly dir: string;
  /** Runs `cmd args` inside `host`, detached (its own process group), with the run marker in its env. */
  spawnIn(host: string, cmd: string, args: readonly string[], opts?: SpawnOptions): ChildProcess;
  /** SIGKILL (or `signal`) to the process group of a child started by spawnIn. */
  killGroup(child: ChildProcess, signal?: NodeJS.Signals): void;
  /** Pids running in the host's namespace now. */
  pidsIn(host: string): number[];
  /** Kills every process of the run, deletes the namespaces and the link, removes the dir. Sync, idempotent. */
  destroy(): void;
  [Symbol.dispose](): void;
}

export interface Leftovers {
  namespaces: string[];
  links: string[];
  dirs: string[];
  pids: number[];
}

/** Raised when this machine cannot make namespaces (not root, no iproute2, no permission). */
export class NetnsUnavailableError extends Error {
  override readonly name = "NetnsUnavailableError";
}

export function findIp(): string | undefined {
  for (const p of ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]) if (existsSync(p)) return p;
  return undefined;
}

function ipOrThrow(): string {
  const ip = findIp();
  if (!ip)
    throw new NetnsUnavailableError(
      "iproute2 is not installed (`ip` not found): on Debian/Ubuntu `apt-get install -y iproute2`",
    );
  return ip;
}

/** Runs `ip args`; throws with its stderr unless `tolerate` says the failure is fine. */
function ip(args: readonly string[], tolerate = false): string {
  const r = spawnSync(ipOrThrow(), args, { encoding: "utf8", timeout: 10_000 });
  if (r.status !== 0 && !tolerate)
    throw new Error(`ip ${args.join(" ")}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`);
  return r.stdout ?? "";
}

/** Why this machine cannot run hosts in namespaces, or undefined when it can (checked by making one). */
export function netnsUnavailableReason(): string | undefined {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "network namespaces need root (run as root, e.g. `sudo npm run demo:cluster`)";
  if (!findIp()) return "iproute2 is not installed (`ip` not found): on Debian/Ubuntu `apt-get install -y iproute2`";
  const probe = `sg-${randomBytes(3).toString("hex")}-probe`;
  const r = spawnSync(findIp()!, ["netns", "add", probe], { encoding: "utf8", timeout: 10_000 });
  if (r.status !== 0)
    return `cannot create a network namespace (\`ip netns add\`: ${(r.stderr || "").trim() || `exit ${r.status}`})`;
  spawnSync(findIp()!, ["netns", "del", probe], { timeout: 10_000 });
  return undefined;
}

/** 10.0.0.0/8 prefixes as [network, length] of every route and address of this namespace. */
function usedPrefixes(): [number, number][] {
  const out: [number, number][] = [];
  const toInt = (a: string): number => a.split(".").reduce((n, o) => n * 256 + Number(o), 0);
  try {
    for (const r of JSON.parse(ip(["-j", "-4", "route", "show", "table", "all"])) as { dst?: string }[]) {
      if (!r.dst || r.dst === "default") continue;
      const [a, len] = r.dst.split("/");
      if (a && /^\d+\.\d+\.\d+\.\d+$/.test(a)) out.push([toInt(a), len === undefined ? 32 : Number(len)]);
    }
    for (const l of JSON.parse(ip(["-j", "-4", "addr"])) as {
      addr_info?: { local?: string; prefixlen?: number }[];
    }[]) {
      for (const a of l.addr_info ?? []) if (a.local) out.push([toInt(a.local), a.prefixlen ?? 32]);
    }
  } catch {
    // no JSON output: fall back to a random pick
  }
  return out;
}

/** A 10.x.y.0/24 (x in 200..254) that overlaps no route or address here. */
function pickSubnet(): string {
  const used = usedPrefixes();
  const overlaps = (net: number): boolean =>
    used.some(([n, len]) => {
      const common = Math.min(len, 24);
      const mask = common === 0 ? 0 : (0xffffffff << (32 - common)) >>> 0;
      return (n & mask) >>> 0 === (net & mask) >>> 0;
    });
  for (let i = 0; i < 200; i++) {
    const x = 200 + Math.floor(Math.random() * 55);
    const y = Math.floor(Math.random() * 256);
    const net = ((10 << 24) | (x << 16) | (y << 8)) >>> 0;
    if (!overlaps(net)) return `10.${x}.${y}.0/24`;
  }
  throw new Error("no free 10.x.y.0/24 for the run's hosts");
}

const nsSuffix = (name: string): string =>
  name
    .toLowerCase()
    .replace(/[^a-z0-9]/g, "")
    .slice(0, 8) || "h";

/**
 * Creates one namespace per name in `hosts` (at most 200), bridged together and to the calling namespace.
 * Whatever was made is removed again when a step fails.
 */
export function createHostNetwork(opts: { hosts: readonly string[]; log?: (line: string) => void }): HostNetwork {
  const reason = netnsUnavailableReason();
  if (reason) throw new NetnsUnavailableError(reason);
  const runId = randomBytes(3).toString("hex");
  const sw = `sg-${runId}-sw`;
  const link = `sg${runId}`;
  const dir = mkdtempSync(join(tmpdir(), `sg-cluster-${runId}-`));
  const subnet = pickSubnet();
  const base = subnet.split(".").slice(0, 3).join(".");
  const hosts: Record<string, Host> = {};
  opts.hosts.forEach((name, i) => {
    hosts[name] = { name, ns: `sg-${runId}-${nsSuffix(name)}`, address: `${base}.${i + 1}` };
  });
  if (
    new Set(Object.values(hosts).map((h) => h.ns)).size !== opts.hosts.length ||
    Object.values(hosts).some((h) => h.ns === sw)
  ) {
    throw new Error(`host names must differ in their first 8 letters and digits: ${opts.hosts.join(", ")}`);
  }
  const namespaces = [sw, ...Object.values(hosts).map((h) => h.ns)];
  const children = new Set<ChildProcess>();
  let destroyed = false;

  const killPids = (pids: Iterable<number>): void => {
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
  };
  const nsPids = (ns: string): number[] =>
    ip(["netns", "pids", ns], true)
      .split("\n")
      .map(Number)
      .filter((n) => Number.isInteger(n) && n > 0);

  const destroy = (): void => {
    if (destroyed) return;
    destroyed = true;
    process.removeListener("exit", destroy);
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
    for (const c of children) {
      if (c.pid && c.exitCode === null && c.signalCode === null) {
        try {
          process.kill(-c.pid, "SIGKILL");
        } catch {
          /* gone */
        }
      }
    }
    // Whatever still runs in a namespace (a process that left its group) or carries the marker.
    for (let i = 0; i < 3; i++) {
      const left = [...namespaces.flatMap(nsPids), ...pidsOfRun(runId)];
      if (left.length === 0) break;
      killPids(left);
      spawnSync("sleep", ["0.1"]);
    }
    for (const ns of namespaces) ip(["netns", "del", ns], true);
    ip(["link", "del", link], true);
    rmSync(dir, { recursive: true, force: true });
    opts.log?.(`removed hosts ${Object.keys(hosts).join(", ")} (namespaces sg-${runId}-*, link ${link}, ${dir})`);
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    destroy();
    // Nobody else handles it: the signal's default action (the process ends).
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  };
  process.on("exit", destroy);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    for (const ns of namespaces) {
      ip(["netns", "add", ns]);
      ip(["-n", ns, "link", "set", "lo", "up"]);
    }
    ip(["-n", sw, "link", "add", "br0", "type", "bridge"]);
    ip(["-n", sw, "link", "set", "br0", "up"]);
    for (const h of Object.values(hosts)) {
      const port = `p-${nsSuffix(h.name)}`;
      ip(["-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.ns]);
      ip(["-n", sw, "link", "set", port, "master", "br0", "up"]);
      ip(["-n", h.ns, "addr", "add", `${h.address}/24`, "dev", "eth0"]);
      ip(["-n", h.ns, "link", "set", "eth0", "up"]);
    }
    ip(["link", "add", link, "type", "veth", "peer", "name", "p-root", "netns", sw]);
    ip(["-n", sw, "link", "set", "p-root", "master", "br0", "up"]);
    ip(["addr", "add", `${base}.${ROOT_HOST_OCTET}/24`, "dev", link]);
    ip(["link", "set", link, "up"]);
  } catch (err) {
    destroy();
    throw err;
  }
  opts.log?.(
    `hosts ${Object.values(hosts)
      .map((h) => `${h.name}=${h.address} (netns ${h.ns})`)
      .join(", ")}; this namespace ${base}.${ROOT_HOST_OCTET} on ${link}`,
  );

  const hostOf = (name: string): Host => {
    const h = hosts[name];
    if (!h) throw new Error(`no host ${name} (hosts: ${Object.keys(hosts).join(", ")})`);
    return h;
  };
  return {
    runId,
    subnet,
    rootAddress: `${base}.${ROOT_HOST_OCTET}`,
    hosts,
    dir,
    spawnIn(host, cmd, args, so = {}) {
      if (destroyed) throw new Error("the host network was destroyed");
      const c = spawn(ipOrThrow(), ["netns", "exec", hostOf(host).ns, cmd, ...args], {
        ...so,
        detached: true,
        env: { ...(so.env ?? process.env), [RUN_ENV]: runId },
      });
      c.on("error", () => {}); // a failed spawn also exits; the caller sees the exit
      children.add(c);
      c.once("exit", () => children.delete(c));
      return c;
    },
    killGroup(child, signal = "SIGKILL") {
      if (!child.pid) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        /* gone */
      }
    },
    pidsIn: (host) => nsPids(hostOf(host).ns),
    destroy,
    [Symbol.dispose]: destroy,
  };
}

/** Pids (not zombies) whose environment carries the run marker: of `runId`, or of any run. */
export function pidsOfRun(runId?: string): number[] {
  const want = runId ? `${RUN_ENV}=${runId}` : `${RUN_ENV}=`;
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      if (/\) Z /.test(stat)) continue;
      const env = readFileSync(`/proc/${e}/environ`, "latin1").split("\0");
      if (env.some((kv) => (runId ? kv === want : kv.startsWith(want)))) out.push(Number(e));
    } catch {
      // exited meanwhile, or not readable
    }
  }
  return out;
}

/** What runs have left on this machine: of `runId`, or of any run. */
export function findLeftovers(runId?: string): Leftovers {
  const mine = (name: string): boolean => (runId ? name.includes(runId) : true);
  const namespaces = findIp()
    ? ip(["netns", "list"], true)
        .split("\n")
        .map((l) => l.split(" ")[0]!)
        .filter((n) => NAMESPACE_RE.test(n) && mine(n))
    : [];
  let links: string[] = [];
  try {
    links = (JSON.parse(ip(["-j", "link"], true) || "[]") as { ifname: string }[])
      .map((l) => l.ifname)
      .filter((n) => LINK_RE.test(n) && mine(n));
  } catch {
    // no iproute2 JSON
  }
  let dirs: string[] = [];
  try {
    dirs = readdirSync(tmpdir())
      .filter((d) => DIR_RE.test(d) && mine(d))
      .map((d) => join(tmpdir(), d));
  } catch {
    /* none */
  }
  return { namespaces, links, dirs, pids: pidsOfRun(runId) };
}

/** Removes what earlier runs (or the run `runId`) left: processes, namespaces, links, temp dirs; returns what it found. */
export function cleanupLeftovers(runId?: string): Leftovers {
  const found = findLeftovers(runId);
  const pids = new Set(found.pids);
  for (const ns of found.namespaces)
    for (const p of ip(["netns", "pids", ns], true).split("\n").map(Number)) if (p > 0) pids.add(p);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  for (const ns of found.namespaces) ip(["netns", "del", ns], true);
  for (const l of found.links) ip(["link", "del", l], true);
  for (const d of found.dirs) rmSync(d, { recursive: true, force: true });
  return { ...found, pids: [...pids] };
}
