/**
 * The memory of every graph process during a soak: RSS (/proc/<pid>/status VmRSS) at each sample, the processes
 * found again each time (so a replaced replica shows up as one that appeared). Linux; elsewhere nothing is seen.
 */
import { readFileSync } from "node:fs";

export interface ProcessMemory {
  name: string;
  pid: number;
  startMiB: number;
  endMiB: number;
  maxMiB: number;
  /** (end - start) / start. */
  change: number;
  /** Still running at the end of the soak. */
  alive: boolean;
  /** First seen after the soak started (e.g. a replaced replica). */
  appeared: boolean;
  /** RSS (MiB) at each sample: [seconds from the start, MiB]. */
  samples: [number, number][];
}

export interface MemoryTracker {
  /** Samples every graph process now; `first` marks the processes seen as there from the start. */
  sample(atS: number, first?: boolean): Promise<void>;
  /** Every process sampled at least once, by name. */
  result(): ProcessMemory[];
}

/** A graph process's name: its replica id (SG_REPLICA_ID in its environment), else its command name. */
function processName(pid: number): string {
  try {
    const env = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    const id = env.find((e) => e.startsWith("SG_REPLICA_ID="));
    if (id) return id.slice("SG_REPLICA_ID=".length);
  } catch {
    // not ours to read, or gone
  }
  try {
    const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    if (comm === "node" || comm === "MainThread") {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (cmd.some((a) => a.endsWith("cli.ts")) && cmd.includes("up")) return "servegraph-up";
    }
    return comm;
  } catch {
    return `pid-${pid}`;
  }
}

function rssMiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

interface Tracked {
  name: string;
  pid: number;
  samples: [number, number][];
  appeared: boolean;
  alive: boolean;
}

export function createMemoryTracker(graphPids: () => Promise<number[]>): MemoryTracker {
  const byPid = new Map<number, Tracked>();
  return {
    async sample(atS, first = false) {
      const pids = new Set(await graphPids().catch(() => [] as number[]));
      for (const t of byPid.values()) if (!pids.has(t.pid)) t.alive = rssMiB(t.pid) !== undefined && t.alive;
      for (const pid of pids) {
        const mib = rssMiB(pid);
        let t = byPid.get(pid);
        if (mib === undefined) {
          if (t) t.alive = false;
          continue;
        }
        if (!t) byPid.set(pid, (t = { name: processName(pid), pid, samples: [], appeared: !first, alive: true }));
        t.samples.push([Math.round(atS * 10) / 10, Math.round(mib * 10) / 10]);
      }
    },
    result() {
      return [...byPid.values()]
        .filter((t) => t.samples.length > 0)
        .map((t) => {
          const start = t.samples[0]![1];
          const end = t.samples[t.samples.length - 1]![1];
          return {
            name: t.name,
            pid: t.pid,
            startMiB: start,
            endMiB: end,
            maxMiB: Math.max(...t.samples.map((s) => s[1])),
            change: start > 0 ? (end - start) / start : 0,
            alive: t.alive,
            appeared: t.appeared,
            samples: t.samples,
          };
        })
        .sort((a, b) => a.name.localeCompare(b.name));
    },
  };
}
