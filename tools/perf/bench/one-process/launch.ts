/**
 * Starts the one-process composition (./server.ts) for the bench, with the graph's parts as the running graph has
 * them: the model file and execution provider infer reports ($SRV.INFO metadata), infer's other parameters and
 * preprocess's (its mode as the running replica reports it) from the resolved graph, the ingress's body limit.
 * This side loads no service code: the server is a process of its own.
 */
import { join } from "node:path";
import { z } from "zod";
import type { ResolvedGraph } from "../../../../runtime/index.ts";
import ingressParams from "../../../../services/ingress/src/params.ts";
import { startHelper, type HelperProcess } from "../child.ts";

const Ready = z.object({
  url: z.string(),
  executionProvider: z.string(),
  model: z.string(),
  mode: z.string(),
  intraOpNumThreads: z.number(),
});
export type OneProcessInfo = z.output<typeof Ready>;

const PROVIDERS = new Set(["cpu", "cuda", "webgpu"]);
/** Start-up: model load (and, on a GPU, its first run) can take a while. */
const READY_TIMEOUT_MS = 120_000;

export interface OneProcessPlan {
  graph: ResolvedGraph;
  /** The model file the graph's infer loaded. */
  modelPath: string;
  /** The execution provider the graph's infer runs on (cpu when unknown). */
  executionProvider: string | undefined;
  /** The preprocess mode the graph's replica runs (the graph's parameter when unknown). */
  preprocessMode: string | undefined;
}

export type OneProcess = HelperProcess<OneProcessInfo>;

export async function startOneProcess(p: OneProcessPlan): Promise<OneProcess> {
  const infer = p.graph.nodes.infer;
  const pre = p.graph.nodes.preprocess;
  if (!infer || !pre) throw new Error(`${p.graph.file} has no ${infer ? "preprocess" : "infer"} node to compose`);
  const ep = p.executionProvider && PROVIDERS.has(p.executionProvider) ? p.executionProvider : "cpu";
  // The ingress's body limit as its replica has it: graph.config.ts's value, else its params.ts default.
  const maxBodyBytes = ingressParams.parse({ ...p.graph.nodes.ingress?.parameters }).MAX_BODY_BYTES;
  return startHelper(
    join(import.meta.dirname, "server.ts"),
    {
      modelPath: p.modelPath,
      inferParameters: { ...infer.parameters, EXECUTION_PROVIDER: ep },
      preprocessParameters: { ...pre.parameters, ...(p.preprocessMode ? { PREPROCESS_MODE: p.preprocessMode } : {}) },
      maxBodyBytes,
    },
    { cwd: p.graph.root, readyTimeoutMs: READY_TIMEOUT_MS, parse: (x) => Ready.parse(x) },
  );
}
