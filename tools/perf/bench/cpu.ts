/**
 * Where the machine's CPU went during a load level (Linux /proc): all of it, the processes under test plus
 * the bench itself (the load generator), and the rest, i.e. other work on the machine that skews the
 * numbers. Elsewhere every reading is null.
 */
import { existsSync, readFileSync } from "node:fs";
import { cpus } from "node:os";

/** Kernel clock ticks per second in /proc (USER_HZ, 100 on every mainstream Linux build). */
const TICKS_PER_S = 100;

export interface CpuUse {
  /** Cores' worth of CPU used on the whole machine (busy time / wall time). */
  machineCores: number;
  /** Of which: the graph's processes and the bench process. */
  ownCores: number;
  /** The rest: processes outside the graph and the bench. */
  otherCores: number;
}

function machineTicks(): { busy: number; total: number } {
  const v = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = v[3]! + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/**
 * CPU time of `pid` and of its children that have exited and been waited for: the stage measurements run
 * in short-lived child processes of the bench, whose time would otherwise count as other processes'.
 */
function processTicks(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    // fields after the parenthesised command name; utime, stime, cutime and cstime are the 14th to 17th overall
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  } catch {
    return 0; // exited
  }
}

/** Cores' worth of CPU used on the whole machine during `ms`; null where there is no /proc/stat. */
export async function busyCores(ms: number): Promise<number | null> {
  try {
    const a = machineTicks();
    await new Promise((r) => setTimeout(r, ms));
    const b = machineTicks();
    const dt = b.total - a.total;
    return dt > 0 ? Math.round(((b.busy - a.busy) / dt) * cpus().length * 100) / 100 : null;
  } catch {
    return null;
  }
}

/** `pid` and its descendants, from /proc/<pid>/task/<tid>/children (empty where the kernel lacks it). */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number): void => {
    let tids: string[] = [];
    try {
      tids = readFileSync(`/proc/${p}/task/${p}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    } catch {
      return;
    }
    for (const c of tids.map(Number)) {
      out.push(c);
      visit(c);
    }
  };
  visit(pid);
  return out;
}

/**
 * Starts a count of the CPU time `pids` use (user + system, every thread, and their waited-for children);
 * `stop()` gives it in seconds, null where there is no /proc. For a server's own cost per request: its CPU
 * seconds over the answers it gave.
 */
export function startProcessCpu(pids: readonly number[]): { stop(): number | null } {
  const ids = [...new Set(pids)].filter((p) => p > 0);
  if (ids.length === 0 || !existsSync(`/proc/${ids[0]}/stat`)) return { stop: () => null };
  const t0 = ids.reduce((a, p) => a + processTicks(p), 0);
  return { stop: () => (ids.reduce((a, p) => a + processTicks(p), 0) - t0) / TICKS_PER_S };
}

/** Starts a measurement over `pids` (the bench's own pid is always included); `stop()` reads it. */
export function startCpuSample(pids: readonly number[]): { stop(): CpuUse | null } {
  const own = [...new Set([process.pid, ...pids])];
  let m0: { busy: number; total: number };
  let p0: number;
  try {
    m0 = machineTicks();
    p0 = own.reduce((a, p) => a + processTicks(p), 0);
  } catch {
    return { stop: () => null };
  }
  const t0 = performance.now();
  return {
    stop() {
      try {
        const m1 = machineTicks();
        const p1 = own.reduce((a, p) => a + processTicks(p), 0);
        const wallS = (performance.now() - t0) / 1000;
        const ncpu = cpus().length;
        // /proc/stat sums every CPU: busy share of the total, times the CPU count
        const machineCores = m1.total > m0.total ? ((m1.busy - m0.busy) / (m1.total - m0.total)) * ncpu : 0;
        const ownCores = Math.min(machineCores, (p1 - p0) / TICKS_PER_S / wallS);
        const r = (x: number): number => Math.round(x * 100) / 100;
        return {
          machineCores: r(machineCores),
          ownCores: r(ownCores),
          otherCores: r(Math.max(0, machineCores - ownCores)),
        };
      } catch {
        return null;
      }
    },
  };
}
