/** The machine a bench ran on, and the commit it ran: recorded with every result so numbers can be compared. */
import { execFileSync } from "node:child_process";
import { arch, availableParallelism, cpus, loadavg, platform, release, totalmem } from "node:os";

export interface MachineInfo {
  cpuModel: string;
  logicalCores: number;
  availableParallelism: number;
  memoryGiB: number;
  node: string;
  os: string;
  loadAvg1m: { start: number; end: number };
  /** Cores' worth of CPU that other processes used during 1 s before the bench started anything (Linux). */
  busyCoresBefore: number | null;
  gpu?: string;
}

/** What the machine is; `loadAvg1m.end` and `busyCoresBefore` are filled in later. */
export function machineInfo(): MachineInfo {
  const c = cpus();
  return {
    cpuModel: c[0]?.model.trim() ?? "unknown",
    logicalCores: c.length,
    availableParallelism: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    os: `${platform()} ${release()} ${arch()}`,
    loadAvg1m: { start: loadavg()[0]!, end: NaN },
    busyCoresBefore: null,
  };
}

export function gitCommit(repoRoot: string): string | null {
  try {
    return (
      execFileSync("git", ["rev-parse", "--short", "HEAD"], {
        cwd: repoRoot,
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
        timeout: 2000,
      }).trim() || null
    );
  } catch {
    return null;
  }
}

/** Name and memory of every NVIDIA GPU (nvidia-smi); undefined where there is none. */
export function gpuName(): string | undefined {
  try {
    return (
      execFileSync("nvidia-smi", ["--query-gpu=name,memory.total", "--format=csv,noheader"], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
        timeout: 5000,
      })
        .trim()
        .split("\n")
        .join("; ") || undefined
    );
  } catch {
    return undefined;
  }
}
