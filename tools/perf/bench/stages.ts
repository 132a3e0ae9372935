/**
 * The classify graph's two compute stages measured alone, with the graph idle: the image preprocessor
 * (decode, blur, resize, normalize) and the model (one forward pass per batch). Together they give the
 * ceiling the end-to-end numbers are compared with.
 *
 * Each stage is measured with its service's own code, in a process of its own (tools/perf/stages/<service>.ts,
 * JSON in on stdin, one line of JSON out on stdout), one after the other, so each has every core, and bench loads
 * neither sharp nor onnxruntime nor any service code. The services read their parameters from the graph
 * (graph.config.ts, resolved), overridden by what the running replicas report: the preprocess mode, and
 * infer's model file and execution provider.
 *  - preprocess: images/s with several images in flight, over the classify images;
 *  - model: median forward-pass time per batch size, for the sizes infer formed during the levels, with the
 *    preprocessed images as inputs.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { z } from "zod";
import type { NatsConnection } from "@nats-io/transport-node";
import { gather, type ResolvedGraph } from "../../../runtime/index.ts";
import { Discovery } from "../../../subjects/names.ts";
import { batchMix, type InferReplica } from "./batches.ts";
import { startCpuSample, type CpuUse } from "./cpu.ts";
import type { ClassifyLevel } from "./load.ts";

// What the stage scripts print. Plain (not strict) objects: fields the report does not know are left out of it.
const PreprocessStageResult = z.object({
  mode: z.string(),
  inFlight: z.number(),
  images: z.number(),
  seconds: z.number(),
  imagesPerS: z.number(),
  /** Images of the set that the preprocessor refused (left out of the rate), with the reason. */
  refused: z.array(z.object({ index: z.number(), reason: z.string() })),
});
const PreprocessStageOutput = PreprocessStageResult.extend({
  tensors: z.object({ file: z.string(), count: z.number(), length: z.number() }).optional(),
});
const ModelBatchResult = z.object({
  batchSize: z.number(),
  runs: z.number(),
  /** Median time of one forward pass, milliseconds. */
  medianMs: z.number(),
  imagesPerS: z.number(),
});
const ModelStageResult = z.object({
  modelPath: z.string(),
  executionProvider: z.string(),
  intraOpNumThreads: z.number(),
  allowSpinning: z.boolean(),
  batches: z.array(ModelBatchResult),
});

export type PreprocessStageResult = z.output<typeof PreprocessStageResult>;
export type ModelBatchResult = z.output<typeof ModelBatchResult>;
export type ModelStageResult = z.output<typeof ModelStageResult>;

export interface StagesReport {
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
}

const WHEN = "after the HTTP load, with the graph idle, each stage in a process of its own with every core";
/** Forward passes timed per batch size, and the time after which fewer do. */
const MODEL_RUNS = 5;
const MODEL_MAX_SECONDS_PER_BATCH = 3;
/** Beyond its own measuring time, how long a stage script may take (start-up, model load, warm-up) before it is killed. */
const SCRIPT_GRACE_MS = 120_000;

/**
 * Runs tools/perf/stages/<service folder>.ts for `node` with `input` on stdin and returns the last line
 * of its stdout, parsed by `schema`. Rejects with the end of its stderr when it fails, with an AbortError
 * when `signal` aborts (the script is killed).
 */
function runStageScript<S extends z.ZodType>(
  graph: ResolvedGraph,
  node: string,
  input: unknown,
  schema: S,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<z.output<S>> {
  const service = graph.nodes[node]!.service;
  const script = resolve(import.meta.dirname, "../stages", `${basename(service)}.ts`);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", script], {
      cwd: graph.root,
      stdio: ["pipe", "pipe", "pipe"],
      signal,
      timeout: timeoutMs,
      killSignal: "SIGKILL",
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
    child.on("error", reject);
    child.on("close", (code, sig) => {
      if (signal.aborted) return reject(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
      const why = stderr.trim().split("\n").slice(-5).join("\n");
      if (code !== 0)
        return reject(
          new Error(
            `${basename(script)} of ${service} failed (${sig ? `killed by ${sig}${sig === "SIGKILL" ? `, past ${timeoutMs / 1000} s` : ""}` : `exit code ${code}`})${why ? `: ${why}` : ""}`,
          ),
        );
      const last = stdout.trim().split("\n").pop() ?? "";
      try {
        resolvePromise(schema.parse(JSON.parse(last)));
      } catch (err) {
        reject(
          new Error(
            `${basename(script)} of ${service} printed no result: ${err instanceof Error ? err.message : String(err)}`,
          ),
        );
      }
    });
    child.stdin.on("error", () => {}); // a script that dies before reading its input reports through "close"
    child.stdin.end(JSON.stringify(input));
  });
}

/**
 * Model throughput for a mix of batch sizes: images / total time, with `count` batches of each size.
 * Undefined when a size of the mix was not measured.
 */
export function modelRateForMix(
  batches: readonly ModelBatchResult[],
  mix: readonly { size: number; count: number }[],
): number | undefined {
  let images = 0;
  let ms = 0;
  for (const { size, count } of mix) {
    if (count === 0) continue;
    const m = batches.find((b) => b.batchSize === size);
    if (!m) return undefined;
    images += size * count;
    ms += m.medianMs * count;
  }
  return ms > 0 ? (images * 1000) / ms : undefined;
}

/**
 * The most images per second the two stages allow together. On one machine's CPU they share the cores,
 * so per image the times add: 1 / (1/pre + 1/model). With the model on a GPU they overlap, and the
 * slower stage is the limit.
 */
export function stageLimit(
  preprocessPerS: number,
  modelPerS: number,
  modelOnGpu: boolean,
): { imagesPerS: number; rule: string } {
  if (modelOnGpu)
    return {
      imagesPerS: Math.min(preprocessPerS, modelPerS),
      rule: "min(preprocess, model): the model runs on the GPU, the stages overlap",
    };
  return {
    imagesPerS: 1 / (1 / preprocessPerS + 1 / modelPerS),
    rule: "1/(1/preprocess + 1/model): both stages share the CPU cores",
  };
}

export interface StagesPlan {
  graph: ResolvedGraph;
  nc: NatsConnection | undefined;
  inferReplicas: readonly InferReplica[];
  maxBatchSize: number | null;
  /** The classify levels: each gets its `limitImagesPerS` and `fractionOfLimit` set. */
  levels: ClassifyLevel[];
  /** Image files, the same the classify levels sent. */
  images: readonly string[];
  /** The preprocess stage runs min(durationS, 5) seconds or maxImages images. */
  durationS: number;
  maxImages: number;
  /** `--no-stages`: report them as skipped. */
  skip: boolean;
  graphPids: () => Promise<number[]>;
  progress: (line: string) => void;
  signal: AbortSignal;
}

const skipped = (why: string): StagesReport => ({
  when: WHEN,
  preprocess: null,
  model: null,
  modelImagesPerS: null,
  limitImagesPerS: null,
  limitRule: null,
  bestFractionOfLimit: null,
  skipped: why,
});

/** Measures both stages and sets each classify level's fraction of the limit they imply. */
export async function measureStages(p: StagesPlan): Promise<StagesReport> {
  if (p.skip) return skipped("--no-stages");
  const model = p.inferReplicas.find((r) => r.model)?.model;
  if (!model) return skipped("infer's model file is unknown (no $SRV.INFO metadata over NATS)");
  const pre = p.graph.nodes.preprocess;
  const infer = p.graph.nodes.infer;
  if (!pre || !infer) return skipped(`${p.graph.file} has no ${pre ? "infer" : "preprocess"} node to measure`);

  await new Promise((r) => setTimeout(r, 1000)); // let in-flight work and ORT's spinning threads settle
  const stageCpu = startCpuSample(await p.graphPids());
  const dir = mkdtempSync(join(tmpdir(), "sg-bench-stages-"));
  try {
    const preInfo = p.nc
      ? await gather<{ metadata?: Record<string, string> }>(p.nc, Discovery.info("preprocess"), 300)
      : [];
    const runningMode = preInfo.find((i) => i.metadata?.preprocess_mode)?.metadata?.preprocess_mode;
    const durationS = Math.min(p.durationS, 5);
    p.progress(`preprocess alone${runningMode ? ` (${runningMode})` : ""} for ${durationS} s`);
    const preOut = await runStageScript(
      p.graph,
      pre.name,
      {
        images: p.images,
        parameters: { ...pre.parameters, ...(runningMode ? { PREPROCESS_MODE: runningMode } : {}) },
        durationS,
        maxImages: p.maxImages,
        tensorsFile: join(dir, "tensors.f32"),
      },
      PreprocessStageOutput,
      durationS * 1000 + SCRIPT_GRACE_MS,
      p.signal,
    );
    const { tensors, ...preprocess } = preOut;

    const sizes = [...new Set(p.levels.flatMap((l) => batchMix(l.batches, p.maxBatchSize).map((m) => m.size)))];
    if (sizes.length === 0) sizes.push(1);
    sizes.sort((a, b) => a - b);
    const ep = p.inferReplicas.find((r) => r.executionProvider)?.executionProvider === "cuda" ? "cuda" : "cpu";
    p.progress(`model alone (${ep}) at batch sizes ${sizes.join(", ")}`);
    const mod = await runStageScript(
      p.graph,
      infer.name,
      {
        modelPath: model,
        parameters: { ...infer.parameters, EXECUTION_PROVIDER: ep },
        batchSizes: sizes,
        runs: MODEL_RUNS,
        maxSecondsPerBatch: MODEL_MAX_SECONDS_PER_BATCH,
        ...(tensors ? { tensors: { file: tensors.file, length: tensors.length } } : {}),
      },
      ModelStageResult,
      sizes.length * (MODEL_RUNS + 1) * MODEL_MAX_SECONDS_PER_BATCH * 1000 + SCRIPT_GRACE_MS,
      p.signal,
    );

    const onGpu = mod.executionProvider === "cuda";
    const rateFor = (l: ClassifyLevel): number | undefined => {
      const mix = batchMix(l.batches, p.maxBatchSize);
      return modelRateForMix(mod.batches, mix.length ? mix : [{ size: 1, count: 1 }]);
    };
    for (const l of p.levels) {
      const rate = rateFor(l);
      if (rate === undefined) continue;
      l.limitImagesPerS = stageLimit(preprocess.imagesPerS, rate, onGpu).imagesPerS;
      l.fractionOfLimit = l.rps / l.limitImagesPerS;
    }
    const best = p.levels.reduce((a, b) => (b.rps > a.rps ? b : a));
    const modelRate = rateFor(best) ?? null;
    const lim = modelRate !== null ? stageLimit(preprocess.imagesPerS, modelRate, onGpu) : null;
    return {
      when: WHEN,
      preprocess,
      model: mod,
      modelImagesPerS: modelRate,
      limitImagesPerS: lim?.imagesPerS ?? null,
      limitRule: lim?.rule ?? null,
      bestFractionOfLimit: best.fractionOfLimit,
      cpu: stageCpu.stop(),
    };
  } catch (err) {
    if (p.signal.aborted) return skipped("interrupted");
    throw err;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
