/**
 * The model stage measured alone, in a process of its own: `servegraph bench` runs it while the graph is idle
 * and compares the end-to-end rate with what this stage (and preprocess's) can do on the machine's cores.
 *
 *   node --import tsx tools/perf/stages/infer.ts '<input json>'     (or the JSON on stdin)
 *
 * Input: `{ modelPath, parameters, batchSizes, runs, maxSecondsPerBatch, tensors? }`
 * - `modelPath`: the ONNX file (the one a running replica reports it loaded).
 * - `parameters`: the node's parameters as graph.config.ts resolves them (strings), parsed by this service's
 *   schema (params.ts); EXECUTION_PROVIDER, INTRA_OP_THREADS and ALLOW_SPINNING set up the session as they
 *   do in a replica (INTRA_OP_THREADS 0: every available core). MODEL is not read: `modelPath` names the file.
 * - `tensors`: `{ file, length }`, real preprocessed images (float32 in the platform's byte order, `length`
 *   values each, one after the other) to build the batches from; zeros without it.
 *
 * The model is loaded into a model host (its own worker thread, as in a replica). For each batch size, in
 * ascending order: one warm-up pass (the first run at a new shape allocates), then `runs` timed passes, fewer
 * when they take longer than `maxSecondsPerBatch` together (at least one).
 *
 * Output: one line of JSON on stdout, `{ modelPath, executionProvider, intraOpNumThreads, allowSpinning,
 * batches: [{ batchSize, runs, medianMs, imagesPerS }] }`, `medianMs` being the median time of one forward
 * pass. Exit code 1 when it failed (model not loadable, a run failed), 2 for bad input; the reason goes to stderr.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { z } from "zod";
import { createModelHost } from "../../../services/infer/src/model-host.ts";
import params from "../../../services/infer/src/params.ts";
import { runJsonScript } from "../../../runtime/index.ts";

const Input = z.strictObject({
  modelPath: z.string().min(1),
  parameters: z.record(z.string(), z.string()),
  batchSizes: z.array(z.number().int().min(1).max(4096)).min(1),
  runs: z.number().int().min(1),
  maxSecondsPerBatch: z.number().positive(),
  tensors: z.strictObject({ file: z.string().min(1), length: z.number().int().min(1) }).optional(),
});
type Input = z.output<typeof Input>;

export interface ModelBatchOutput {
  batchSize: number;
  runs: number;
  /** Median time of one forward pass, milliseconds. */
  medianMs: number;
  imagesPerS: number;
}

export interface ModelStageOutput {
  modelPath: string;
  executionProvider: string;
  intraOpNumThreads: number;
  allowSpinning: boolean;
  batches: ModelBatchOutput[];
}

/** The tensors of `file`, `length` values each; a copy, so the views are aligned whatever the file buffer is. */
function readTensors(file: string, length: number): Float32Array[] {
  const buf = readFileSync(file);
  const all = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  return Array.from({ length: Math.floor(all.length / length) }, (_, i) => all.subarray(i * length, (i + 1) * length));
}

async function measure(input: Input): Promise<ModelStageOutput> {
  const p = params.parse(input.parameters);
  const intraOpNumThreads = p.INTRA_OP_THREADS || availableParallelism();
  const host = await createModelHost({
    modelPath: input.modelPath,
    executionProvider: p.EXECUTION_PROVIDER,
    intraOpNumThreads,
    allowSpinning: p.ALLOW_SPINNING,
    log: (msg, attrs) => process.stderr.write(`${msg}${attrs ? ` ${JSON.stringify(attrs)}` : ""}\n`),
  });
  try {
    const tensors = input.tensors ? readTensors(input.tensors.file, input.tensors.length) : [];
    const row = host.inputShape.reduce((a, b) => a * b, 1);
    // Batches are built in the host's reused batch slots, as a replica's are.
    const fill =
      (n: number) =>
      (x: Float32Array): void => {
        if (tensors.length) for (let i = 0; i < n; i++) x.set(tensors[i % tensors.length]!.subarray(0, row), i * row);
        else x.fill(0);
      };
    const batches: ModelBatchOutput[] = [];
    for (const b of [...new Set(input.batchSizes)].sort((x, y) => x - y)) {
      await host.runBatch(b, fill(b));
      const times: number[] = [];
      const t0 = performance.now();
      while (
        times.length < input.runs &&
        (times.length === 0 || performance.now() - t0 < input.maxSecondsPerBatch * 1000)
      ) {
        const s = performance.now();
        await host.runBatch(b, fill(b));
        times.push(performance.now() - s);
      }
      times.sort((x, y) => x - y);
      const medianMs = times[Math.floor((times.length - 1) / 2)]!;
      batches.push({ batchSize: b, runs: times.length, medianMs, imagesPerS: (b * 1000) / medianMs });
    }
    return {
      modelPath: input.modelPath,
      executionProvider: host.executionProvider,
      intraOpNumThreads,
      allowSpinning: p.ALLOW_SPINNING,
      batches,
    };
  } finally {
    await host.close();
  }
}

await runJsonScript("infer stage-bench", Input, measure);
