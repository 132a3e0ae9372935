/**
 * servegraph bench: closed-loop HTTP load on the running graph, on this machine's loopback.
 *
 *   servegraph bench [--target chain|classify|all] [--duration 8] [--concurrency 1,4,16] [--max-requests 100000]
 *                    [--images data/images] [--url http://127.0.0.1:8080] [--nats url] [--out bench-results]
 *                    [--warmup 2] [--no-stages] [--json] [--graph file]
 *
 * Which graph: --url, else the one `servegraph up` started (its state file), else it starts its own
 * (nats-server + the chain and classify graphs, as `servegraph up chain classify` would), benches it and
 * stops it (ops/bench/target.ts). Targets are those the ingress serves (its /readyz lists the nodes behind
 * its routes): chain (GET /greeting/<name>) and classify (POST /classify with the images of --images, with
 * the batch sizes infer formed during each level). Each level runs for --duration seconds or --max-requests
 * answers, whichever comes first, after one unrecorded warm-up of --warmup seconds per target (ops/bench/load.ts).
 *
 * After the load, with the graph idle, the classify graph's two stages are measured alone, each by its service
 * in a process of its own with every core (preprocess with several images in flight; the model file infer
 * loaded, at the batch sizes seen), and the end-to-end rate is given as a fraction of the limit they imply
 * (ops/bench/stages.ts).
 *
 * Writes <out>/<timestamp>.json, <out>/latest.json and <out>/latest.svg, prints a table (or the JSON
 * with --json) (ops/bench/report.ts). Exit codes: 0 done, 1 nothing could be measured or the graph failed,
 * 2 bad usage.
 */
import { loadavg } from "node:os";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadGraph, telemetryWanted } from "../../runtime/index.ts";
import { discoverInfer, type InferReplica } from "../bench/batches.ts";
import { busyCores } from "../bench/cpu.ts";
import { loadImages, runChain, runClassify, Target, type LoadPlan } from "../bench/load.ts";
import { gitCommit, gpuName, machineInfo } from "../bench/machine.ts";
import { formatTable, writeResult, type BenchResult } from "../bench/report.ts";
import { measureStages } from "../bench/stages.ts";
import { BenchUsageError, openTarget, readyReplicas, servedTargets, type BenchTarget } from "../bench/target.ts";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const LOAD_GENERATOR = "autocannon in the bench process, on the same machine (it uses CPU the graph could have had)";

function usage(msg: string): number {
  process.stderr.write(`servegraph bench: ${msg}\n`);
  return 2;
}

function progress(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

function parseList(s: string): number[] | undefined {
  const xs = s.split(",").map((x) => Number(x.trim()));
  return xs.length && xs.every((x) => Number.isInteger(x) && x >= 1 && x <= 4096) ? xs : undefined;
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
  const graph = await loadGraph(values.graph);
  const aborter = new AbortController();
  const onSigint = (): void => {
    progress("interrupted: stopping");
    aborter.abort();
  };
  process.once("SIGINT", onSigint);

  let t: BenchTarget | undefined;
  try {
    t = await openTarget({
      url: values.url, nats: values.nats, graph, warnings, progress,
      graphs: target === "all" ? [Target.CHAIN, Target.CLASSIFY] : [target],
    });
    const { ingressUrl, nc } = t;
    const replicas = await readyReplicas(ingressUrl);
    const served = servedTargets(replicas);
    for (const x of [Target.CHAIN, Target.CLASSIFY] as const) {
      if (target === x && !served[x]) return usage(`the graph at ${ingressUrl} does not serve ${x} (readyz replicas: ${JSON.stringify(replicas)})`);
    }
    if (!served.chain && !served.classify) throw new Error(`the graph at ${ingressUrl} serves neither chain nor classify (readyz replicas: ${JSON.stringify(replicas)})`);
    const wanted = (x: Target): boolean => (target === "all" || target === x) && served[x] && !aborter.signal.aborted;

    let inferReplicas: InferReplica[] = [];
    let maxBatchSize: number | null = null;
    if (served.classify) ({ replicas: inferReplicas, maxBatchSize } = await discoverInfer(nc, graph, warnings));

    const plan: LoadPlan = { ingressUrl, concurrency, durationS, warmupS, maxRequests, signal: aborter.signal, graphPids: t.graphPids, progress };
    const chain = wanted(Target.CHAIN) ? await runChain(plan) : null;
    let classify: BenchResult["classify"] = null;
    let stages: BenchResult["stages"] = null;
    if (wanted(Target.CLASSIFY)) {
      const images = loadImages(imagesDir);
      if (images.bodies.length === 0) {
        warnings.push(`no images in ${imagesDir}: classify not measured`);
      } else {
        const shownDir = imagesDir.startsWith(REPO_ROOT) ? imagesDir.slice(REPO_ROOT.length + 1) : imagesDir;
        classify = await runClassify({ ...plan, images, imagesDir: shownDir, maxBatchSize, nc, inferReplicas });
        if (classify.levels.length && !aborter.signal.aborted) {
          stages = await measureStages({
            graph, nc, inferReplicas, maxBatchSize, levels: classify.levels, images: images.files, durationS, maxImages: maxRequests,
            skip: values["no-stages"], graphPids: t.graphPids, progress, signal: aborter.signal,
          });
        }
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
      command: ["servegraph bench", ...argv].join(" "), commit: gitCommit(REPO_ROOT), machine,
      graph: { source: t.source, ingressUrl, replicas, tracing: t.source === "started" ? telemetryWanted() : null, loadGenerator: LOAD_GENERATOR },
      settings: { durationS, warmupS, maxRequests, concurrency },
      chain, classify, stages, warnings,
    };
    const { json, file } = writeResult(outDir, result);
    if (values.json) process.stdout.write(json);
    else process.stdout.write(formatTable(result) + `wrote ${join(basename(outDir), file)}, latest.json, latest.svg in ${outDir}\n`);
    return 0;
  } catch (err) {
    if (err instanceof BenchUsageError) return usage(err.message);
    throw err;
  } finally {
    process.removeListener("SIGINT", onSigint);
    await t?.close();
  }
}
