/**
 * servegraph bench: closed-loop HTTP load on the running graph, on this machine's loopback.
 *
 *   servegraph bench [--target chain|classify|all] [--duration 8] [--concurrency 1,4,16] [--max-requests 100000]
 *                    [--images data/images] [--url http://127.0.0.1:8080] [--nats url] [--out bench-results]
 *                    [--warmup 2] [--no-stages] [--json] [--graph file]
 *
 * Which graph: --url, else the one `servegraph up` started (its state file), else it starts its own
 * (nats-server + the chain and classify graphs, as `servegraph up chain classify` would), benches it and
 * stops it. Targets are those the ingress serves (its /readyz lists the nodes behind its routes):
 *  - chain:    GET /greeting/<name>
 *  - classify: POST /classify with the raw bytes of the images in --images, in turn; the batch sizes infer
 *              formed during each level come from the difference of its `sg_batch_size` histogram
 *              (/metrics of every infer replica, found through $SRV.INFO metadata `metrics_url`).
 * Each level runs for --duration seconds or --max-requests answers, whichever comes first, after one
 * unrecorded warm-up of --warmup seconds per target.
 *
 * After the load, with the graph idle, the classify graph's two stages are measured alone in this
 * process with every core (preprocess with several images in flight; the model file infer loaded, at
 * the batch sizes seen) and the end-to-end rate is given as a fraction of the limit they imply.
 *
 * Writes <out>/<timestamp>.json, <out>/latest.json and <out>/latest.svg, prints a table (or the JSON
 * with --json). Exit codes: 0 done, 1 nothing could be measured or the graph failed, 2 bad usage.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, platform, release, arch, totalmem } from "node:os";
import { basename, dirname, extname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { loadGraph, subjectFor, type ResolvedGraph } from "../../runtime/config.ts";
import { gather } from "../../runtime/discovery.ts";
import { telemetryWanted } from "../../runtime/telemetry.ts";
import { Discovery } from "../../subjects/names.ts";
import { descendants, startCpuSample, type CpuUse } from "../bench/cpu.ts";
import { runLevel, type LoadLevelOptions, type LoadLevelResult, type RequestBody } from "../bench/load.ts";
import { addHistograms, diffHistogram, parseHistogram, type HistogramBucket, type HistogramSnapshot } from "../bench/prom.ts";
import { measureModel, measurePreprocess, modelRateForMix, stageLimit, type ModelStageResult, type PreprocessStageResult } from "../bench/stages.ts";
import { renderChart, type ChartPanel } from "../bench/svg.ts";
import { startNats, type LocalNats } from "../nats-server.ts";
import { readState } from "../state.ts";
import { startSupervisor, type Supervisor } from "../supervisor.ts";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export const Target = { CHAIN: "chain", CLASSIFY: "classify" } as const;
export type Target = (typeof Target)[keyof typeof Target];

/** The chain's performance goals: twice the seed's FastAPI chain (742 req/s with a persistent client). */
export const CHAIN_GOALS = { seedRps: 742, minRpsAtC16: 1484, maxP50MsAtC1: 2 } as const;

const IMAGE_TYPES: Record<string, string> = {
  ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".gif": "image/gif", ".tif": "image/tiff", ".tiff": "image/tiff",
};
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

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

export interface MeasuredLevel extends LoadLevelResult {
  /** CPU use during the level (Linux): whole machine, graph + bench, and other processes. */
  cpu: CpuUse | null;
}

export interface ClassifyLevel extends MeasuredLevel {
  batches: {
    /** Forward passes during the level and the requests they held (all infer replicas). */
    count: number;
    requests: number;
    meanSize: number | null;
    /** Non-cumulative buckets of the `sg_batch_size` histogram; empty when infer's metrics were unreachable. */
    histogram: HistogramBucket[];
  } | null;
  /** End-to-end images/s over the stage limit for this level's batch mix. */
  fractionOfLimit: number | null;
  limitImagesPerS: number | null;
}

export interface BenchResult {
  version: 1;
  startedAt: string;
  finishedAt: string;
  command: string;
  commit: string | null;
  machine: MachineInfo;
  graph: {
    source: "running" | "started" | "url";
    ingressUrl: string;
    replicas: Record<string, number>;
    tracing: boolean | null;
    loadGenerator: string;
  };
  settings: { durationS: number; warmupS: number; maxRequests: number; concurrency: number[] };
  chain: {
    route: string;
    levels: MeasuredLevel[];
    goals: { minRpsAtC16: number; maxP50MsAtC1: number; seedRps: number; rpsAtC16: number | null; p50MsAtC1: number | null; rpsMet: boolean | null; p50Met: boolean | null };
  } | null;
  classify: {
    route: string;
    imagesDir: string;
    images: string[];
    maxBatchSize: number | null;
    levels: ClassifyLevel[];
  } | null;
  stages: {
    when: string;
    preprocess: PreprocessStageResult | null;
    model: ModelStageResult | null;
    /** Model images/s at the batch mix of the best classify level. */
    modelImagesPerS: number | null;
    limitImagesPerS: number | null;
    limitRule: string | null;
    bestFractionOfLimit: number | null;
    /** CPU use while the stages ran (other processes should be near 0). */
    cpu?: CpuUse | null;
    skipped?: string;
  } | null;
  warnings: string[];
}

interface InferReplica {
  metricsUrl?: string;
  model?: string;
  executionProvider?: string;
}

function usage(msg: string): number {
  process.stderr.write(`servegraph bench: ${msg}\n`);
  return 2;
}

function progress(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

function machineInfo(): MachineInfo {
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

/** Cores' worth of CPU used on the whole machine during `ms`, from /proc/stat; null where there is none. */
async function busyCores(ms: number): Promise<number | null> {
  const read = (): { idle: number; total: number } => {
    const v = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    return { idle: v[3]! + (v[4] ?? 0), total: v.reduce((a, b) => a + b, 0) };
  };
  try {
    const a = read();
    await new Promise((r) => setTimeout(r, ms));
    const b = read();
    const dt = b.total - a.total;
    return dt > 0 ? Math.round((1 - (b.idle - a.idle) / dt) * cpus().length * 100) / 100 : null;
  } catch {
    return null;
  }
}

function gitCommit(): string | null {
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: REPO_ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 2000 }).trim() || null;
  } catch {
    return null;
  }
}

function gpuName(): string | undefined {
  try {
    return execFileSync("nvidia-smi", ["--query-gpu=name,memory.total", "--format=csv,noheader"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5000 }).trim().split("\n").join("; ") || undefined;
  } catch {
    return undefined;
  }
}

function parseList(s: string): number[] | undefined {
  const xs = s.split(",").map((x) => Number(x.trim()));
  return xs.length && xs.every((x) => Number.isInteger(x) && x >= 1 && x <= 4096) ? xs : undefined;
}

function loadImages(dir: string): { names: string[]; bodies: RequestBody[] } {
  const names = readdirSync(dir).filter((f) => IMAGE_TYPES[extname(f).toLowerCase()]).sort();
  return { names, bodies: names.map((f) => ({ body: readFileSync(join(dir, f)), contentType: IMAGE_TYPES[extname(f).toLowerCase()]! })) };
}

/** The ingress's /readyz: the nodes behind its routes and their replica counts (also on 503). */
async function probeReady(url: string): Promise<Record<string, number> | undefined> {
  try {
    const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(5000) });
    const body = (await res.json()) as { replicas?: Record<string, number>; details?: { replicas?: Record<string, number> } };
    return body.replicas ?? body.details?.replicas;
  } catch {
    return undefined;
  }
}

async function scrapeBatchSizes(replicas: readonly InferReplica[]): Promise<HistogramSnapshot | undefined> {
  const snaps = await Promise.all(replicas.filter((r) => r.metricsUrl).map(async (r) => {
    try {
      const res = await fetch(r.metricsUrl!, { signal: AbortSignal.timeout(3000) });
      return parseHistogram(await res.text(), "sg_batch_size");
    } catch {
      return undefined;
    }
  }));
  return addHistograms(snaps.filter((s): s is HistogramSnapshot => s !== undefined));
}

/** $SRV.STATS fallback when /metrics is unreachable: cumulative batches and batched requests. */
async function batchTotals(nc: NatsConnection): Promise<{ batches: number; requests: number } | undefined> {
  const stats = await gather<{ endpoints?: { data?: { batches?: number; batched_requests?: number } }[] }>(nc, Discovery.stats("infer"), 300);
  let batches = 0;
  let requests = 0;
  let seen = false;
  for (const s of stats) {
    const d = s.endpoints?.[0]?.data;
    if (typeof d?.batches === "number" && typeof d.batched_requests === "number") {
      batches += d.batches;
      requests += d.batched_requests;
      seen = true;
    }
  }
  return seen ? { batches, requests } : undefined;
}

/** Batch sizes standing for a histogram bucket when timing the model: its upper end, capped at the batch limit. */
function representativeSize(b: HistogramBucket, maxBatchSize: number | null): number {
  const cap = maxBatchSize ?? 32;
  return Math.min(b.max === Infinity ? cap : b.max, cap);
}

function mixOf(level: ClassifyLevel, maxBatchSize: number | null): { size: number; count: number }[] {
  return (level.batches?.histogram ?? []).filter((b) => b.count > 0).map((b) => ({ size: representativeSize(b, maxBatchSize), count: b.count }));
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

export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        target: { type: "string", default: "all" },
        duration: { type: "string", default: "8" },
        warmup: { type: "string", default: "2" },
        concurrency: { type: "string", default: "1,4,16" },
        "max-requests": { type: "string", default: "100000" },
        images: { type: "string" },
        url: { type: "string" },
        nats: { type: "string" },
        out: { type: "string" },
        "no-stages": { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        graph: { type: "string" },
      },
      allowPositionals: false,
    }));
  } catch (err) {
    return usage(err instanceof Error ? err.message : String(err));
  }
  const target = values.target;
  if (target !== "all" && target !== Target.CHAIN && target !== Target.CLASSIFY) return usage(`--target must be chain, classify or all, got ${target}`);
  const durationS = Number(values.duration);
  const warmupS = Number(values.warmup);
  const maxRequests = Number(values["max-requests"]);
  const concurrency = parseList(values.concurrency);
  if (!(durationS > 0 && durationS <= 600)) return usage("--duration must be a number of seconds in (0, 600]");
  if (!(warmupS >= 0 && warmupS <= 60)) return usage("--warmup must be a number of seconds in [0, 60]");
  if (!Number.isInteger(maxRequests) || maxRequests < 1) return usage("--max-requests must be a positive integer");
  if (!concurrency) return usage("--concurrency must be a comma-separated list of integers in 1..4096");
  const imagesDir = values.images ? resolve(values.images) : join(REPO_ROOT, "data/images");
  const outDir = values.out ? (isAbsolute(values.out) ? values.out : resolve(values.out)) : join(REPO_ROOT, "bench-results");

  const startedAt = new Date().toISOString();
  const machine = machineInfo();
  machine.busyCoresBefore = await busyCores(1000);
  const warnings: string[] = [];
  if (machine.busyCoresBefore !== null && machine.busyCoresBefore > 0.3) {
    warnings.push(`other processes used ${machine.busyCoresBefore.toFixed(2)} of ${machine.logicalCores} cores just before the run: the numbers are lower than this machine can do`);
  }
  const graph: ResolvedGraph = await loadGraph(values.graph);
  const aborter = new AbortController();
  const onSigint = (): void => {
    progress("interrupted: stopping");
    aborter.abort();
  };
  process.once("SIGINT", onSigint);

  // --- the graph under test ---------------------------------------------------------------------------------
  let source: BenchResult["graph"]["source"];
  let ingressUrl: string | undefined;
  let natsUrl: string | undefined;
  let own: { nats: LocalNats; nc: NatsConnection; sup: Supervisor } | undefined;
  const state = readState();
  if (values.url) {
    source = "url";
    ingressUrl = values.url.replace(/\/+$/, "");
    natsUrl = values.nats || process.env.NATS_URL || (state?.ingressUrl === ingressUrl ? state.natsUrl : undefined);
  } else if (state?.ingressUrl) {
    source = "running";
    ingressUrl = state.ingressUrl;
    natsUrl = values.nats || state.natsUrl;
  } else {
    source = "started";
    const graphs = target === "all" ? [Target.CHAIN, Target.CLASSIFY] : [target];
    progress(`no running graph found: starting ${graphs.join(" + ")} (nats-server and every node on this machine)`);
    const nats = await startNats();
    const nc = await connect({ servers: nats.url, name: "servegraph-bench" });
    const nodeEnv: Record<string, Record<string, string>> = {};
    for (const n of Object.values(graph.nodes)) if (n.http) nodeEnv[n.name] = { PORT: "0", HOST: "127.0.0.1" };
    let sup: Supervisor;
    try {
      sup = await startSupervisor({
        graph, graphs, natsUrl: nats.url, nc, nodeEnv, restart: false, stdio: "inherit",
        env: { SG_LOG_LEVEL: process.env.SG_LOG_LEVEL ?? "warn" },
        log: (l) => progress(l),
      });
    } catch (err) {
      await nc.close().catch(() => {});
      await nats.stop();
      throw err;
    }
    own = { nats, nc, sup };
    natsUrl = nats.url;
    for (const name of sup.nodes.filter((n) => graph.nodes[n]!.http)) {
      const info = await nc.request(Discovery.info(name), new Uint8Array(0), { timeout: 3000 }).catch(() => undefined);
      ingressUrl ??= info ? (info.json() as { metadata?: Record<string, string> }).metadata?.http_url : undefined;
    }
  }

  let nc: NatsConnection | undefined = own?.nc;
  try {
    if (!ingressUrl) throw new Error("the graph has no HTTP ingress to load");
    const host = new URL(ingressUrl).hostname;
    if (!LOOPBACK.has(host)) return usage(`${ingressUrl} is not a loopback address: bench loads this machine only`);

    if (!nc && natsUrl) {
      nc = await connect({ servers: natsUrl, name: "servegraph-bench", timeout: 2000 }).catch(() => undefined);
      if (!nc) warnings.push(`NATS at ${natsUrl} is unreachable: no batch sizes, no stage measurements`);
    }
    const replicas = (await probeReady(ingressUrl)) ?? {};
    const served = {
      chain: (replicas["greeter-proxy"] ?? 0) > 0,
      classify: (replicas["preprocess"] ?? 0) > 0,
    };
    const wanted = (t: Target): boolean => target === "all" || target === t;
    for (const t of [Target.CHAIN, Target.CLASSIFY] as const) {
      if (target === t && !served[t]) return usage(`the graph at ${ingressUrl} does not serve ${t} (readyz replicas: ${JSON.stringify(replicas)})`);
    }
    if (!served.chain && !served.classify) throw new Error(`the graph at ${ingressUrl} serves neither chain nor classify (readyz replicas: ${JSON.stringify(replicas)})`);

    // infer replicas: metrics URL, model file and execution provider
    let inferReplicas: InferReplica[] = [];
    let maxBatchSize: number | null = graph.nodes.infer?.batching?.maxBatchSize ?? null;
    if (nc && served.classify) {
      const infos = await gather<{ metadata?: Record<string, string> }>(nc, Discovery.info("infer"), 300);
      inferReplicas = infos.map((i) => ({ metricsUrl: i.metadata?.metrics_url, model: i.metadata?.model, executionProvider: i.metadata?.execution_provider }));
      if (graph.nodes.infer) {
        const info = await nc.request(subjectFor(graph, "infer", "info"), "{}", { timeout: 2000 }).catch(() => undefined);
        const mbs = info ? (info.json() as { max_batch_size?: unknown }).max_batch_size : undefined;
        if (typeof mbs === "number") maxBatchSize = mbs;
      }
      if (!inferReplicas.some((r) => r.metricsUrl)) warnings.push("no infer replica advertises metrics_url: batch sizes from $SRV.STATS (mean only)");
    }

    const loadGenerator = "autocannon in the bench process, on the same machine (it uses CPU the graph could have had)";
    // The graph's processes, to tell its CPU use from other work on the machine.
    const graphPids = async (): Promise<number[]> => {
      if (own) return [own.nats.process.pid ?? 0, ...own.sup.nodes.flatMap((n) => own!.sup.replicas(n).map((r) => r.child.pid ?? 0))].filter((p) => p > 0);
      if (source === "running" && state) return [state.pid, ...descendants(state.pid)];
      if (!nc) return [];
      const infos = await gather<{ metadata?: Record<string, string> }>(nc, Discovery.info(), 300);
      return infos.map((i) => Number(i.metadata?.pid)).filter((p) => Number.isInteger(p) && p > 0);
    };
    const measured = async (o: LoadLevelOptions): Promise<MeasuredLevel> => {
      const sample = startCpuSample(await graphPids());
      const l = await runLevel(o, aborter.signal);
      return { ...l, cpu: sample.stop() };
    };

    // --- chain ---------------------------------------------------------------------------------------------
    let chain: BenchResult["chain"] = null;
    if (served.chain && wanted(Target.CHAIN) && !aborter.signal.aborted) {
      const req = { url: ingressUrl, method: "GET" as const, path: "/greeting/bench" };
      if (warmupS > 0) await runLevel({ ...req, connections: Math.max(...concurrency), durationS: warmupS, maxRequests }, aborter.signal);
      const levels: MeasuredLevel[] = [];
      for (const c of concurrency) {
        if (aborter.signal.aborted) break;
        progress(`chain C=${c} for ${durationS} s`);
        levels.push(await measured({ ...req, connections: c, durationS, maxRequests }));
      }
      const at = (c: number) => levels.find((l) => l.concurrency === c);
      const rpsAtC16 = at(16)?.rps ?? null;
      const p50MsAtC1 = at(1)?.latencyMs?.p50 ?? null;
      chain = {
        route: "GET /greeting/<name>", levels,
        goals: {
          ...CHAIN_GOALS, rpsAtC16, p50MsAtC1,
          rpsMet: rpsAtC16 === null ? null : rpsAtC16 >= CHAIN_GOALS.minRpsAtC16,
          p50Met: p50MsAtC1 === null ? null : p50MsAtC1 < CHAIN_GOALS.maxP50MsAtC1,
        },
      };
    }

    // --- classify --------------------------------------------------------------------------------------------
    let classify: BenchResult["classify"] = null;
    let images: { names: string[]; bodies: RequestBody[] } = { names: [], bodies: [] };
    if (served.classify && wanted(Target.CLASSIFY) && !aborter.signal.aborted) {
      images = loadImages(imagesDir);
      if (images.bodies.length === 0) {
        warnings.push(`no images in ${imagesDir}: classify not measured`);
      } else {
        const req = { url: ingressUrl, method: "POST" as const, path: "/classify", bodies: images.bodies };
        if (warmupS > 0) await runLevel({ ...req, connections: Math.max(...concurrency), durationS: warmupS, maxRequests }, aborter.signal);
        const levels: ClassifyLevel[] = [];
        for (const c of concurrency) {
          if (aborter.signal.aborted) break;
          progress(`classify C=${c} for ${durationS} s`);
          const histBefore = await scrapeBatchSizes(inferReplicas);
          const totalsBefore = !histBefore && nc ? await batchTotals(nc) : undefined;
          const l = await measured({ ...req, connections: c, durationS, maxRequests });
          const histAfter = await scrapeBatchSizes(inferReplicas);
          let batches: ClassifyLevel["batches"] = null;
          if (histAfter) {
            const d = diffHistogram(histBefore, histAfter);
            batches = { count: d.count, requests: d.sum, meanSize: d.count ? d.sum / d.count : null, histogram: d.buckets };
          } else if (totalsBefore && nc) {
            const after = await batchTotals(nc);
            if (after) {
              const count = after.batches - totalsBefore.batches;
              const requests = after.requests - totalsBefore.requests;
              batches = { count, requests, meanSize: count > 0 ? requests / count : null, histogram: [] };
            }
          }
          levels.push({ ...l, batches, fractionOfLimit: null, limitImagesPerS: null });
        }
        classify = { route: "POST /classify (raw image body)", imagesDir: imagesDir.startsWith(REPO_ROOT) ? imagesDir.slice(REPO_ROOT.length + 1) : imagesDir, images: images.names, maxBatchSize, levels };
      }
    }

    // --- the stages alone, graph idle ------------------------------------------------------------------------
    let stages: BenchResult["stages"] = null;
    if (classify && classify.levels.length && !aborter.signal.aborted) {
      const when = "after the HTTP load, with the graph idle, in the bench process with every core";
      const model = inferReplicas.find((r) => r.model)?.model;
      const ep = inferReplicas.find((r) => r.executionProvider)?.executionProvider === "cuda" ? "cuda" : "cpu";
      if (values["no-stages"]) {
        stages = { when, preprocess: null, model: null, modelImagesPerS: null, limitImagesPerS: null, limitRule: null, bestFractionOfLimit: null, skipped: "--no-stages" };
      } else if (!model) {
        stages = { when, preprocess: null, model: null, modelImagesPerS: null, limitImagesPerS: null, limitRule: null, bestFractionOfLimit: null, skipped: "infer's model file is unknown (no $SRV.INFO metadata over NATS)" };
      } else {
        await new Promise((r) => setTimeout(r, 1000)); // let in-flight work and ORT's spinning threads settle
        const stageCpu = startCpuSample(await graphPids());
        const pp = graph.nodes.preprocess?.parameters ?? {};
        const preInfo = nc ? await gather<{ metadata?: Record<string, string> }>(nc, Discovery.info("preprocess"), 300) : [];
        const mode = (preInfo.find((i) => i.metadata?.preprocess_mode)?.metadata?.preprocess_mode ?? pp.PREPROCESS_MODE ?? "fast") === "exact" ? "exact" : "fast";
        progress(`preprocess alone (${mode}) for ${Math.min(durationS, 5)} s`);
        const pre = await measurePreprocess({
          images: images.bodies.map((b) => b.body), mode,
          maxInputPixels: Number(pp.MAX_INPUT_PIXELS ?? 50_000_000), maxInputBytes: Number(pp.MAX_INPUT_BYTES ?? 8 * 1024 * 1024),
          durationS: Math.min(durationS, 5), maxImages: maxRequests,
        });
        const sizes = [...new Set(classify.levels.flatMap((l) => mixOf(l, maxBatchSize).map((m) => m.size)))];
        if (sizes.length === 0) sizes.push(1);
        const ip = graph.nodes.infer?.parameters ?? {};
        progress(`model alone (${ep}) at batch sizes ${sizes.sort((a, b) => a - b).join(", ")}`);
        const mod = await measureModel({
          modelPath: model, executionProvider: ep,
          intraOpNumThreads: Number(ip.INTRA_OP_THREADS ?? 0) || availableParallelism(),
          allowSpinning: /^(1|true|yes|on)$/i.test(String(ip.ALLOW_SPINNING ?? "true")),
          batchSizes: sizes, runs: 5, maxSecondsPerBatch: 3, tensors: pre.tensors,
        });
        for (const l of classify.levels) {
          const mix = mixOf(l, maxBatchSize);
          const rate = modelRateForMix(mod.batches, mix.length ? mix : [{ size: 1, count: 1 }]);
          if (rate === undefined) continue;
          const lim = stageLimit(pre.result.imagesPerS, rate, mod.executionProvider === "cuda");
          l.limitImagesPerS = lim.imagesPerS;
          l.fractionOfLimit = l.rps / lim.imagesPerS;
        }
        const best = classify.levels.reduce((a, b) => (b.rps > a.rps ? b : a));
        const bestMix = mixOf(best, maxBatchSize);
        const modelRate = modelRateForMix(mod.batches, bestMix.length ? bestMix : [{ size: 1, count: 1 }]) ?? null;
        const lim = modelRate !== null ? stageLimit(pre.result.imagesPerS, modelRate, mod.executionProvider === "cuda") : null;
        stages = {
          when, preprocess: pre.result, model: mod, modelImagesPerS: modelRate,
          limitImagesPerS: lim?.imagesPerS ?? null, limitRule: lim?.rule ?? null, bestFractionOfLimit: best.fractionOfLimit,
          cpu: stageCpu.stop(),
        };
      }
    }

    if (!chain && !classify) throw new Error("nothing was measured");
    const busiest = Math.max(0, ...[...(chain?.levels ?? []), ...(classify?.levels ?? [])].map((l) => l.cpu?.otherCores ?? 0), stages?.cpu?.otherCores ?? 0);
    if (busiest > 0.3) warnings.push(`other processes used up to ${busiest.toFixed(2)} cores during the measurements ("other cpu"): those numbers are low`);
    machine.loadAvg1m.end = loadavg()[0]!;
    if (inferReplicas.some((r) => r.executionProvider === "cuda")) {
      const g = gpuName();
      if (g) machine.gpu = g;
    }
    const result: BenchResult = {
      version: 1, startedAt, finishedAt: new Date().toISOString(),
      command: ["servegraph bench", ...argv].join(" "), commit: gitCommit(), machine,
      graph: { source, ingressUrl, replicas, tracing: source === "started" ? telemetryWanted() : null, loadGenerator },
      settings: { durationS, warmupS, maxRequests, concurrency },
      chain, classify, stages, warnings,
    };

    mkdirSync(outDir, { recursive: true });
    // Three decimals are plenty for ms and rates, and keep the file small. Infinity (a last bucket's max) becomes null.
    const json = JSON.stringify(result, (_k, v: unknown) => (typeof v === "number" && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v), 2) + "\n";
    const stamp = startedAt.replace(/[:.]/g, "-");
    writeFileSync(join(outDir, `${stamp}.json`), json);
    writeFileSync(join(outDir, "latest.json"), json);
    writeFileSync(join(outDir, "latest.svg"), chartOf(result));
    if (values.json) process.stdout.write(json);
    else process.stdout.write(formatTable(result) + `wrote ${join(basename(outDir), `${stamp}.json`)}, latest.json, latest.svg in ${outDir}\n`);
    return 0;
  } finally {
    process.removeListener("SIGINT", onSigint);
    if (own) {
      progress("stopping the graph it started");
      await own.sup.stop();
      await own.nc.close().catch(() => {});
      await own.nats.stop();
    } else {
      await nc?.close().catch(() => {});
    }
  }
}
