/**
 * The classify graph's two compute stages measured alone, in this process, with every core: the image
 * preprocessor (decode, blur, resize, normalize) and the model (one forward pass per batch). Together they
 * give the ceiling the end-to-end numbers are compared with. Run them while the graph is idle: they
 * compete for the same cores.
 */
import { availableParallelism } from "node:os";

export interface PreprocessStageResult {
  mode: string;
  inFlight: number;
  images: number;
  seconds: number;
  imagesPerS: number;
  /** Images of the set that the preprocessor refused (left out of the rate), with the reason. */
  refused: { index: number; reason: string }[];
}

export interface ModelBatchResult {
  batchSize: number;
  runs: number;
  /** Median time of one forward pass, milliseconds. */
  medianMs: number;
  imagesPerS: number;
}

export interface ModelStageResult {
  modelPath: string;
  executionProvider: string;
  intraOpNumThreads: number;
  allowSpinning: boolean;
  batches: ModelBatchResult[];
}

/**
 * Runs the preprocessor over `images` in turn with `inFlight` calls outstanding, first once over the set
 * (warm-up, and to leave out what it refuses), then for `durationS` or `maxImages`, whichever comes first.
 * Returns one tensor per accepted image as well, to feed the model stage with real inputs.
 */
export async function measurePreprocess(o: {
  images: readonly Uint8Array[];
  mode: "fast" | "exact";
  maxInputPixels: number;
  maxInputBytes: number;
  inFlight?: number;
  durationS: number;
  maxImages: number;
}): Promise<{ result: PreprocessStageResult; tensors: Float32Array[] }> {
  const { createPreprocessor } = await import("../../services/preprocess/src/index.ts");
  const pre = createPreprocessor({ mode: o.mode, maxInputPixels: o.maxInputPixels, maxInputBytes: o.maxInputBytes });
  const inFlight = o.inFlight ?? Math.max(4, 2 * availableParallelism());
  try {
    const refused: { index: number; reason: string }[] = [];
    const tensors: Float32Array[] = [];
    const accepted: Uint8Array[] = [];
    for (const [i, img] of o.images.entries()) {
      try {
        tensors.push(await pre.toTensor(img));
        accepted.push(img);
      } catch (err) {
        refused.push({ index: i, reason: err instanceof Error ? err.message : String(err) });
      }
    }
    if (accepted.length === 0) throw new Error("the preprocessor refused every image of the set");
    let started = 0;
    let done = 0;
    const t0 = performance.now();
    const endAt = t0 + o.durationS * 1000;
    const lane = async (): Promise<void> => {
      while (started < o.maxImages && performance.now() < endAt) {
        const img = accepted[started++ % accepted.length]!;
        await pre.toTensor(img);
        done++;
      }
    };
    await Promise.all(Array.from({ length: inFlight }, lane));
    const seconds = (performance.now() - t0) / 1000;
    return { result: { mode: o.mode, inFlight, images: done, seconds, imagesPerS: done / seconds, refused }, tensors };
  } finally {
    await pre.close();
  }
}

/**
 * Loads the model into a fresh host (its own worker thread, like the infer node) and times `runs` forward
 * passes per batch size after one warm-up pass, each bounded by `maxSecondsPerBatch`. Inputs are built
 * from `tensors` (real preprocessed images) when given, else zeros.
 */
export async function measureModel(o: {
  modelPath: string;
  executionProvider: "cpu" | "cuda";
  intraOpNumThreads: number;
  allowSpinning: boolean;
  batchSizes: readonly number[];
  runs: number;
  maxSecondsPerBatch: number;
  tensors?: readonly Float32Array[];
}): Promise<ModelStageResult> {
  const { createModelHost } = await import("../../services/infer/src/model-host.ts");
  const host = await createModelHost({
    modelPath: o.modelPath,
    executionProvider: o.executionProvider,
    intraOpNumThreads: o.intraOpNumThreads,
    allowSpinning: o.allowSpinning,
  });
  try {
    const row = host.inputShape.reduce((a, b) => a * b, 1);
    const input = (n: number): Float32Array => {
      const x = new Float32Array(n * row);
      const t = o.tensors ?? [];
      if (t.length) for (let i = 0; i < n; i++) x.set(t[i % t.length]!.subarray(0, row), i * row);
      return x;
    };
    const batches: ModelBatchResult[] = [];
    for (const b of [...new Set(o.batchSizes)].sort((x, y) => x - y)) {
      await host.run(input(b), b); // warm-up: first run at a new shape allocates
      const times: number[] = [];
      const t0 = performance.now();
      while (times.length < o.runs && (times.length === 0 || performance.now() - t0 < o.maxSecondsPerBatch * 1000)) {
        const x = input(b);
        const s = performance.now();
        await host.run(x, b);
        times.push(performance.now() - s);
      }
      times.sort((x, y) => x - y);
      const medianMs = times[Math.floor((times.length - 1) / 2)]!;
      batches.push({ batchSize: b, runs: times.length, medianMs, imagesPerS: (b * 1000) / medianMs });
    }
    return { modelPath: o.modelPath, executionProvider: host.executionProvider, intraOpNumThreads: o.intraOpNumThreads, allowSpinning: o.allowSpinning, batches };
  } finally {
    await host.close();
  }
}

/**
 * Model throughput for a mix of batch sizes: images / total time, with `count` batches of each size.
 * Undefined when a size of the mix was not measured.
 */
export function modelRateForMix(batches: readonly ModelBatchResult[], mix: readonly { size: number; count: number }[]): number | undefined {
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
export function stageLimit(preprocessPerS: number, modelPerS: number, modelOnGpu: boolean): { imagesPerS: number; rule: string } {
  if (modelOnGpu) return { imagesPerS: Math.min(preprocessPerS, modelPerS), rule: "min(preprocess, model): the model runs on the GPU, the stages overlap" };
  return { imagesPerS: 1 / (1 / preprocessPerS + 1 / modelPerS), rule: "1/(1/preprocess + 1/model): both stages share the CPU cores" };
}
