/** Parameters of the infer node. Batching knobs are not parameters: they are the node's `batching` in graph.config.ts. */
import { defineParams, param } from "../../../runtime/params.ts";

export const ExecutionProvider = ["auto", "cuda", "cpu"] as const;
export type ExecutionProviderChoice = (typeof ExecutionProvider)[number];

export default defineParams({
  MODEL: param.string("ONNX file (input [batch,3,224,224], output [batch,classes]), relative to the graph root; empty: a generated ResNet18-shaped model, cached.").default(""),
  EXECUTION_PROVIDER: param.oneOf(ExecutionProvider, "auto tries CUDA, then CPU; cuda or cpu force one.").default("auto"),
  INTRA_OP_THREADS: param.number("ORT intra-op threads; 0: every available core.", { int: true, min: 0, max: 1024 }).default(0),
  ALLOW_SPINNING: param.bool("ORT spin-waiting threads (they take CPU from other nodes on a shared machine).").default(false),
});
