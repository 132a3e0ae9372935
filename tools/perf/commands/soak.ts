/**
 * servegraph soak: holds the classify graph at a steady share of its capacity for a long time and reports what
 * drifts: the memory of every process (replicas and nats-server), latency minute by minute, errors.
 *
 *   servegraph soak [--duration 600] [--load 0.8] [--capacity-duration 10] [--concurrency 16] [--window 60]
 *                   [--sample 5] [--images data/images] [--url http://127.0.0.1:8080] [--nats url]
 *                   [--out bench-results] [--json] [--graph file]
 *
 * 1. The graph: the same search as bench (tools/perf/bench/target.ts): --url, else the one `servegraph up` started, else
 *    it starts its own classify graph (nats-server + ingress, preprocess, infer) and stops it at the end.
 * 2. Capacity: a closed loop at --concurrency for --capacity-duration seconds after a short warm-up
 *    (tools/perf/soak/phases.ts): images/s answered 2xx.
 * 3. The soak: an open loop at --load x capacity for --duration seconds (tools/perf/soak/open-loop.ts): requests leave on
 *    a fixed schedule whatever the answers do; latency runs from each request's scheduled time.
 * 4. Every --sample seconds the RSS of every graph process (tools/perf/soak/memory.ts); per --window (60 s, or a quarter
 *    of a shorter run) requests, errors, p50 and p99 (tools/perf/soak/windows.ts).
 *
 * Reports the windows, the p99 drift (first window vs last), every process's RSS at the start and the end, and
 * the errors, as a table (or the JSON with --json), and writes <out>/soak-latest.json (tools/perf/soak/report.ts).
 * Loopback only. Exit codes: 0 done; 1 the graph failed, a graph process exited during the soak, or more than 1%
 * of requests failed (tools/perf/soak/verdict.ts); 2 bad usage.
 */
import { loadavg } from "node:os";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadGraph } from "../../../runtime/index.ts";
import { loadImages } from "../bench/load.ts";
import { gitCommit } from "../bench/machine.ts";
import { machineBeforeRun, parseLoadArgs } from "../bench/shared-cli.ts";
import { BenchUsageError, openTarget, readyReplicas, servedTargets, type BenchTarget } from "../bench/target.ts";
import { MAX_IN_FLIGHT } from "../soak/open-loop.ts";
import { measureCapacity, soakAt } from "../soak/phases.ts";
import { formatSoak, writeSoak, type SoakResult } from "../soak/report.ts";
import { soakProblems } from "../soak/verdict.ts";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

function usage(msg: string): number {
  process.stderr.write(`servegraph soak: ${msg}\n`);
  return 2;
}

function progress(line: string): void {
  process.stderr.write(`[soak] ${line}\n`);
}

export async function run(argv: string[]): Promise<number> {
  const args = parseLoadArgs(
    argv,
    {
      duration: { type: "string", default: "600" },
      load: { type: "string", default: "0.8" },
      "capacity-duration": { type: "string", default: "10" },
      concurrency: { type: "string", default: "16" },
      window: { type: "string" },
      sample: { type: "string", default: "5" },
    },
    usage,
  );
  if (typeof args === "number") return args;
  const { values, imagesDir, outDir } = args;
  const durationS = Number(values.duration);
  const load = Number(values.load);
  const capacityDurationS = Number(values["capacity-duration"]);
  const concurrency = Number(values.concurrency);
  const sampleS = Number(values.sample);
  const windowS = values.window === undefined ? Math.min(60, durationS / 4) : Number(values.window);
  if (!(durationS >= 10 && durationS <= 24 * 3600))
    return usage("--duration must be a number of seconds in [10, 86400]");
  if (!(load > 0 && load <= 1.5)) return usage("--load must be a fraction of the capacity in (0, 1.5]");
  if (!(capacityDurationS >= 2 && capacityDurationS <= 120))
    return usage("--capacity-duration must be a number of seconds in [2, 120]");
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1024)
    return usage("--concurrency must be an integer in 1..1024");
  if (!(sampleS >= 1 && sampleS <= 600)) return usage("--sample must be a number of seconds in [1, 600]");
  if (!(windowS >= 1 && windowS <= durationS)) return usage("--window must be a number of seconds in [1, --duration]");
  const images = loadImages(imagesDir);
  if (images.bodies.length === 0) return usage(`no images in ${imagesDir}`);

  const startedAt = new Date().toISOString();
  const warnings: string[] = [];
  const machine = await machineBeforeRun(warnings);
  const graph = await loadGraph(values.graph);
  const aborter = new AbortController();
  const onSigint = (): void => {
    progress("interrupted: finishing with what was measured");
    aborter.abort();
  };
  process.once("SIGINT", onSigint);

  let t: BenchTarget | undefined;
  try {
    t = await openTarget({ url: values.url, nats: values.nats, graph, warnings, progress, graphs: ["classify"] });
    const replicas = await readyReplicas(t.ingressUrl);
    if (!servedTargets(replicas).classify)
      return usage(
        `the graph at ${t.ingressUrl} does not serve classify (readyz replicas: ${JSON.stringify(replicas)})`,
      );
    const phase = { target: t, bodies: images.bodies, signal: aborter.signal, progress };

    const cap = await measureCapacity({ ...phase, concurrency, durationS: capacityDurationS });
    const offeredPerS = cap.rps * load;
    progress(
      `capacity ${cap.rps.toFixed(1)} images/s; soaking at ${offeredPerS.toFixed(1)}/s (${Math.round(load * 100)}%) for ${durationS} s`,
    );
    const { soak, processes } = await soakAt({
      ...phase,
      ratePerS: offeredPerS,
      durationS,
      sampleS,
      windowS,
      warnings,
    });
    const problems = soakProblems(processes, soak.errors.rate);

    machine.loadAvg1m.end = loadavg()[0]!;
    const result: SoakResult = {
      version: 1,
      startedAt,
      finishedAt: new Date().toISOString(),
      command: ["servegraph", "soak", ...argv].join(" "),
      commit: gitCommit(REPO_ROOT),
      machine,
      graph: { source: t.source, ingressUrl: t.ingressUrl, replicas },
      settings: {
        durationS,
        load,
        capacityDurationS,
        concurrency,
        windowS,
        sampleS,
        images: images.names,
        maxInFlight: MAX_IN_FLIGHT,
      },
      capacity: { imagesPerS: cap.rps, latencyMs: cap.latencyMs, errors: cap.errors, non2xx: cap.non2xx },
      offeredPerS,
      soak,
      processes,
      healthy: problems.length === 0,
      problems,
      warnings,
    };
    const { json, file } = writeSoak(outDir, result);
    process.stdout.write(values.json ? json : formatSoak(result) + `\nwrote ${file}\n`);
    return result.healthy ? 0 : 1;
  } catch (err) {
    if (err instanceof BenchUsageError) return usage(err.message);
    throw err;
  } finally {
    process.removeListener("SIGINT", onSigint);
    await t?.close();
  }
}
