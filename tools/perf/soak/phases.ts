/**
 * The two phases of a soak. Capacity: a closed loop (bench's runLevel, autocannon) after an unrecorded warm-up,
 * POST /classify over the images in turn: images/s answered 2xx. Then the soak itself: the open loop at a share
 * of that, with every graph process's RSS sampled as it runs and the CPU of the whole machine measured over it.
 */
import { startCpuSample, type CpuUse } from "../bench/cpu.ts";
import { runLevel, type LoadLevelResult, type RequestBody } from "../bench/load.ts";
import type { BenchTarget } from "../bench/target.ts";
import { createMemoryTracker, type ProcessMemory } from "./memory.ts";
import { openLoop } from "./open-loop.ts";
import { windowLine } from "./report.ts";
import { summarizeOutcomes, windowEndingAt, type OutcomeSummary } from "./windows.ts";

const WARMUP_S = 3;
/** Other processes using more cores than this during the soak took CPU the capacity measurement may have had. */
const OTHER_CORES_WARNING = 0.3;

export interface PhaseOptions {
  target: BenchTarget;
  bodies: readonly RequestBody[];
  signal: AbortSignal;
  progress: (line: string) => void;
}

/** The closed-loop capacity at `concurrency` connections over `durationS`; throws when nothing was answered 2xx. */
export async function measureCapacity(
  o: PhaseOptions & { concurrency: number; durationS: number },
): Promise<LoadLevelResult> {
  const req = {
    url: o.target.ingressUrl,
    method: "POST" as const,
    path: "/classify",
    bodies: o.bodies,
    connections: o.concurrency,
    maxRequests: 10_000_000,
  };
  o.progress(`warm-up ${WARMUP_S} s, then capacity: closed loop at ${o.concurrency} connections for ${o.durationS} s`);
  await runLevel({ ...req, durationS: WARMUP_S }, o.signal);
  const cap = await runLevel({ ...req, durationS: o.durationS }, o.signal);
  if (cap.ok === 0)
    throw new Error(
      `no 2xx answer while measuring capacity (status codes ${JSON.stringify(cap.statusCodes)}, errors ${cap.errors})`,
    );
  return cap;
}

/** The open loop at `ratePerS` for `durationS` (less when `signal` aborts it), RSS every `sampleS`, windows of `windowS`. */
export async function soakAt(
  o: PhaseOptions & { ratePerS: number; durationS: number; sampleS: number; windowS: number; warnings: string[] },
): Promise<{
  soak: OutcomeSummary & { cpu: CpuUse | null };
  processes: ProcessMemory[];
}> {
  const memory = createMemoryTracker(o.target.graphPids);
  await memory.sample(0, true);
  const cpuSample = startCpuSample(await o.target.graphPids());
  const tSoak = performance.now();
  const outcomes = await openLoop({
    url: new URL(o.target.ingressUrl),
    bodies: o.bodies,
    ratePerS: o.ratePerS,
    durationS: o.durationS,
    signal: o.signal,
    sampleS: o.sampleS,
    onSample: (atS) => memory.sample(atS),
    windowS: o.windowS,
    onWindow: (endS, all) => {
      // answers in so far for the requests scheduled in the window that just ended
      const w = windowEndingAt(all, endS, o.windowS);
      if (w) o.progress(windowLine(w));
    },
  });
  const soakS = Math.min(o.durationS, (performance.now() - tSoak) / 1000);
  const cpu = cpuSample.stop();
  await memory.sample(soakS);
  if (cpu && cpu.otherCores > OTHER_CORES_WARNING) {
    o.warnings.push(
      `other processes used ${cpu.otherCores.toFixed(2)} cores during the soak: the graph had less CPU than the capacity measurement may have had`,
    );
  }
  const ranS = o.signal.aborted ? Math.max(...outcomes.map((x) => x.scheduledS), 0) : o.durationS;
  const summary = summarizeOutcomes(outcomes, ranS, o.windowS);
  if (summary.windows.length < 2)
    o.warnings.push("one window only: the p99 drift compares it with itself; use a --duration of at least two windows");
  return { soak: { ...summary, cpu }, processes: memory.result() };
}
