/**
 * Fidelity of the preprocess node against the reference Python pipeline (test/fixtures/golden, made
 * with Pillow 9.4 + numpy + torch on data/images):
 * - exact mode: the float32 CHW tensor is bit-identical (sha256) for every image, both as preprocess makes it
 *   (`toTensor`) and as infer makes it from the uint8 pixels preprocess sends (`toPixels` -> infer's batch row);
 * - with the ResNet18 model run on onnxruntime (CPU): both modes give the same top-5 classes in the
 *   same order, scores within 0.01.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { createPreprocessor, type Preprocessor } from "../../services/preprocess/src/pipeline.ts";
import { softmax, topK } from "../../services/preprocess/src/postprocess.ts";
import { writeBatchRow } from "../../services/infer/src/batch-input.ts";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const goldenDir = path.join(repoRoot, "test/fixtures/golden");
const imagesDir = path.join(repoRoot, "data/images");
const modelPath = path.resolve(repoRoot, "../shared/models/resnet18-seed0.onnx");
const modelMissing = existsSync(modelPath) ? false : `model not found at ${modelPath}`;

const readJson = <T>(file: string): T => JSON.parse(readFileSync(file, "utf8")) as T;

interface GoldenTensor {
  sha256: string;
  min: number;
  max: number;
  mean: number;
}
interface GoldenClass {
  index: number;
  label: string;
  score: number;
}

const tensorsGolden = readJson<Record<string, GoldenTensor>>(path.join(goldenDir, "tensors-sha256.json"));
const top5Golden = readJson<Record<string, GoldenClass[]>>(path.join(goldenDir, "top5.json"));
const imageOrder = readJson<{ images: string[]; shape: [number, number] }>(path.join(goldenDir, "logits.json"));
const logitsBytes = readFileSync(path.join(goldenDir, "logits.f32"));
const goldenLogits = new Float32Array(Uint8Array.prototype.slice.call(logitsBytes).buffer);
const labels = readJson<string[]>(path.join(repoRoot, "data/imagenet-labels.json"));
const images = new Map(imageOrder.images.map((name) => [name, readFileSync(path.join(imagesDir, name))]));

const LIMITS = { maxInputPixels: 50_000_000, maxInputBytes: 10 * 1024 * 1024 };
const SCORE_TOLERANCE = 0.01;

const sha256 = (t: Float32Array): string =>
  createHash("sha256")
    .update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength))
    .digest("hex");

test("preprocess fidelity - golden fixtures cover the same 20 images", () => {
  assert.equal(imageOrder.images.length, 20);
  assert.deepEqual(Object.keys(tensorsGolden).sort(), [...imageOrder.images].sort());
  assert.deepEqual(Object.keys(top5Golden).sort(), [...imageOrder.images].sort());
  assert.equal(goldenLogits.length, 20 * 1000);
});

describe("preprocess fidelity (exact)", () => {
  let pre: Preprocessor;
  before(() => {
    pre = createPreprocessor({ mode: "exact", ...LIMITS, exactWorkers: 2 });
  });
  after(() => pre.close());

  test("preprocess fidelity - exact mode tensors are bit-identical to the reference for all 20 images", async () => {
    const mismatches: string[] = [];
    for (const [name, bytes] of images) {
      const t = await pre.toTensor(bytes);
      assert.equal(t.length, 3 * 224 * 224);
      if (sha256(t) !== tensorsGolden[name]!.sha256) mismatches.push(name);
    }
    assert.deepEqual(mismatches, []);
  });

  test("preprocess fidelity - exact uint8 pixels, normalised by infer into a batch row, are the reference float32 bytes", async () => {
    const row = 3 * 224 * 224;
    // A shared batch slot of 3 rows, written at row 1 as infer writes a request that is second in its batch.
    const batch = new Float32Array(new SharedArrayBuffer(3 * row * 4));
    const mismatches: string[] = [];
    for (const [name, bytes] of images) {
      const pixels = await pre.toPixels(bytes);
      assert.equal(pixels.length, row);
      assert.ok(pixels instanceof Uint8Array);
      // As it arrives from NATS: a view at an odd byteOffset of a larger buffer.
      const wire = Buffer.alloc(row + 3);
      wire.set(pixels, 3);
      writeBatchRow(batch, 1, row, wire.subarray(3), "uint8");
      if (sha256(batch.subarray(row, 2 * row)) !== tensorsGolden[name]!.sha256) mismatches.push(name);
    }
    assert.deepEqual(mismatches, []);
  });
});

describe("preprocess fidelity with the model", { skip: modelMissing }, () => {
  let session: ort.InferenceSession;
  before(async () => {
    session = await ort.InferenceSession.create(modelPath, { executionProviders: ["cpu"], intraOpNumThreads: 1 });
  });
  after(() => session?.release());

  for (const mode of ["exact", "fast"] as const) {
    test(`preprocess fidelity - ${mode} mode gives the reference top-5 order, scores within ${SCORE_TOLERANCE}`, async (t) => {
      const pre = createPreprocessor({ mode, ...LIMITS, exactWorkers: 2 });
      let maxScoreDiff = 0;
      let maxLogitDiff = 0;
      try {
        for (const [i, name] of imageOrder.images.entries()) {
          const input = await pre.toTensor(images.get(name)!);
          const out = await session.run({ input: new ort.Tensor("float32", input, [1, 3, 224, 224]) });
          const logitsTensor = out.logits;
          assert.ok(logitsTensor !== undefined, "model output 'logits'");
          const logits = logitsTensor.data as Float32Array;
          assert.equal(logits.length, 1000);
          for (let j = 0; j < 1000; j++) {
            maxLogitDiff = Math.max(maxLogitDiff, Math.abs(logits[j]! - goldenLogits[i * 1000 + j]!));
          }
          const got = topK(softmax(logits), 5, labels);
          const expected = top5Golden[name]!;
          assert.deepEqual(
            got.map((c) => c.index),
            expected.map((c) => c.index),
            `${name}: top-5 order`,
          );
          assert.deepEqual(
            got.map((c) => c.label),
            expected.map((c) => c.label),
            `${name}: labels`,
          );
          for (const [k, c] of got.entries()) {
            const diff = Math.abs(c.score - expected[k]!.score);
            maxScoreDiff = Math.max(maxScoreDiff, diff);
            assert.ok(diff <= SCORE_TOLERANCE, `${name}: score ${k} off by ${diff}`);
          }
        }
      } finally {
        await pre.close();
      }
      t.diagnostic(
        `${mode}: max |score diff| ${maxScoreDiff.toExponential(3)}, max |logit diff| ${maxLogitDiff.toExponential(3)}`,
      );
      if (mode === "exact") {
        // Same tensor as the reference, so only the runtime differs (onnxruntime vs torch: ~1e-5).
        assert.ok(maxLogitDiff < 1e-4, `exact mode logits off by ${maxLogitDiff}`);
      }
    });
  }
});
