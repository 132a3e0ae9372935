/**
 * The preprocess stage measured alone, in a process of its own: `servegraph bench` runs it while the graph is
 * idle and compares the end-to-end rate with what this stage (and infer's) can do on the machine's cores.
 *
 *   node --import tsx tools/perf/stages/preprocess.ts '<input json>'     (or the JSON on stdin)
 *
 * Input: `{ images, parameters, durationS, maxImages, inFlight?, tensorsFile? }`
 * - `images`: image files, used in turn.
 * - `parameters`: the node's parameters as graph.config.ts resolves them (strings), parsed by this service's
 *   schema (params.ts), so the preprocessor is the one a replica would build.
 * - `inFlight`: calls kept outstanding (default: twice the available cores, at least 4), as a replica serving
 *   several requests at once.
 * - `tensorsFile`: where to write the tensors of the accepted images (normalised float32 in the platform's byte
 *   order, one after the other), so the model stage can run on real inputs.
 *
 * What is timed is what a replica does per image: `toPixels` (the uint8 pixels sent to infer).
 *
 * It runs once over the set first (warm-up, and to leave out the images the preprocessor refuses), then for
 * `durationS` seconds or `maxImages` images, whichever comes first.
 *
 * Output: one line of JSON on stdout, `{ mode, inFlight, images, seconds, imagesPerS, refused: [{ index, reason }],
 * tensors?: { file, count, length } }`. Exit code 1 when it failed (every image refused, a file unreadable),
 * 2 for bad input; the reason goes to stderr.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { z } from "zod";
import { normalizeChw } from "../../../subjects/image-normalization.ts";
import { createPreprocessor, TENSOR_LENGTH } from "../../../services/preprocess/src/index.ts";
import params from "../../../services/preprocess/src/params.ts";
import { runJsonScript } from "../../../runtime/index.ts";

const Input = z.strictObject({
  images: z.array(z.string().min(1)).min(1),
  parameters: z.record(z.string(), z.string()),
  durationS: z.number().positive(),
  maxImages: z.number().int().min(1),
  inFlight: z.number().int().min(1).max(4096).optional(),
  tensorsFile: z.string().min(1).optional(),
});
type Input = z.output<typeof Input>;

export interface PreprocessStageOutput {
  mode: string;
  inFlight: number;
  /** Images preprocessed during the timed part. */
  images: number;
  seconds: number;
  imagesPerS: number;
  /** Images of the set that the preprocessor refused (left out of the rate), with the reason. */
  refused: { index: number; reason: string }[];
  tensors?: { file: string; count: number; length: number };
}

async function measure(input: Input): Promise<PreprocessStageOutput> {
  const p = params.parse(input.parameters);
  const pre = createPreprocessor({
    mode: p.PREPROCESS_MODE,
    maxInputPixels: p.MAX_INPUT_PIXELS,
    maxInputBytes: p.MAX_INPUT_BYTES,
  });
  const inFlight = input.inFlight ?? Math.max(4, 2 * availableParallelism());
  try {
    const refused: { index: number; reason: string }[] = [];
    const tensors: Float32Array[] = [];
    const accepted: Uint8Array[] = [];
    for (const [i, file] of input.images.entries()) {
      const img = readFileSync(file);
      try {
        const pixels = await pre.toPixels(img);
        tensors.push(normalizeChw(pixels, new Float32Array(pixels.length)));
        accepted.push(img);
      } catch (err) {
        refused.push({ index: i, reason: err instanceof Error ? err.message : String(err) });
      }
    }
    if (accepted.length === 0) throw new Error("the preprocessor refused every image of the set");
    let written: PreprocessStageOutput["tensors"];
    if (input.tensorsFile) {
      writeFileSync(
        input.tensorsFile,
        Buffer.concat(tensors.map((t) => Buffer.from(t.buffer, t.byteOffset, t.byteLength))),
      );
      written = { file: input.tensorsFile, count: tensors.length, length: TENSOR_LENGTH };
    }
    let started = 0;
    let done = 0;
    const t0 = performance.now();
    const endAt = t0 + input.durationS * 1000;
    const lane = async (): Promise<void> => {
      while (started < input.maxImages && performance.now() < endAt) {
        const img = accepted[started++ % accepted.length]!;
        await pre.toPixels(img);
        done++;
      }
    };
    await Promise.all(Array.from({ length: inFlight }, lane));
    const seconds = (performance.now() - t0) / 1000;
    return {
      mode: p.PREPROCESS_MODE,
      inFlight,
      images: done,
      seconds,
      imagesPerS: done / seconds,
      refused,
      ...(written ? { tensors: written } : {}),
    };
  } finally {
    await pre.close();
  }
}

await runJsonScript("preprocess stage-bench", Input, measure);
