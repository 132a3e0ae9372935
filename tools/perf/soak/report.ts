/**
 * A soak result: its JSON (bench-results/soak-latest.json, `version: 1`) and the table printed at the end of a run
 * (windows, p99 drift, CPU, errors, every process's RSS at the start and the end).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { CpuUse } from "../bench/cpu.ts";
import type { LatencySummary } from "../bench/load.ts";
import type { MachineInfo } from "../bench/machine.ts";
import { resultJson } from "../bench/shared-cli.ts";
import type { TargetSource } from "../bench/target.ts";
import type { ProcessMemory } from "./memory.ts";
import type { OutcomeSummary, SoakWindow } from "./windows.ts";

export interface SoakResult {
  version: 1;
  startedAt: string;
  finishedAt: string;
  command: string;
  commit: string | null;
  machine: MachineInfo;
  graph: { source: TargetSource; ingressUrl: string; replicas: Record<string, number> };
  settings: {
    durationS: number;
    load: number;
    capacityDurationS: number;
    concurrency: number;
    windowS: number;
    sampleS: number;
    images: string[];
    maxInFlight: number;
  };
  capacity: { imagesPerS: number; latencyMs: LatencySummary | null; errors: number; non2xx: number };
  offeredPerS: number;
  soak: OutcomeSummary & {
    /** CPU during the soak (Linux): the whole machine, the graph + this command, and other processes. */
    cpu: CpuUse | null;
  };
  processes: ProcessMemory[];
  healthy: boolean;
  problems: string[];
  warnings: string[];
}

const f1 = (v: number | null | undefined): string =>
  v === null || v === undefined || Number.isNaN(v) ? "-" : v.toFixed(1);
const sign = (v: number | null): string => (v === null ? "-" : `${v >= 0 ? "+" : ""}${(v * 100).toFixed(1)}%`);

const windowLabel = (w: SoakWindow): string => `${f1(w.startS)}-${f1(w.startS + w.durationS)} s`;

/** The progress line of a window as it ends. */
export function windowLine(w: SoakWindow): string {
  return `${windowLabel(w)}: ${w.sent} answered, ${w.errors} errors, p50 ${f1(w.latencyMs?.p50)} ms, p99 ${f1(w.latencyMs?.p99)} ms`;
}

export function formatSoak(r: SoakResult): string {
  const s = r.soak;
  const lines = [
    `servegraph soak  POST /classify at ${r.graph.ingressUrl} (${r.graph.source})  ${r.startedAt}`,
    `capacity: ${f1(r.capacity.imagesPerS)} images/s (closed loop, ${r.settings.concurrency} connections, ${r.settings.capacityDurationS} s)` +
      ` -> offered ${f1(r.offeredPerS)}/s (${Math.round(r.settings.load * 100)}%), open loop for ${r.settings.durationS} s`,
    "",
    `${"WINDOW".padEnd(14)}${"SENT".padStart(7)}${"OK".padStart(7)}${"ERRORS".padStart(8)}${"RATE/s".padStart(9)}${"P50 ms".padStart(9)}${"P99 ms".padStart(9)}`,
    ...s.windows.map(
      (w) =>
        `${windowLabel(w).padEnd(14)}${String(w.sent).padStart(7)}${String(w.ok).padStart(7)}${String(w.errors).padStart(8)}${f1(w.rps).padStart(9)}${f1(w.latencyMs?.p50).padStart(9)}${f1(w.latencyMs?.p99).padStart(9)}`,
    ),
    `${"all".padEnd(14)}${String(s.sent).padStart(7)}${String(s.ok).padStart(7)}${String(s.errors.total).padStart(8)}${f1(s.achievedPerS).padStart(9)}${f1(s.latencyMs?.p50).padStart(9)}${f1(s.latencyMs?.p99).padStart(9)}`,
    "",
    `p99 drift (first window -> last): ${f1(s.p99Drift.firstMs)} -> ${f1(s.p99Drift.lastMs)} ms (${sign(s.p99Drift.change)})`,
    `cpu during the soak: ${s.cpu ? `${f1(s.cpu.machineCores)} cores busy, ${f1(s.cpu.ownCores)} graph + soak, ${f1(s.cpu.otherCores)} other processes` : "-"}`,
    `errors: ${s.errors.total} of ${s.sent} (${(s.errors.rate * 100).toFixed(2)}%)${
      Object.keys(s.errors.byKind).length
        ? `: ${Object.entries(s.errors.byKind)
            .map(([k, n]) => `${k} ${n}`)
            .join(", ")}`
        : ""
    }`,
    "",
    `${"PROCESS".padEnd(18)}${"PID".padStart(8)}${"START MiB".padStart(11)}${"END MiB".padStart(10)}${"MAX MiB".padStart(10)}${"CHANGE".padStart(9)}  NOTE`,
    ...r.processes.map(
      (p) =>
        `${p.name.padEnd(18)}${String(p.pid).padStart(8)}${f1(p.startMiB).padStart(11)}${f1(p.endMiB).padStart(10)}${f1(p.maxMiB).padStart(10)}${sign(p.change).padStart(9)}  ${[!p.alive ? "exited" : "", p.appeared ? "appeared during the soak" : ""].filter(Boolean).join(", ")}`,
    ),
  ];
  if (r.problems.length) lines.push("", ...r.problems.map((p) => `problem: ${p}`));
  if (r.warnings.length) lines.push("", ...r.warnings.map((w) => `warning: ${w}`));
  return lines.join("\n") + "\n";
}

/** Writes `<outDir>/soak-latest.json` (the directory created if needed); returns the JSON and the file's path. */
export function writeSoak(outDir: string, r: SoakResult): { json: string; file: string } {
  mkdirSync(outDir, { recursive: true });
  const json = resultJson(r);
  const file = join(outDir, "soak-latest.json");
  writeFileSync(file, json);
  return { json, file };
}
