/**
 * A bench result: its JSON (the `version: 2` format of bench-results/latest.json), the table printed at
 * the end of a run, and the chart. Writes `<out>/<timestamp>.json`, `<out>/latest.json` and `<out>/latest.svg`.
 * Version 2 added `infer` (the node's own ceiling and the bare wire beside it) and, for classify, the
 * one-process composition and the comparison with it (the headline; the stage limit stays as information).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Comparison } from "./compare.ts";
import { inferRows, type InferLevel, type InferReport } from "./infer-target.ts";
import type { ChainReport, ClassifyReport, LoadLevelResult, MeasuredLevel, PassedLevel } from "./load.ts";
import type { MachineInfo } from "./machine.ts";
import type { StagesReport } from "./stages.ts";
import { renderChart, type ChartPanel } from "./svg.ts";
import { resultJson } from "./shared-cli.ts";
import type { TargetSource } from "./target.ts";

export interface BenchResult {
  version: 2;
  startedAt: string;
  finishedAt: string;
  command: string;
  commit: string | null;
  machine: MachineInfo;
  graph: {
    source: TargetSource;
    /** null for `--target infer` alone: its graph has no ingress. */
    ingressUrl: string | null;
    replicas: Record<string, number>;
    tracing: boolean | null;
    loadGenerator: string;
  };
  settings: { durationS: number; warmupS: number; maxRequests: number; concurrency: number[] };
  chain: ChainReport | null;
  classify: ClassifyReport | null;
  stages: StagesReport | null;
  infer: InferReport | null;
  warnings: string[];
}

/** The result as written (shared-cli.ts's `resultJson`: three decimals; Infinity, a last bucket's max, becomes null). */
export function toJson(r: BenchResult): string {
  return resultJson(r);
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

const f1 = (v: number | null | undefined): string =>
  v === null || v === undefined || Number.isNaN(v) ? "-" : v.toFixed(1);
const f2 = (v: number | null | undefined): string =>
  v === null || v === undefined || Number.isNaN(v) ? "-" : v.toFixed(2);
const pct = (v: number | null | undefined): string =>
  v === null || v === undefined ? "-" : `${(v * 100).toFixed(0)}%`;
const times = (v: number | null | undefined): string =>
  v === null || v === undefined || Number.isNaN(v) ? "-" : `${v.toFixed(2)}x`;
const signed = (v: number | null | undefined): string =>
  v === null || v === undefined || Number.isNaN(v) ? "-" : `${v >= 0 ? "+" : ""}${v.toFixed(2)}`;
const met = (ok: boolean | null): string => (ok ? "met" : "MISSED");

function levelRow(l: MeasuredLevel): string {
  return `${String(l.concurrency).padStart(6)}${f1(l.rps).padStart(10)}${f2(l.latencyMs?.p50).padStart(9)}${f2(l.latencyMs?.p90).padStart(9)}${f2(l.latencyMs?.p99).padStart(9)}${String(l.errors).padStart(8)}${String(l.non2xx).padStart(9)}${f2(l.cpu?.otherCores).padStart(11)}`;
}
const LEVEL_HEADER = `${"conc".padStart(6)}${"rate/s".padStart(10)}${"p50 ms".padStart(9)}${"p90 ms".padStart(9)}${"p99 ms".padStart(9)}${"errors".padStart(8)}${"non-2xx".padStart(9)}${"other cpu".padStart(11)}`;
const passes = (l: PassedLevel): string => l.passRps.map((r) => f1(r)).join(" / ");

/** The headline of classify: the graph against the one-process composition, one row per concurrency, then the targets. */
export function comparisonLines(c: Comparison): string[] {
  const out = [
    `${"conc".padStart(6)}${"graph/s".padStart(10)}${"one-proc/s".padStart(12)}${"graph/one".padStart(11)}${"graph p50".padStart(11)}${"one p50".padStart(9)}${"p50 diff".padStart(10)}${"graph cpu ms/img".padStart(18)}${"one cpu ms/img".padStart(16)}`,
    ...c.rows.map(
      (r) =>
        `${String(r.concurrency).padStart(6)}${f1(r.graphRps).padStart(10)}${f1(r.oneProcessRps).padStart(12)}${times(r.fraction).padStart(11)}${f2(r.graphP50Ms).padStart(11)}${f2(r.oneProcessP50Ms).padStart(9)}${signed(r.p50DiffMs).padStart(10)}${f2(r.graphCpuMsPerImage).padStart(18)}${f2(r.oneProcessCpuMsPerImage).padStart(16)}`,
    ),
  ];
  const g = c.goals;
  if (g.fractionAtC16 !== null)
    out.push(
      `  goal graph >= ${g.minFractionAtC16}x one-process at C=16: ${met(g.fractionMet)} (${times(g.fractionAtC16)})`,
    );
  else out.push(`  goal graph >= ${g.minFractionAtC16}x one-process at C=16: not measured (no C=16 level)`);
  if (g.p50DiffMsAtC1 !== null)
    out.push(
      `  goal p50 at C=1 within ${g.maxP50DiffMsAtC1} ms of one-process: ${met(g.p50Met)} (${signed(g.p50DiffMsAtC1)} ms)`,
    );
  else out.push(`  goal p50 at C=1 within ${g.maxP50DiffMsAtC1} ms of one-process: not measured (no C=1 level)`);
  return out;
}

/** Infer's levels beside the bare responder's, one row per dtype and concurrency, then the targets. */
export function inferLines(r: InferReport): string[] {
  // a space before each value, however wide it is
  const col = (v: string, w: number): string => ` ${v}`.padStart(w);
  const side = (l: InferLevel | undefined, cpu: number): string =>
    `${col(f1(l?.rps), 9)}${col(f2(l?.latencyMs?.p50), 8)}${col(f2(l?.latencyMs?.p99), 8)}${col(f2(l?.serverCpuMsPerRequest), cpu)}`;
  const out = [
    `${"dtype".padEnd(8)}${"conc".padStart(5)} |${"infer/s".padStart(9)}${"p50 ms".padStart(8)}${"p99 ms".padStart(8)}${"cpu ms/img".padStart(11)}${"mean batch".padStart(11)} |${"bare/s".padStart(9)}${"p50 ms".padStart(8)}${"p99 ms".padStart(8)}${"cpu ms/req".padStart(11)} |${"of bare".padStart(8)}${"bench ms/req".padStart(13)}${"errors".padStart(7)}${"other cpu".padStart(10)}`,
  ];
  for (const row of inferRows(r.levels)) {
    const errors = (row.infer?.errors ?? 0) + (row.bare?.errors ?? 0);
    const other = Math.max(row.infer?.cpu?.otherCores ?? 0, row.bare?.cpu?.otherCores ?? 0);
    out.push(
      `${row.dtype.padEnd(8)}${String(row.concurrency).padStart(5)} |${side(row.infer, 11)}${f1(row.infer?.batches?.meanSize).padStart(11)} |${side(row.bare, 11)} |${pct(row.ofBare).padStart(8)}${f2(row.infer?.clientCpuMsPerRequest).padStart(13)}${String(errors).padStart(7)}${f2(other).padStart(10)}`,
    );
  }
  const g = r.goals;
  if (g.imagesPerS === null) {
    out.push("  goals: not measured (no uint8 answer from infer)");
  } else {
    out.push(
      `  goal >= ${g.minImagesPerS} images/s with uint8 input (best level, C=${g.atConcurrency}): ${met(g.rateMet)} (${f1(g.imagesPerS)})`,
    );
    out.push(
      `  goal <= ${g.maxCpuMsPerImage} ms of infer CPU per image at that level: ${g.cpuMet === null ? "not measured (no /proc)" : `${met(g.cpuMet)} (${f2(g.cpuMsPerImage)} ms)`}`,
    );
  }
  return out;
}

export function formatTable(r: BenchResult): string {
  const m = r.machine;
  const out: string[] = [
    "",
    `servegraph bench  ${r.startedAt}${r.commit ? `  (commit ${r.commit})` : ""}`,
    `machine: ${m.cpuModel}, ${m.logicalCores} logical cores, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}${m.gpu ? `, GPU ${m.gpu}` : ""}`,
    `before the run other processes used ${m.busyCoresBefore === null ? "?" : m.busyCoresBefore.toFixed(2)} cores (load average ${m.loadAvg1m.start.toFixed(2)} at start, ${m.loadAvg1m.end.toFixed(2)} at end)`,
    `load generator: ${r.graph.loadGenerator}`,
    `graph: ${r.graph.source}${r.graph.ingressUrl ? ` at ${r.graph.ingressUrl}` : ""}; replicas ${Object.entries(
      r.graph.replicas,
    )
      .map(([k, v]) => `${k}=${v}`)
      .join(" ")}; tracing ${r.graph.tracing === null ? "unknown" : r.graph.tracing ? "on" : "off"}`,
    `each level: ${r.settings.durationS} s or ${r.settings.maxRequests} answers, closed loop, after a ${r.settings.warmupS} s warm-up; latency of answers without error;`,
    `  "other cpu" = cores' worth of CPU used meanwhile by processes outside the graph and the bench`,
  ];
  if (r.chain) {
    const g = r.chain.goals;
    out.push("", `chain  ${r.chain.route}  (rate = req/s)`, LEVEL_HEADER, ...r.chain.levels.map(levelRow));
    if (g.rpsAtC16 !== null)
      out.push(
        `  goal >= ${g.minRpsAtC16} req/s at C=16 (2x the seed's ${g.seedRps}): ${met(g.rpsMet)} (${f1(g.rpsAtC16)})`,
      );
    if (g.p50MsAtC1 !== null)
      out.push(`  goal p50 < ${g.maxP50MsAtC1} ms at C=1: ${met(g.p50Met)} (${f2(g.p50MsAtC1)} ms)`);
  }
  if (r.classify) {
    const c = r.classify;
    out.push(
      "",
      `classify  ${c.route}  (${c.images.length} images from ${c.imagesDir}; rate = images/s)`,
      `  ${c.schedule}`,
    );
    if (c.comparison && c.oneProcess) {
      const o = c.oneProcess;
      out.push(
        `graph vs the one-process composition (${o.executionProvider}, ${o.intraOpNumThreads} intra-op threads, preprocess ${o.preprocessMode}; no NATS, no batching):`,
        ...comparisonLines(c.comparison),
      );
    }
    out.push("graph levels:", `${LEVEL_HEADER}  mean batch  of stage limit  passes  batch sizes (batches)`);
    for (const l of c.levels) {
      const hist =
        l.batches?.histogram
          .filter((b) => b.count > 0)
          .map((b) => `${b.range}:${b.count}`)
          .join(" ") ?? "";
      out.push(
        `${levelRow(l)}${f1(l.batches?.meanSize).padStart(12)}${pct(l.fractionOfLimit).padStart(16)}  ${passes(l)}  ${hist || "-"}`,
      );
    }
    if (c.oneProcess)
      out.push(
        "one-process levels:",
        `${LEVEL_HEADER}  passes`,
        ...c.oneProcess.levels.map((l) => `${levelRow(l)}  ${passes(l)}`),
      );
  }
  if (r.stages) {
    const s = r.stages;
    out.push("", `stages alone (${s.when}; information: the headline is the one-process composition)`);
    if (s.skipped) out.push(`  skipped: ${s.skipped}`);
    if (s.preprocess)
      out.push(
        `  preprocess (${s.preprocess.mode}, ${s.preprocess.inFlight} in flight): ${f1(s.preprocess.imagesPerS)} images/s over ${s.preprocess.images} images`,
      );
    if (s.model) {
      out.push(
        `  model (${s.model.executionProvider}, ${s.model.intraOpNumThreads} intra-op threads, spinning ${s.model.allowSpinning ? "on" : "off"}): ${s.model.batches.map((b) => `batch ${b.batchSize}: ${f1(b.medianMs)} ms (${f1(b.imagesPerS)}/s)`).join(", ")}`,
      );
    }
    if (s.cpu) out.push(`  meanwhile other processes used ${f2(s.cpu.otherCores)} cores`);
    if (s.limitImagesPerS !== null) {
      out.push(
        `  stage limit for the best level's batch mix: ${f1(s.limitImagesPerS)} images/s = ${s.limitRule} (model ${f1(s.modelImagesPerS)}/s)`,
      );
      out.push(`  best end-to-end: ${pct(s.bestFractionOfLimit)} of that limit`);
    }
  }
  if (r.infer) {
    const i = r.infer;
    out.push(
      "",
      `infer  ${i.subject} straight over NATS (model ${i.model ?? "unknown"} on ${i.executionProvider ?? "?"}, max batch ${i.maxBatchSize ?? "?"}, ${i.replicas} replica${i.replicas === 1 ? "" : "s"}; ${i.requestBytes.uint8} B uint8 / ${i.requestBytes.float32} B float32 in, ${i.replyBytes} B out; rate = images/s)`,
      `  infer: ${i.client}`,
      `  bare:  ${i.responder}`,
      ...inferLines(i),
    );
  }
  for (const w of r.warnings) out.push(`warning: ${w}`);
  out.push("");
  return out.join("\n");
}

export function chartOf(r: BenchResult): string {
  const panels: ChartPanel[] = [];
  const lv = (l: Pick<LoadLevelResult, "concurrency" | "rps" | "latencyMs">) => ({
    concurrency: l.concurrency,
    rps: l.rps,
    p50Ms: l.latencyMs?.p50 ?? null,
    p99Ms: l.latencyMs?.p99 ?? null,
  });
  if (r.chain) {
    panels.push({
      title: `chain: ${r.chain.route}`,
      rateUnit: "req/s",
      levels: r.chain.levels.map(lv),
      reference: { value: r.chain.goals.minRpsAtC16, label: `goal at C=16: ${r.chain.goals.minRpsAtC16} req/s` },
      note: "ingress -> greeter-proxy -> greeter over NATS",
    });
  }
  if (r.classify) {
    const one = r.classify.oneProcess;
    const top = one?.levels.reduce<PassedLevel | undefined>(
      (a, b) => (!a || b.concurrency > a.concurrency ? b : a),
      undefined,
    );
    const limit = r.stages?.limitImagesPerS ?? null;
    const reference = top
      ? { value: top.rps, label: `one-process at C=${top.concurrency}: ${Math.round(top.rps)}/s` }
      : limit !== null
        ? { value: limit, label: `limit from the stages alone: ${Math.round(limit)}/s` }
        : undefined;
    panels.push({
      title: `classify: ${r.classify.route}`,
      rateUnit: "images/s",
      levels: r.classify.levels.map(lv),
      ...(reference ? { reference } : {}),
      note: `graph; ${r.classify.images.length} images; mean batch ${r.classify.levels.map((l) => f1(l.batches?.meanSize)).join(" / ")}`,
    });
    if (one) {
      panels.push({
        title: "classify: one-process composition",
        rateUnit: "images/s",
        levels: one.levels.map(lv),
        note: `same parts, no NATS, no batching; ${one.executionProvider}, preprocess ${one.preprocessMode}`,
      });
    }
  }
  if (r.infer) {
    const i = r.infer;
    const u8 = i.levels.filter((l) => l.series === "infer" && l.dtype === "uint8");
    const bare = i.levels.filter((l) => l.series === "bare" && l.dtype === "uint8");
    panels.push({
      title: `infer: ${i.subject} (uint8)`,
      rateUnit: "images/s",
      levels: u8.map(lv),
      reference: { value: i.goals.minImagesPerS, label: `goal: ${i.goals.minImagesPerS} images/s` },
      note: `${i.model?.split("/").pop() ?? "model ?"} on ${i.executionProvider ?? "?"}; bare responder ${bare.map((l) => `C=${l.concurrency}: ${Math.round(l.rps)}/s`).join(", ")}`,
    });
  }
  const m = r.machine;
  return renderChart({
    title: "servegraph bench: throughput and latency vs concurrency",
    subtitle: `${r.startedAt.slice(0, 16).replace("T", " ")} UTC; ${m.cpuModel}, ${m.logicalCores} cores${m.gpu ? `, ${m.gpu}` : ""}; Node ${m.node}; load generator on the same machine`,
    panels,
  });
}
