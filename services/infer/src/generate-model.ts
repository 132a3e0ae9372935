/**
 * Writes the generated ResNet18 ONNX model and prints its path.
 *   node --import tsx services/infer/src/generate-model.ts [outDir] [seed]
 * outDir defaults to `<repo>/.cache/models`, seed to 0. An existing file is reused.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ensureGeneratedModel } from "./model-gen.ts";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const [outArg, seedArg] = process.argv.slice(2);
const outDir = path.resolve(outArg ?? path.join(repoRoot, ".cache/models"));
const seed = seedArg === undefined ? 0 : Number(seedArg);
if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
  process.stderr.write(`seed must be an integer in [0, 2^32), got ${JSON.stringify(seedArg)}\n`);
  process.exit(2);
}
process.stdout.write(`${await ensureGeneratedModel(outDir, seed)}\n`);
