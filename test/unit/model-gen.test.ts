import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import onnxProto from "onnx-proto";
import { createModelHost, type ModelHost } from "../../services/infer/src/model-host.ts";
import {
  ensureGeneratedModel,
  GeneratedModel,
  generateResnet18Onnx,
  generateTrivialOnnx,
  GENERATED_MODEL_NODE_COUNT,
  GENERATED_MODEL_PARAMETER_COUNT,
  TRIVIAL_MODEL_NODE_COUNT,
} from "../../services/infer/src/model-gen.ts";
import { randomInput } from "../helpers/random.ts";

const { onnx } = onnxProto;
const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

let seed0: Uint8Array | undefined;
const seed0Bytes = (): Uint8Array => (seed0 ??= generateResnet18Onnx(0));

const tmpDirs: string[] = [];
after(async () => {
  for (const d of tmpDirs) await rm(d, { recursive: true, force: true });
});

test("model-gen - the same seed gives identical bytes and another seed differs", () => {
  const a = sha256(seed0Bytes());
  assert.equal(sha256(generateResnet18Onnx(0)), a);
  assert.notEqual(sha256(generateResnet18Onnx(1)), a);
});

test("model-gen - the graph is ResNet18-shaped with 11,684,712 parameters, opset 13, IR 8, dynamic batch", () => {
  const model = onnx.ModelProto.decode(seed0Bytes());
  assert.equal(Number(model.irVersion), 8);
  assert.deepEqual(
    model.opsetImport.map((o) => [o.domain ?? "", Number(o.version)]),
    [["", 13]],
  );
  const graph = model.graph!;
  const initializers = graph.initializer ?? [];
  const nodes = graph.node ?? [];
  const inputs = graph.input ?? [];
  const outputs = graph.output ?? [];

  // torchvision resnet18 has 11,689,512; folding its 20 BNs (4,800 channels) drops 2 x 4,800 affine
  // parameters and adds 4,800 conv biases.
  let params = 0;
  for (const init of initializers) {
    const n = (init.dims ?? []).reduce<number>((acc, d) => acc * Number(d), 1);
    assert.equal(init.rawData?.length, n * 4, `${init.name} raw bytes`);
    params += n;
  }
  assert.equal(params, GENERATED_MODEL_PARAMETER_COUNT);
  assert.equal(params, 11_684_712);

  const ops: Record<string, number> = {};
  for (const node of nodes) ops[node.opType ?? ""] = (ops[node.opType ?? ""] ?? 0) + 1;
  assert.deepEqual(ops, { Conv: 20, Relu: 17, MaxPool: 1, Add: 8, GlobalAveragePool: 1, Flatten: 1, Gemm: 1 });
  assert.equal(nodes.length, GENERATED_MODEL_NODE_COUNT);

  const dims = (vi: onnxProto.onnx.IValueInfoProto): Array<string | number> =>
    vi.type!.tensorType!.shape!.dim!.map((d) => (d.dimParam ? d.dimParam : Number(d.dimValue)));
  assert.equal(inputs.length, 1);
  assert.equal(inputs[0]!.name, "input");
  assert.deepEqual(dims(inputs[0]!), ["batch", 3, 224, 224]);
  assert.equal(outputs.length, 1);
  assert.equal(outputs[0]!.name, "logits");
  assert.deepEqual(dims(outputs[0]!), ["batch", 1000]);

  // the 1x1 projection shortcuts sit exactly where stride or width changes
  const projections = nodes.filter((n) => n.name?.endsWith("downsample.0")).map((n) => n.name);
  assert.deepEqual(projections, ["layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]);
});

test("model-gen - ensureGeneratedModel writes the file once, atomically, and then reuses it", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "sg-model-gen-"));
  tmpDirs.push(dir);
  const cacheDir = path.join(dir, "nested", "models");
  const file = await ensureGeneratedModel(cacheDir, 0);
  assert.equal(file, path.join(cacheDir, "resnet18-generated-seed0.onnx"));
  assert.equal(sha256(await readFile(file)), sha256(seed0Bytes()));
  const before = await stat(file);
  assert.equal(await ensureGeneratedModel(cacheDir, 0), file);
  assert.equal((await stat(file)).mtimeMs, before.mtimeMs, "not rewritten");
  assert.deepEqual(await readdir(cacheDir), ["resnet18-generated-seed0.onnx"], "no temporary file left behind");
});

test(
  "model-gen - the generated model runs in onnxruntime at batch 1 and 3, batched rows equal single runs",
  { timeout: 120_000 },
  async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "sg-model-gen-"));
    tmpDirs.push(dir);
    const file = path.join(dir, "m.onnx");
    await writeFile(file, seed0Bytes());

    let host: ModelHost | undefined;
    try {
      host = await createModelHost({ modelPath: file, executionProvider: "cpu" });
      assert.equal(host.executionProvider, "cpu");
      assert.deepEqual(host.inputShape, [3, 224, 224]);
      assert.equal(host.outputSize, 1000);
      const row = 3 * 224 * 224;

      const inputs = [0, 1, 2].map((i) => randomInput(row, 100 + i));
      const singles: Float32Array[] = [];
      for (const x of inputs) {
        const r = await host.run(x.slice(), 1);
        assert.equal(r.output.length, 1000);
        assert.ok(r.output.every(Number.isFinite));
        singles.push(r.output);
      }
      const batch = new Float32Array(3 * row);
      inputs.forEach((x, i) => batch.set(x, i * row));
      const { output } = await host.run(batch, 3);
      assert.equal(output.length, 3 * 1000);
      assert.ok(output.every(Number.isFinite));

      let maxDiff = 0;
      for (let i = 0; i < 3; i++) {
        const got = output.subarray(i * 1000, (i + 1) * 1000);
        for (let k = 0; k < 1000; k++) maxDiff = Math.max(maxDiff, Math.abs(got[k]! - singles[i]![k]!));
      }
      assert.ok(maxDiff < 1e-4, `batch rows differ from single runs by ${maxDiff}`);
      // different inputs give different logits: the weights are not degenerate
      assert.ok(singles[0]!.some((v, k) => Math.abs(v - singles[1]![k]!) > 1e-3));
    } finally {
      await host?.close();
    }
  },
);

test(
  "model-gen - the trivial model has ResNet18's interface, almost no compute, and is cached under its own name",
  { timeout: 60_000 },
  async () => {
    const bytes = generateTrivialOnnx(0);
    assert.equal(sha256(generateTrivialOnnx(0)), sha256(bytes), "deterministic");
    assert.ok(bytes.length < 64 * 1024, `${bytes.length} bytes`);
    const graph = onnx.ModelProto.decode(bytes).graph!;
    assert.deepEqual(
      (graph.node ?? []).map((n) => n.opType),
      ["ReduceMean", "MatMul", "Add"],
    );
    assert.equal(graph.node!.length, TRIVIAL_MODEL_NODE_COUNT);

    const dir = await mkdtemp(path.join(os.tmpdir(), "sg-model-gen-"));
    tmpDirs.push(dir);
    const file = await ensureGeneratedModel(dir, 0, GeneratedModel.trivial);
    assert.equal(path.basename(file), "trivial-generated-seed0.onnx");
    assert.equal(sha256(await readFile(file)), sha256(bytes));

    let host: ModelHost | undefined;
    try {
      host = await createModelHost({ modelPath: file, executionProvider: "cpu" });
      assert.deepEqual(host.inputShape, [3, 224, 224]);
      assert.equal(host.outputSize, 1000);
      const row = 3 * 224 * 224;
      const { output } = await host.run(Float32Array.from([...randomInput(row, 1), ...randomInput(row, 2)]), 2);
      assert.equal(output.length, 2000);
      assert.ok(output.every(Number.isFinite));
      assert.ok(
        output.subarray(0, 1000).some((v, k) => v !== output[1000 + k]),
        "different images give different logits",
      );
    } finally {
      await host?.close();
    }
  },
);
