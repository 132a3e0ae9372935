/**
 * Classify: the graph against the one-process composition (one-process/server.ts: the same parts with no NATS
 * and no batching), at the same concurrencies, in the same run, interleaved so that both see the same machine.
 *
 * Schedule: one unrecorded warm-up of each at the highest concurrency, then PASSES passes; in each pass, for
 * each concurrency, the graph for durationS / PASSES seconds, then the one-process composition for as long. A
 * system's level is its passes merged (every answer's latency pooled; rate = answers / time), so each gets
 * durationS seconds per concurrency in all, and a burst of other load on the shared machine hits both.
 * Around each graph level infer's batch sizes are read (batches.ts); around every level, the CPU time of the
 * processes under test (the graph's, or the one process; the load generator excluded). After each level (and
 * warm-up) the bench waits as long as that level's slowest answer took (at most SETTLE_MAX_MS): the requests
 * autocannon abandoned when the level ended are still being worked on, and would otherwise run into the next
 * level, on the same cores, whichever system it measures.
 *
 * The headline is the graph as a fraction of the one-process composition: throughput at each concurrency, and
 * the p50 difference at C=1. Targets: >= 0.9x at C=16, p50 at C=1 within 3 ms.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { addBatches, startBatchCount, type InferReplica, type LevelBatches } from "./batches.ts";
import { startCpuSample, startProcessCpu, type CpuUse } from "./cpu.ts";
import {
  runLevel,
  runLevelWithSamples,
  summarize,
  type ClassifyLevel,
  type ClassifyReport,
  type ImageSet,
  type LoadLevelOptions,
  type LoadLevelResult,
  type LoadPlan,
  type PassedLevel,
} from "./load.ts";
import type { OneProcess } from "./one-process/launch.ts";

export const PASSES = 2;
const SETTLE_MAX_MS = 10_000;
export const ONE_PROCESS_GOALS = { minFractionAtC16: 0.9, maxP50DiffMsAtC1: 3 } as const;

export interface OneProcessReport {
  what: string;
  url: string;
  model: string;
  executionProvider: string;
  preprocessMode: string;
  intraOpNumThreads: number;
  levels: PassedLevel[];
}

export interface ComparisonRow {
  concurrency: number;
  graphRps: number;
  oneProcessRps: number;
  /** graph rate / one-process rate. */
  fraction: number | null;
  graphP50Ms: number | null;
  oneProcessP50Ms: number | null;
  /** graph p50 - one-process p50. */
  p50DiffMs: number | null;
  graphCpuMsPerImage: number | null;
  oneProcessCpuMsPerImage: number | null;
}

export interface Comparison {
  rows: ComparisonRow[];
  goals: {
    minFractionAtC16: number;
    maxP50DiffMsAtC1: number;
    fractionAtC16: number | null;
    p50DiffMsAtC1: number | null;
    fractionMet: boolean | null;
    p50Met: boolean | null;
  };
}

/** One pass of a level, as measured. */
export interface PassSample {
  result: LoadLevelResult;
  /** Response times of the 2xx answers, ms. */
  latencies: Float64Array;
  cpu: CpuUse | null;
  /** CPU seconds of the processes under test during the pass. */
  sutCpuS: number | null;
}

/** A level's passes merged: answers and time added, latencies pooled, CPU averaged over time. */
export function mergePasses(passes: readonly PassSample[]): PassedLevel {
  if (passes.length === 0) throw new RangeError("no passes to merge");
  const durationS = passes.reduce((a, p) => a + p.result.durationS, 0);
  const ok = passes.reduce((a, p) => a + p.result.ok, 0);
  const pooled = new Float64Array(passes.reduce((a, p) => a + p.latencies.length, 0));
  let at = 0;
  for (const p of passes) {
    pooled.set(p.latencies, at);
    at += p.latencies.length;
  }
  const statusCodes: Record<string, number> = {};
  for (const p of passes)
    for (const [k, v] of Object.entries(p.result.statusCodes)) statusCodes[k] = (statusCodes[k] ?? 0) + v;
  const cpus = passes.map((p) => p.cpu);
  const avg = (k: keyof CpuUse): number =>
    Math.round((passes.reduce((a, p) => a + p.cpu![k] * p.result.durationS, 0) / durationS) * 100) / 100;
  const cpu =
    cpus.every((c) => c !== null) && durationS > 0
      ? { machineCores: avg("machineCores"), ownCores: avg("ownCores"), otherCores: avg("otherCores") }
      : null;
  const sut = passes.map((p) => p.sutCpuS);
  const sutS = sut.every((s) => s !== null) ? sut.reduce((a, s) => a + s!, 0) : null;
  return {
    concurrency: passes[0]!.result.concurrency,
    durationS,
    ok,
    rps: durationS > 0 ? ok / durationS : 0,
    latencyMs: summarize(pooled),
    non2xx: passes.reduce((a, p) => a + p.result.non2xx, 0),
    errors: passes.reduce((a, p) => a + p.result.errors, 0),
    timeouts: passes.reduce((a, p) => a + p.result.timeouts, 0),
    statusCodes,
    cpu,
    cpuMsPerImage: sutS !== null && ok > 0 ? (sutS * 1000) / ok : null,
    passRps: passes.map((p) => p.result.rps),
  };
}

/** The graph's levels against the one-process composition's, concurrency by concurrency, and the targets. */
export function compareWithOneProcess(graph: readonly PassedLevel[], one: readonly PassedLevel[]): Comparison {
  const rows: ComparisonRow[] = [];
  for (const g of graph) {
    const o = one.find((l) => l.concurrency === g.concurrency);
    if (!o) continue;
    const gp = g.latencyMs?.p50 ?? null;
    const op = o.latencyMs?.p50 ?? null;
    rows.push({
      concurrency: g.concurrency,
      graphRps: g.rps,
      oneProcessRps: o.rps,
      fraction: o.rps > 0 ? g.rps / o.rps : null,
      graphP50Ms: gp,
      oneProcessP50Ms: op,
      p50DiffMs: gp !== null && op !== null ? gp - op : null,
      graphCpuMsPerImage: g.cpuMsPerImage,
      oneProcessCpuMsPerImage: o.cpuMsPerImage,
    });
  }
  const fractionAtC16 = rows.find((r) => r.concurrency === 16)?.fraction ?? null;
  const p50DiffMsAtC1 = rows.find((r) => r.concurrency === 1)?.p50DiffMs ?? null;
  return {
    rows,
    goals: {
      ...ONE_PROCESS_GOALS,
      fractionAtC16,
      p50DiffMsAtC1,
      fractionMet: fractionAtC16 === null ? null : fractionAtC16 >= ONE_PROCESS_GOALS.minFractionAtC16,
      p50Met: p50DiffMsAtC1 === null ? null : p50DiffMsAtC1 <= ONE_PROCESS_GOALS.maxP50DiffMsAtC1,
    },
  };
}

export interface ClassifyPlan extends LoadPlan {
  images: ImageSet;
  /** How the report names the images' folder. */
  imagesDir: string;
  maxBatchSize: number | null;
  nc: NatsConnection | undefined;
  inferReplicas: readonly InferReplica[];
  /** The one-process composition, started; undefined: the graph alone (a warning says why). */
  oneProcess: OneProcess | undefined;
}

const ROUTE = "POST /classify (raw image body)";

export async function runClassify(plan: ClassifyPlan): Promise<ClassifyReport> {
  const bodies = plan.images.bodies;
  const graphReq = { url: plan.ingressUrl, method: "POST" as const, path: "/classify", bodies };
  const one = plan.oneProcess;
  const oneReq = one ? { ...graphReq, url: one.ready.url } : undefined;
  const perPassS = plan.durationS / PASSES;
  const maxC = Math.max(...plan.concurrency);
  const graphPids = await plan.graphPids();
  const allPids = one ? [...graphPids, one.pid] : graphPids;

  /** Lets the requests a level abandoned finish (see the top of this file). */
  const settle = (r: LoadLevelResult): Promise<void> =>
    new Promise((res) =>
      setTimeout(res, plan.signal.aborted ? 0 : Math.min(SETTLE_MAX_MS, (r.latencyMs?.max ?? 0) + 100)),
    );
  const level = async (o: LoadLevelOptions, sutPids: number[]): Promise<PassSample> => {
    const cpu = startCpuSample(allPids);
    const sut = startProcessCpu(sutPids);
    const { result, latencies } = await runLevelWithSamples(o, plan.signal);
    const sample = { result, latencies, cpu: cpu.stop(), sutCpuS: sut.stop() };
    await settle(result);
    return sample;
  };

  if (plan.warmupS > 0) {
    plan.progress(`classify warm-up: graph${one ? " and one-process" : ""} at C=${maxC} for ${plan.warmupS} s each`);
    await settle(
      await runLevel(
        { ...graphReq, connections: maxC, durationS: plan.warmupS, maxRequests: plan.maxRequests },
        plan.signal,
      ),
    );
    if (oneReq)
      await settle(
        await runLevel(
          { ...oneReq, connections: maxC, durationS: plan.warmupS, maxRequests: plan.maxRequests },
          plan.signal,
        ),
      );
  }
  const graphPasses = new Map<number, PassSample[]>();
  const onePasses = new Map<number, PassSample[]>();
  const batches = new Map<number, LevelBatches | null>();
  for (let pass = 1; pass <= PASSES; pass++) {
    for (const c of plan.concurrency) {
      if (plan.signal.aborted) break;
      const o = { connections: c, durationS: perPassS, maxRequests: plan.maxRequests };
      plan.progress(
        `classify pass ${pass}/${PASSES} C=${c}: graph ${perPassS} s${one ? `, one-process ${perPassS} s` : ""}`,
      );
      const batchesSince = await startBatchCount(plan.nc, plan.inferReplicas);
      const g = await level({ ...graphReq, ...o }, graphPids);
      const b = await batchesSince();
      batches.set(c, batches.has(c) ? addBatches(batches.get(c)!, b) : b);
      graphPasses.set(c, [...(graphPasses.get(c) ?? []), g]);
      if (oneReq && !plan.signal.aborted)
        onePasses.set(c, [...(onePasses.get(c) ?? []), await level({ ...oneReq, ...o }, [one!.pid])]);
    }
  }
  const levels: ClassifyLevel[] = [...graphPasses].map(([c, ps]) => ({
    ...mergePasses(ps),
    batches: batches.get(c) ?? null,
    fractionOfLimit: null,
    limitImagesPerS: null,
  }));
  const oneLevels = [...onePasses].map(([, ps]) => mergePasses(ps));
  const oneProcess: OneProcessReport | null = one
    ? {
        what: "the same parts in one process (tools/perf/bench/one-process/server.ts): Fastify, createPreprocessor, createModelHost, softmax + top-k; no NATS, no batching (one forward pass of batch 1 per request)",
        url: one.ready.url,
        model: one.ready.model,
        executionProvider: one.ready.executionProvider,
        preprocessMode: one.ready.mode,
        intraOpNumThreads: one.ready.intraOpNumThreads,
        levels: oneLevels,
      }
    : null;
  return {
    route: ROUTE,
    imagesDir: plan.imagesDir,
    images: plan.images.names,
    maxBatchSize: plan.maxBatchSize,
    schedule: `${PASSES} passes of ${perPassS} s per level, ${one ? "graph then one-process at each concurrency" : "graph alone"}, after a ${plan.warmupS} s warm-up of each at C=${maxC}`,
    levels,
    oneProcess,
    comparison: oneProcess ? compareWithOneProcess(levels, oneLevels) : null,
  };
}
