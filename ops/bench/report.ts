/**
 * A bench result: its JSON (the `version: 1` format of bench-results/latest.json), the table printed at
 * the end of a run, and the chart. Writes `<out>/<timestamp>.json`, `<out>/latest.json` and `<out>/latest.svg`.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ChainReport, ClassifyReport, LoadLevelResult, MeasuredLevel } from "./load.ts";
import type { MachineInfo } from "./machine.ts";
import type { StagesReport } from "./stages.ts";
import { renderChart, type ChartPanel } from "./svg.ts";
import type { TargetSource } from "./target.ts";

export interface BenchResult {
  version: 1;
  startedAt: string;
  finishedAt: string;
  command: string;
  commit: string | null;
  machine: MachineInfo;
  graph: {
    source: TargetSource;
    ingressUrl: string;
    replicas: Record<string, number>;
    tracing: boolean | null;
    loadGenerator: string;
  };
  settings: { durationS: number; warmupS: number; maxRequests: number; concurrency: number[] };
  chain: ChainReport | null;
  classify: ClassifyReport | null;
  stages: StagesReport | null;
  warnings: string[];
}

/** Three decimals are plenty for ms and rates, and keep the file small. Infinity (a last bucket's max) becomes null. */
export function toJson(r: BenchResult): string {
  return JSON.stringify(r, (_k, v: unknown) => (typeof v === "number" && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v), 2) + "\n";
}

/** Writes the result files into `outDir` (created if needed); returns the JSON and the timestamped file's name. */
export function writeResult(outDir: string, r: BenchResult): { json: string; file: string } {
  mkdirSync(outDir, { recursive: true });
  const json = toJson(r);
  const file = `${r.startedAt.replace(/[:.]/g, "-")}.json`;
  writeFileSync(join(outDir, file), json);
  writeFileSync(join(outDir, "latest.json"), json);
  writeFileSync(join(outDir, "latest.svg"), chartOf(r));
  return { json, file };
}

const f1 = (v: number | null | undefined): string => (v === null || v === undefined || Number.isNaN(v) ? "-" : v.toFixed(1));
const f2 = (v: number | null | undefined): string => (v === null || v === undefined || Number.isNaN(v) ? "-" : v.toFixed(2));
const pct = (v: number | null | undefined): string => (v === null || v === undefined ? "-" : `${(v * 100).toFixed(0)}%`);

function levelRow(l: MeasuredLevel): string {
  return `${String(l.concurrency).padStart(6)}${f1(l.rps).padStart(10)}${f2(l.latencyMs?.p50).padStart(9)}${f2(l.latencyMs?.p90).padStart(9)}${f2(l.latencyMs?.p99).padStart(9)}${String(l.errors).padStart(8)}${String(l.non2xx).padStart(9)}${f2(l.cpu?.otherCores).padStart(11)}`;
}
const LEVEL_HEADER = `${"conc".padStart(6)}${"rate/s".padStart(10)}${"p50 ms".padStart(9)}${"p90 ms".padStart(9)}${"p99 ms".padStart(9)}${"errors".padStart(8)}${"non-2xx".padStart(9)}${"other cpu".padStart(11)}`;

export function formatTable(r: BenchResult): string {
  const m = r.machine;
  const out: string[] = [
    "",
    `servegraph bench  ${r.startedAt}${r.commit ? `  (commit ${r.commit})` : ""}`,
    `machine: ${m.cpuModel}, ${m.logicalCores} logical cores, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}${m.gpu ? `, GPU ${m.gpu}` : ""}`,
    `before the run other processes used ${m.busyCoresBefore === null ? "?" : m.busyCoresBefore.toFixed(2)} cores (load average ${m.loadAvg1m.start.toFixed(2)} at start, ${m.loadAvg1m.end.toFixed(2)} at end)`,
    `load generator: ${r.graph.loadGenerator}`,
    `graph: ${r.graph.source} at ${r.graph.ingressUrl}; replicas ${Object.entries(r.graph.replicas).map(([k, v]) => `${k}=${v}`).join(" ")}; tracing ${r.graph.tracing === null ? "unknown" : r.graph.tracing ? "on" : "off"}`,
    `each level: ${r.settings.durationS} s or ${r.settings.maxRequests} answers, closed loop, after a ${r.settings.warmupS} s warm-up; latency of 2xx answers;`,
    `  "other cpu" = cores' worth of CPU used meanwhile by processes outside the graph and the bench`,
  ];
  if (r.chain) {
    const g = r.chain.goals;
    out.push("", `chain  ${r.chain.route}  (rate = req/s)`, LEVEL_HEADER, ...r.chain.levels.map(levelRow));
    if (g.rpsAtC16 !== null) out.push(`  goal >= ${g.minRpsAtC16} req/s at C=16 (2x the seed's ${g.seedRps}): ${g.rpsMet ? "met" : "MISSED"} (${f1(g.rpsAtC16)})`);
    if (g.p50MsAtC1 !== null) out.push(`  goal p50 < ${g.maxP50MsAtC1} ms at C=1: ${g.p50Met ? "met" : "MISSED"} (${f2(g.p50MsAtC1)} ms)`);
  }
  if (r.classify) {
    const c = r.classify;
    out.push("", `classify  ${c.route}  (${c.images.length} images from ${c.imagesDir}; rate = images/s)`, `${LEVEL_HEADER}  mean batch  of limit  batch sizes (batches)`);
    for (const l of c.levels) {
      const hist = l.batches?.histogram.filter((b) => b.count > 0).map((b) => `${b.range}:${b.count}`).join(" ") ?? "";
      out.push(`${levelRow(l)}${f1(l.batches?.meanSize).padStart(12)}${pct(l.fractionOfLimit).padStart(10)}  ${hist || "-"}`);
    }
  }
  if (r.stages) {
    const s = r.stages;
    out.push("", `stages alone (${s.when})`);
    if (s.skipped) out.push(`  skipped: ${s.skipped}`);
    if (s.preprocess) out.push(`  preprocess (${s.preprocess.mode}, ${s.preprocess.inFlight} in flight): ${f1(s.preprocess.imagesPerS)} images/s over ${s.preprocess.images} images`);
    if (s.model) {
      out.push(`  model (${s.model.executionProvider}, ${s.model.intraOpNumThreads} intra-op threads, spinning ${s.model.allowSpinning ? "on" : "off"}): ${s.model.batches.map((b) => `batch ${b.batchSize}: ${f1(b.medianMs)} ms (${f1(b.imagesPerS)}/s)`).join(", ")}`);
    }
    if (s.cpu) out.push(`  meanwhile other processes used ${f2(s.cpu.otherCores)} cores`);
    if (s.limitImagesPerS !== null) {
      out.push(`  limit for the best level's batch mix: ${f1(s.limitImagesPerS)} images/s = ${s.limitRule} (model ${f1(s.modelImagesPerS)}/s)`);
      out.push(`  best end-to-end: ${pct(s.bestFractionOfLimit)} of that limit`);
    }
  }
  for (const w of r.warnings) out.push(`warning: ${w}`);
  out.push("");
  return out.join("\n");
}

export function chartOf(r: BenchResult): string {
  const panels: ChartPanel[] = [];
  const lv = (l: LoadLevelResult) => ({ concurrency: l.concurrency, rps: l.rps, p50Ms: l.latencyMs?.p50 ?? null, p99Ms: l.latencyMs?.p99 ?? null });
  if (r.chain) {
    panels.push({
      title: `chain: ${r.chain.route}`, rateUnit: "req/s", levels: r.chain.levels.map(lv),
      reference: { value: r.chain.goals.minRpsAtC16, label: `goal at C=16: ${r.chain.goals.minRpsAtC16} req/s` },
      note: "ingress -> greeter-proxy -> greeter over NATS",
    });
  }
  if (r.classify) {
    const limit = r.stages?.limitImagesPerS ?? null;
    panels.push({
      title: `classify: ${r.classify.route}`, rateUnit: "images/s", levels: r.classify.levels.map(lv),
      ...(limit !== null ? { reference: { value: limit, label: `limit from the stages alone: ${Math.round(limit)}/s` } } : {}),
      note: `${r.classify.images.length} images; mean batch ${r.classify.levels.map((l) => f1(l.batches?.meanSize)).join(" / ")}`,
    });
  }
  const m = r.machine;
  return renderChart({
    title: "servegraph bench: throughput and latency vs concurrency",
    subtitle: `${r.startedAt.slice(0, 16).replace("T", " ")} UTC; ${m.cpuModel}, ${m.logicalCores} cores${m.gpu ? `, ${m.gpu}` : ""}; Node ${m.node}; load generator on the same machine`,
    panels,
  });
}
