/**
 * servegraph bench: closed-loop load on this machine's loopback, against the running graph or one it starts.
 *
 *   servegraph bench [--target chain|classify|infer|all] [--duration 8] [--concurrency 1,4,16] [--max-requests 100000]
 *                    [--images data/images] [--url http://127.0.0.1:8080] [--nats url] [--out bench-results]
 *                    [--warmup 2] [--no-stages] [--param node.KEY=VALUE ...] [--json] [--graph file]
 *                    [--baseline <rev> [--passes 2] [--fail-on-regression]]
 *   servegraph bench autoscale [...]: the autoscaler of `servegraph up` under a stepped load (tools/perf/bench/autoscale.ts)
 *
 * Targets:
 *  - chain (GET /greeting/<name>) and classify (POST /classify with the images of --images) go through the
 *    ingress of a graph: --url, else the one `servegraph up` started (its state file), else one it starts
 *    (nats-server + the chain and classify graphs, as `servegraph up chain classify` would, with the --param
 *    overrides) and stops at the end (tools/perf/bench/target.ts). Each level runs for --duration seconds or
 *    --max-requests answers, whichever comes first, after an unrecorded warm-up of --warmup seconds
 *    (tools/perf/bench/load.ts).
 *  - classify measures, beside the graph, the one-process composition (tools/perf/bench/one-process/: the same parts in
 *    one process, no NATS, no batching) at the same concurrencies, interleaved in two passes, and reports the graph
 *    as a fraction of it: the headline (tools/perf/bench/compare.ts). Then, with the graph idle, the two compute stages
 *    alone and the limit they imply, as information (tools/perf/bench/stages.ts; --no-stages skips them).
 *  - infer: the infer node's own ceiling over NATS, with no ingress or preprocess: the bench starts nats-server and
 *    one infer replica with MODEL=trivial (and the --param overrides), sends single-image uint8 and float32
 *    tensors straight to its run subject, and a bare responder beside it gives what the same request-reply costs
 *    with nothing behind it (tools/perf/bench/infer-target.ts). Concurrency defaults to 1,16,64 for it.
 *  - all: chain and classify (infer starts a graph of its own: ask for it by name).
 *
 * --baseline <rev>: the same bench of this checkout and of another commit (a sha, tag or branch), each side its own
 * graph, one side at a time, alternating over --passes passes, and the ratios of every figure; a headline figure
 * more than 10% worse than the baseline is called out (tools/perf/bench/baseline.ts). Writes <out>/baseline-latest.json, and
 * this checkout's last pass as <out>/latest.json and latest.svg.
 *
 * Writes <out>/<timestamp>.json, <out>/latest.json and <out>/latest.svg, prints a table (or the JSON with --json)
 * (tools/perf/bench/report.ts). Exit codes: 0 done, 1 nothing could be measured or the graph failed, 2 bad usage,
 * 3 a regression against --baseline with --fail-on-regression.
 */
import { loadavg } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  checkParams,
  gather,
  loadGraph,
  telemetryWanted,
  withParameterOverrides,
  GraphConfigError,
  type ResolvedGraph,
} from "../../../runtime/index.ts";
import { Discovery } from "../../../subjects/names.ts";
import { BaselineError, formatComparison, runBaseline, writeComparison } from "../bench/baseline.ts";
import { discoverInfer, type InferReplica } from "../bench/batches.ts";
import { runClassify } from "../bench/compare.ts";
import { runInferTarget } from "../bench/infer-target.ts";
import { loadImages, runChain, Target, type LoadPlan } from "../bench/load.ts";
import { gitCommit, gpuName, type MachineInfo } from "../bench/machine.ts";
import { startOneProcess, type OneProcess } from "../bench/one-process/launch.ts";
import { formatTable, writeResult, type BenchResult } from "../bench/report.ts";
import { machineBeforeRun, parseLoadArgs } from "../bench/shared-cli.ts";
import { measureStages } from "../bench/stages.ts";
import { BenchUsageError, openTarget, readyReplicas, servedTargets, type BenchTarget } from "../bench/target.ts";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const BENCH_DIR = join(REPO_ROOT, "tools/perf/bench");
const LOAD_GENERATOR = "autocannon in the bench process, on the same machine (it uses CPU the graph could have had)";
const NATS_LOAD_GENERATOR =
  "NATS requests from the bench process, on the same machine (it uses CPU the node could have had)";
const INFER_TARGET = "infer";
const DEFAULT_CONCURRENCY = "1,4,16";
const DEFAULT_INFER_CONCURRENCY = "1,16,64";

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

/** The preprocess mode the running replicas report (metadata `preprocess_mode`), if any answers. */
async function runningPreprocessMode(nc: NatsConnection | undefined): Promise<string | undefined> {
  if (!nc) return undefined;
  const infos = await gather<{ metadata?: Record<string, string> }>(nc, Discovery.info("preprocess"), 300);
  return infos.find((i) => i.metadata?.preprocess_mode)?.metadata?.preprocess_mode;
}

/** The one-process composition with the parts the graph runs; undefined (and a warning) when it cannot start. */
async function oneProcessFor(
  graph: ResolvedGraph,
  nc: NatsConnection | undefined,
  inferReplicas: readonly InferReplica[],
  warnings: string[],
): Promise<OneProcess | undefined> {
  const r = inferReplicas.find((x) => x.model);
  if (!r?.model) {
    warnings.push(
      "infer's model file is unknown (no $SRV.INFO metadata over NATS): the one-process composition was not measured",
    );
    return undefined;
  }
  try {
    progress(`starting the one-process composition (${r.model.split("/").pop()} on ${r.executionProvider ?? "cpu"})`);
    return await startOneProcess({
      graph,
      modelPath: r.model,
      executionProvider: r.executionProvider,
      preprocessMode: await runningPreprocessMode(nc),
    });
  } catch (err) {
    warnings.push(`the one-process composition did not start: ${err instanceof Error ? err.message : String(err)}`);
    return undefined;
  }
}

function finish(r: BenchResult, outDir: string, json: boolean): number {
  // the JSON keeps its fields in this order
  const result: BenchResult = {
    version: r.version,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    command: r.command,
    commit: r.commit,
    machine: r.machine,
    graph: r.graph,
    settings: r.settings,
    chain: r.chain,
    classify: r.classify,
    stages: r.stages,
    infer: r.infer,
    warnings: r.warnings,
  };
  const { json: text, file } = writeResult(outDir, result);
  if (json) process.stdout.write(text);
  else
    process.stdout.write(
      formatTable(result) + `wrote ${join(basename(outDir), file)}, latest.json, latest.svg in ${outDir}\n`,
    );
  return 0;
}

function busiestWarning(warnings: string[], otherCores: readonly (number | undefined)[]): void {
  const busiest = Math.max(0, ...otherCores.map((x) => x ?? 0));
  if (busiest > 0.3)
    warnings.push(
      `other processes used up to ${busiest.toFixed(2)} cores during the measurements ("other cpu"): those numbers are low`,
    );
}

export async function run(argv: string[]): Promise<number> {
  // `servegraph bench autoscale`: the autoscaler under a stepped load (its own options).
  if (argv[0] === "autoscale") return (await import("../bench/autoscale.ts")).run(argv.slice(1));
  const args = parseLoadArgs(
    argv,
    {
      target: { type: "string", default: "all" },
      duration: { type: "string", default: "8" },
      warmup: { type: "string", default: "2" },
      concurrency: { type: "string" },
      "max-requests": { type: "string", default: "100000" },
      "no-stages": { type: "boolean", default: false },
      param: { type: "string", multiple: true },
      baseline: { type: "string" },
      passes: { type: "string", default: "2" },
      "fail-on-regression": { type: "boolean", default: false },
    },
    usage,
  );
  if (typeof args === "number") return args;
  const { values, imagesDir, outDir } = args;
  const target = values.target;
  if (target !== "all" && target !== Target.CHAIN && target !== Target.CLASSIFY && target !== INFER_TARGET)
    return usage(`--target must be chain, classify, infer or all, got ${target}`);
  const durationS = Number(values.duration);
  const warmupS = Number(values.warmup);
  const maxRequests = Number(values["max-requests"]);
  const concurrency = parseList(
    values.concurrency ?? (target === INFER_TARGET ? DEFAULT_INFER_CONCURRENCY : DEFAULT_CONCURRENCY),
  );
  if (!(durationS > 0 && durationS <= 600)) return usage("--duration must be a number of seconds in (0, 600]");
  if (!(warmupS >= 0 && warmupS <= 60)) return usage("--warmup must be a number of seconds in [0, 60]");
  if (!Number.isInteger(maxRequests) || maxRequests < 1) return usage("--max-requests must be a positive integer");
  if (!concurrency) return usage("--concurrency must be a comma-separated list of integers in 1..4096");
  const params = values.param ?? [];

  if (values.baseline !== undefined) {
    const passes = Number(values.passes);
    if (!Number.isInteger(passes) || passes < 1 || passes > 20) return usage("--passes must be an integer in 1..20");
    if (values.url || values.nats)
      return usage("--baseline starts each side's own graph: --url and --nats do not apply");
    let g: ResolvedGraph;
    try {
      g = await loadGraph(values.graph);
    } catch (err) {
      if (err instanceof GraphConfigError) return usage(err.message);
      throw err;
    }
    const http = Object.values(g.nodes).find((n) => n.http)?.http;
    const sideArgs = [
      "--target",
      target,
      "--duration",
      values.duration,
      "--warmup",
      values.warmup,
      "--max-requests",
      values["max-requests"],
      "--concurrency",
      concurrency.join(","),
      "--images",
      imagesDir,
      "--no-stages",
      ...(values.graph ? ["--graph", values.graph] : []),
      ...params.flatMap((p) => ["--param", p]),
    ];
    const aborter = new AbortController();
    const onSignal = (): void => {
      progress("interrupted: stopping");
      aborter.abort();
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      const c = await runBaseline({
        repo: REPO_ROOT,
        rev: values.baseline,
        args: sideArgs,
        passes,
        signal: aborter.signal,
        progress,
        currentCommit: gitCommit(REPO_ROOT),
        ...(http && target !== INFER_TARGET ? { ingress: { host: http.host, port: http.port } } : {}),
      });
      const { json, file } = writeComparison(outDir, c);
      // This checkout's last pass is also this run's own result (latest.json and its chart).
      const last = c.results.current.at(-1) as BenchResult | undefined;
      if (last) writeResult(outDir, last);
      if (values.json) process.stdout.write(json);
      else
        process.stdout.write(
          formatComparison(c) + `wrote ${join(basename(outDir), file)} and baseline-latest.json in ${outDir}\n`,
        );
      return c.regressions.length && values["fail-on-regression"] ? 3 : 0;
    } catch (err) {
      if (err instanceof BaselineError) {
        process.stderr.write(`servegraph bench: ${err.message}\n`);
        return 1;
      }
      throw err;
    } finally {
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGTERM", onSignal);
    }
  }

  const startedAt = new Date().toISOString();
  const warnings: string[] = [];
  const machine = await machineBeforeRun(warnings, ": the numbers are lower than this machine can do");
  let fileGraph: ResolvedGraph;
  let graph: ResolvedGraph;
  try {
    fileGraph = await loadGraph(values.graph);
    graph = withParameterOverrides(fileGraph, params);
    // The nodes --param names are checked by their services' schemas before anything starts (as `up` does).
    const issues = await checkParams(graph, [...new Set(params.map((p) => p.slice(0, p.indexOf("."))))]);
    if (issues.length) throw new GraphConfigError(issues);
  } catch (err) {
    if (err instanceof GraphConfigError) return usage(err.message);
    throw err;
  }
  const aborter = new AbortController();
  const onSigint = (): void => {
    progress("interrupted: stopping");
    aborter.abort();
  };
  // SIGTERM too: without a handler the bench would die at once and leave the processes it started running.
  process.once("SIGINT", onSigint);
  process.once("SIGTERM", onSigint);
  const base = (
    m: MachineInfo,
  ): Pick<BenchResult, "version" | "startedAt" | "command" | "commit" | "machine" | "settings"> => ({
    version: 2,
    startedAt,
    command: ["servegraph bench", ...argv].join(" "),
    commit: gitCommit(REPO_ROOT),
    machine: m,
    settings: { durationS, warmupS, maxRequests, concurrency },
  });

  if (target === INFER_TARGET) {
    try {
      const r = await runInferTarget({
        graph: fileGraph,
        params,
        scriptsDir: BENCH_DIR,
        concurrency,
        durationS,
        warmupS,
        maxRequests,
        signal: aborter.signal,
        warnings,
        progress,
      });
      if (r.report.levels.length === 0) throw new Error("nothing was measured");
      busiestWarning(
        warnings,
        r.report.levels.map((l) => l.cpu?.otherCores),
      );
      machine.loadAvg1m.end = loadavg()[0]!;
      if (r.report.executionProvider === "cuda") {
        const g = gpuName();
        if (g) machine.gpu = g;
      }
      return finish(
        {
          ...base(machine),
          finishedAt: new Date().toISOString(),
          graph: {
            source: "started",
            ingressUrl: null,
            replicas: r.replicas,
            tracing: r.tracing,
            loadGenerator: NATS_LOAD_GENERATOR,
          },
          chain: null,
          classify: null,
          stages: null,
          infer: r.report,
          warnings,
        },
        outDir,
        values.json,
      );
    } catch (err) {
      if (err instanceof GraphConfigError) return usage(err.message);
      throw err;
    } finally {
      process.removeListener("SIGINT", onSigint);
      process.removeListener("SIGTERM", onSigint);
    }
  }

  let t: BenchTarget | undefined;
  let one: OneProcess | undefined;
  try {
    t = await openTarget({
      url: values.url,
      nats: values.nats,
      graph,
      warnings,
      progress,
      graphs: target === "all" ? [Target.CHAIN, Target.CLASSIFY] : [target],
    });
    if (params.length && t.source !== "started")
      warnings.push(
        `--param ${params.join(" ")} applies to a graph bench starts; the ${t.source} graph runs with its own parameters`,
      );
    const { ingressUrl, nc } = t;
    const replicas = await readyReplicas(ingressUrl);
    const served = servedTargets(replicas);
    for (const x of [Target.CHAIN, Target.CLASSIFY] as const) {
      if (target === x && !served[x])
        return usage(`the graph at ${ingressUrl} does not serve ${x} (readyz replicas: ${JSON.stringify(replicas)})`);
    }
    if (!served.chain && !served.classify)
      throw new Error(
        `the graph at ${ingressUrl} serves neither chain nor classify (readyz replicas: ${JSON.stringify(replicas)})`,
      );
    const wanted = (x: Target): boolean => (target === "all" || target === x) && served[x] && !aborter.signal.aborted;

    let inferReplicas: InferReplica[] = [];
    let maxBatchSize: number | null = null;
    if (served.classify) ({ replicas: inferReplicas, maxBatchSize } = await discoverInfer(nc, graph, warnings));

    const plan: LoadPlan = {
      ingressUrl,
      concurrency,
      durationS,
      warmupS,
      maxRequests,
      signal: aborter.signal,
      graphPids: t.graphPids,
      progress,
    };
    const chain = wanted(Target.CHAIN) ? await runChain(plan) : null;
    let classify: BenchResult["classify"] = null;
    let stages: BenchResult["stages"] = null;
    if (wanted(Target.CLASSIFY)) {
      const images = loadImages(imagesDir);
      if (images.bodies.length === 0) {
        warnings.push(`no images in ${imagesDir}: classify not measured`);
      } else {
        const shownDir = imagesDir.startsWith(REPO_ROOT) ? imagesDir.slice(REPO_ROOT.length + 1) : imagesDir;
        one = await oneProcessFor(graph, nc, inferReplicas, warnings);
        try {
          classify = await runClassify({
            ...plan,
            images,
            imagesDir: shownDir,
            maxBatchSize,
            nc,
            inferReplicas,
            oneProcess: one,
          });
        } finally {
          await one?.stop(); // before the stages: they want every core
          one = undefined;
        }
        if (classify.levels.length && !aborter.signal.aborted) {
          stages = await measureStages({
            graph,
            nc,
            inferReplicas,
            maxBatchSize,
            levels: classify.levels,
            images: images.files,
            durationS,
            maxImages: maxRequests,
            skip: values["no-stages"],
            graphPids: t.graphPids,
            progress,
            signal: aborter.signal,
          });
        }
      }
    }

    if (!chain && !classify) throw new Error("nothing was measured");
    busiestWarning(warnings, [
      ...[...(chain?.levels ?? []), ...(classify?.levels ?? []), ...(classify?.oneProcess?.levels ?? [])].map(
        (l) => l.cpu?.otherCores,
      ),
      stages?.cpu?.otherCores,
    ]);
    machine.loadAvg1m.end = loadavg()[0]!;
    if (inferReplicas.some((r) => r.executionProvider === "cuda")) {
      const g = gpuName();
      if (g) machine.gpu = g;
    }
    return finish(
      {
        ...base(machine),
        finishedAt: new Date().toISOString(),
        graph: {
          source: t.source,
          ingressUrl,
          replicas,
          tracing: t.source === "started" ? telemetryWanted() : null,
          loadGenerator: LOAD_GENERATOR,
        },
        chain,
        classify,
        stages,
        infer: null,
        warnings,
      },
      outDir,
      values.json,
    );
  } catch (err) {
    if (err instanceof BenchUsageError) return usage(err.message);
    throw err;
  } finally {
    process.removeListener("SIGINT", onSigint);
    process.removeListener("SIGTERM", onSigint);
    await one?.stop();
    await t?.close();
  }
}
