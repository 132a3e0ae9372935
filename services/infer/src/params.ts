/**
 * Parameters of the infer node. Batching knobs are not parameters: they are the node's `batching` in graph.config.ts,
 * and the ones it leaves out are chosen at start-up for the execution provider in use (./batching.ts).
 */
import { defineParams, param } from "../../../runtime/params.ts";
// providers.ts imports nothing: loading this file still loads no native dependency.
import { EXECUTION_PROVIDER_CHOICES, type ExecutionProviderChoice } from "./providers.ts";

export { EXECUTION_PROVIDER_CHOICES, type ExecutionProviderChoice };

/** MODEL value of the generated trivial model (same input and output shapes as ResNet18, almost no compute). */
export const TRIVIAL_MODEL = "trivial";

export default defineParams({
  MODEL: param
    .string(
      "ONNX file (input [batch,3,224,224], output [batch,classes]), relative to the graph root; empty: a generated ResNet18-shaped model, cached; " +
        `"${TRIVIAL_MODEL}": a generated model with the same shapes and almost no compute (ReduceMean + a 3x1000 MatMul), ` +
        "to measure the node's own ceiling (a file of that name: ./trivial).",
    )
    .default(""),
  EXECUTION_PROVIDER: param
    .oneOf(
      EXECUTION_PROVIDER_CHOICES,
      "auto tries CUDA, then WebGPU, then CPU, and reports why each one before failed; cuda, webgpu or cpu force one (a replica whose forced provider cannot start exits with the reason).",
    )
    .default("auto"),
  INTRA_OP_THREADS: param
    .number("ORT intra-op threads; 0: every available core.", { int: true, min: 0, max: 1024 })
    .default(0),
  ALLOW_SPINNING: param
    .bool("ORT spin-waiting threads (they take CPU from other nodes on a shared machine).")
    .default(false),
});
