/**
 * A deterministic, ResNet18-shaped ONNX model built in TypeScript, so tests and benchmarks need no
 * download and no 47 MB file in the repository.
 *
 * Topology (torchvision `resnet18` layout, names follow its state dict):
 *   conv1 7x7/2 3->64 + ReLU, MaxPool 3/2 (pad 1),
 *   layer1..layer4: two basic blocks each, widths 64/128/256/512, the first block of layers 2-4 has
 *   stride 2 and a 1x1/stride projection shortcut (`downsample.0`),
 *   GlobalAveragePool, Flatten, Gemm 512->1000 (`fc`, transB=1).
 * Graph: 49 nodes (Conv, Relu, MaxPool, Add, GlobalAveragePool, Flatten, Gemm), opset 13, IR 8,
 * input `input` float32 [batch,3,224,224], output `logits` float32 [batch,1000], `batch` symbolic.
 *
 * Weights: He-normal N(0, 2/fan_in) from mulberry32(seed) + Box-Muller, drawn in graph order.
 * Each conv is followed by an (untrained) BatchNorm with gamma=1, beta=0, mean=0, var=1, eps=1e-5,
 * folded into the conv: w *= gamma/sqrt(var+eps), b = beta - mean*gamma/sqrt(var+eps) (= 0).
 * The second conv of every residual branch is scaled by 0.5 (folded into its weights, no Mul node),
 * so that activations, and hence logits, stay bounded without a real BN.
 *
 * Parameter count: 11,684,712 = torchvision resnet18's 11,689,512 minus its 9,600 BN affine
 * parameters (2 x 4,800 channels) plus 4,800 folded conv biases.
 *
 * Bytes are a pure function of the seed for a given V8 (Math.log/cos/sin are V8's fdlibm ports) on a
 * little-endian host.
 *
 * Also here: a *trivial* model with the same input and output ({@link generateTrivialOnnx}), for measuring what
 * the infer node itself costs per image (receive, batch, copy, reply) with almost no model compute.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rename, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;

export const GENERATED_MODEL_OPSET = 13;
export const GENERATED_MODEL_IR_VERSION = 8;
export const GENERATED_MODEL_INPUT_NAME = "input";
export const GENERATED_MODEL_OUTPUT_NAME = "logits";
export const GENERATED_MODEL_PARAMETER_COUNT = 11_684_712;
export const GENERATED_MODEL_NODE_COUNT = 49;

const NUM_CLASSES = 1000;
const BN_EPS = 1e-5;
const RESIDUAL_DAMPING = 0.5;

/** mulberry32: a tiny 32-bit PRNG; returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples via Box-Muller; both values of each pair are used. */
function normalSource(seed: number): (out: Float32Array, std: number) => void {
  const rand = mulberry32(seed);
  let spare: number | undefined;
  return (out, std) => {
    for (let i = 0; i < out.length; i++) {
      if (spare !== undefined) {
        out[i] = spare * std;
        spare = undefined;
        continue;
      }
      const u1 = 1 - rand(); // (0, 1]: log(0) impossible
      const u2 = rand();
      const r = Math.sqrt(-2 * Math.log(u1));
      const theta = 2 * Math.PI * u2;
      out[i] = r * Math.cos(theta) * std;
      spare = r * Math.sin(theta);
    }
  };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function floatBytes(data: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(data.byteLength);
  const view = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i] ?? 0, true);
  return out;
}

type Attr = onnxProto.onnx.IAttributeProto;
const AttrType = onnx.AttributeProto.AttributeType;
const intAttr = (name: string, i: number): Attr => ({ name, type: AttrType.INT, i });
const intsAttr = (name: string, ints: number[]): Attr => ({ name, type: AttrType.INTS, ints });

function tensorValueInfo(name: string, dims: Array<number | string>): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: dims.map((d) => (typeof d === "string" ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}

/** Builds the ModelProto bytes of the generated ResNet18 for `seed` (uint32). Takes ~0.5 s, returns ~46.7 MB. */
export function generateResnet18Onnx(seed = 0): Uint8Array {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new RangeError(`seed must be a uint32, got ${seed}`);
  const normal = normalSource(seed);
  const nodes: onnxProto.onnx.INodeProto[] = [];
  const initializers: onnxProto.onnx.ITensorProto[] = [];

  const addInitializer = (name: string, dims: number[], data: Float32Array): void => {
    initializers.push({ name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: floatBytes(data) });
  };

  /** Conv with BN folded into weights + bias; `scale` damps the output (residual branch). */
  const conv = (
    prefix: string,
    x: string,
    cin: number,
    cout: number,
    k: number,
    stride: number,
    pad: number,
    scale = 1,
  ): string => {
    const fanIn = cin * k * k;
    const w = new Float32Array(cout * fanIn);
    normal(w, Math.sqrt(2 / fanIn));
    const bnScale = 1 / Math.sqrt(1 + BN_EPS); // gamma / sqrt(var + eps) with gamma=1, var=1
    const s = bnScale * scale;
    for (let i = 0; i < w.length; i++) w[i] = (w[i] ?? 0) * s;
    const b = new Float32Array(cout); // beta - mean * bnScale = 0, times scale
    addInitializer(`${prefix}.weight`, [cout, cin, k, k], w);
    addInitializer(`${prefix}.bias`, [cout], b);
    const y = `${prefix}.out`;
    nodes.push({
      name: prefix,
      opType: "Conv",
      input: [x, `${prefix}.weight`, `${prefix}.bias`],
      output: [y],
      attribute: [
        intsAttr("kernel_shape", [k, k]),
        intsAttr("strides", [stride, stride]),
        intsAttr("pads", [pad, pad, pad, pad]),
        intsAttr("dilations", [1, 1]),
        intAttr("group", 1),
      ],
    });
    return y;
  };
  const relu = (name: string, x: string): string => {
    const y = `${name}.out`;
    nodes.push({ name, opType: "Relu", input: [x], output: [y] });
    return y;
  };

  let x = conv("conv1", GENERATED_MODEL_INPUT_NAME, 3, 64, 7, 2, 3);
  x = relu("relu", x);
  nodes.push({
    name: "maxpool",
    opType: "MaxPool",
    input: [x],
    output: ["maxpool.out"],
    attribute: [intsAttr("kernel_shape", [3, 3]), intsAttr("strides", [2, 2]), intsAttr("pads", [1, 1, 1, 1])],
  });
  x = "maxpool.out";

  let cin = 64;
  const widths = [64, 128, 256, 512] as const;
  widths.forEach((width, stage) => {
    for (let block = 0; block < 2; block++) {
      const p = `layer${stage + 1}.${block}`;
      const stride = stage > 0 && block === 0 ? 2 : 1;
      let h = conv(`${p}.conv1`, x, cin, width, 3, stride, 1);
      h = relu(`${p}.relu1`, h);
      h = conv(`${p}.conv2`, h, width, width, 3, 1, 1, RESIDUAL_DAMPING);
      const shortcut = stride !== 1 || cin !== width ? conv(`${p}.downsample.0`, x, cin, width, 1, stride, 0) : x;
      nodes.push({ name: `${p}.add`, opType: "Add", input: [h, shortcut], output: [`${p}.add.out`] });
      x = relu(`${p}.relu2`, `${p}.add.out`);
      cin = width;
    }
  });

  nodes.push({ name: "avgpool", opType: "GlobalAveragePool", input: [x], output: ["avgpool.out"] });
  nodes.push({
    name: "flatten",
    opType: "Flatten",
    input: ["avgpool.out"],
    output: ["flatten.out"],
    attribute: [intAttr("axis", 1)],
  });
  const fcW = new Float32Array(NUM_CLASSES * cin);
  normal(fcW, Math.sqrt(2 / cin));
  addInitializer("fc.weight", [NUM_CLASSES, cin], fcW);
  addInitializer("fc.bias", [NUM_CLASSES], new Float32Array(NUM_CLASSES));
  nodes.push({
    name: "fc",
    opType: "Gemm",
    input: ["flatten.out", "fc.weight", "fc.bias"],
    output: [GENERATED_MODEL_OUTPUT_NAME],
    attribute: [
      { name: "alpha", type: AttrType.FLOAT, f: 1 },
      { name: "beta", type: AttrType.FLOAT, f: 1 },
      intAttr("transB", 1),
    ],
  });

  const model: onnxProto.onnx.IModelProto = {
    irVersion: GENERATED_MODEL_IR_VERSION,
    opsetImport: [{ domain: "", version: GENERATED_MODEL_OPSET }],
    producerName: "servegraph-model-gen",
    producerVersion: "1",
    docString: `ResNet18-shaped, random He-normal weights (seed ${seed}), BN folded, residual branch x${RESIDUAL_DAMPING}. Not trained.`,
    graph: {
      name: `resnet18_generated_seed${seed}`,
      node: nodes,
      initializer: initializers,
      input: [tensorValueInfo(GENERATED_MODEL_INPUT_NAME, ["batch", 3, 224, 224])],
      output: [tensorValueInfo(GENERATED_MODEL_OUTPUT_NAME, ["batch", NUM_CLASSES])],
    },
  };
  return onnx.ModelProto.encode(model).finish();
}

export const TRIVIAL_MODEL_NODE_COUNT = 3;

/**
 * Builds the ModelProto bytes of a trivial model with the generated ResNet18's interface: `input` float32
 * [batch,3,224,224] -> ReduceMean over H and W (keepdims 0) -> [batch,3] -> MatMul with a seeded 3x1000 matrix ->
 * Add a seeded bias -> `logits` float32 [batch,1000]. Different images give different logits; a forward pass costs
 * one read of the input. Opset 13 (ReduceMean's axes are still an attribute there), IR 8.
 */
export function generateTrivialOnnx(seed = 0): Uint8Array {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new RangeError(`seed must be a uint32, got ${seed}`);
  const normal = normalSource(seed);
  const w = new Float32Array(3 * NUM_CLASSES);
  normal(w, 1);
  const b = new Float32Array(NUM_CLASSES);
  normal(b, 0.1);
  const model: onnxProto.onnx.IModelProto = {
    irVersion: GENERATED_MODEL_IR_VERSION,
    opsetImport: [{ domain: "", version: GENERATED_MODEL_OPSET }],
    producerName: "servegraph-model-gen",
    producerVersion: "1",
    docString: `Trivial model (seed ${seed}): per-channel mean of the image times a random 3x${NUM_CLASSES} matrix. For measuring the serving path, not a classifier.`,
    graph: {
      name: `trivial_generated_seed${seed}`,
      node: [
        {
          name: "mean",
          opType: "ReduceMean",
          input: [GENERATED_MODEL_INPUT_NAME],
          output: ["mean.out"],
          attribute: [intsAttr("axes", [2, 3]), intAttr("keepdims", 0)],
        },
        { name: "fc", opType: "MatMul", input: ["mean.out", "fc.weight"], output: ["fc.out"] },
        { name: "bias", opType: "Add", input: ["fc.out", "fc.bias"], output: [GENERATED_MODEL_OUTPUT_NAME] },
      ],
      initializer: [
        {
          name: "fc.weight",
          dims: [3, NUM_CLASSES],
          dataType: onnx.TensorProto.DataType.FLOAT,
          rawData: floatBytes(w),
        },
        { name: "fc.bias", dims: [NUM_CLASSES], dataType: onnx.TensorProto.DataType.FLOAT, rawData: floatBytes(b) },
      ],
      input: [tensorValueInfo(GENERATED_MODEL_INPUT_NAME, ["batch", 3, 224, 224])],
      output: [tensorValueInfo(GENERATED_MODEL_OUTPUT_NAME, ["batch", NUM_CLASSES])],
    },
  };
  return onnx.ModelProto.encode(model).finish();
}

/** The generated models: `resnet18` (the default) and `trivial`. */
export const GeneratedModel = { resnet18: "resnet18", trivial: "trivial" } as const;
export type GeneratedModel = (typeof GeneratedModel)[keyof typeof GeneratedModel];

const GENERATORS: Record<GeneratedModel, (seed: number) => Uint8Array> = {
  resnet18: generateResnet18Onnx,
  trivial: generateTrivialOnnx,
};

/** The file name {@link ensureGeneratedModel} uses for `seed` (and `kind`). */
export function generatedModelFileName(seed = 0, kind: GeneratedModel = GeneratedModel.resnet18): string {
  return `${kind}-generated-seed${seed}.onnx`;
}

/**
 * Returns the path of `<cacheDir>/<kind>-generated-seed<seed>.onnx` (kind `resnet18` by default), generating it
 * first if it is absent. The file is written to a unique temporary name and renamed into place, so concurrent
 * callers (processes or tests) never see a partial file; the last rename wins with identical bytes.
 */
export async function ensureGeneratedModel(
  cacheDir: string,
  seed = 0,
  kind: GeneratedModel = GeneratedModel.resnet18,
): Promise<string> {
  const generate = GENERATORS[kind];
  if (!generate) throw new TypeError(`unknown generated model ${JSON.stringify(kind)}`);
  const file = path.resolve(cacheDir, generatedModelFileName(seed, kind));
  try {
    const st = await stat(file);
    if (st.isFile() && st.size > 0) return file;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  await mkdir(path.dirname(file), { recursive: true });
  const bytes = generate(seed);
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  return file;
}
