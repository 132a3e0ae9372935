/**
 * Writes a generated ONNX model and prints its path.
 *   node --import tsx services/infer/src/generate-model.ts [outDir] [seed] [resnet18|trivial]
 * outDir defaults to `<repo>/.cache/models`, seed to 0, the model to resnet18. An existing file is reused.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ensureGeneratedModel, GeneratedModel } from "./model-gen.ts";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const [outArg, seedArg, kindArg] = process.argv.slice(2);
const outDir = path.resolve(outArg ?? path.join(repoRoot, ".cache/models"));
const seed = seedArg === undefined ? 0 : Number(seedArg);
if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
  process.stderr.write(`seed must be an integer in [0, 2^32), got ${JSON.stringify(seedArg)}\n`);
  process.exit(2);
}
const kind = (kindArg ?? GeneratedModel.resnet18) as GeneratedModel;
if (!Object.values(GeneratedModel).includes(kind)) {
  process.stderr.write(
    `model must be one of ${Object.values(GeneratedModel).join(", ")}, got ${JSON.stringify(kindArg)}\n`,
  );
  process.exit(2);
}
process.stdout.write(`${await ensureGeneratedModel(outDir, seed, kind)}\n`);
