/** The graph under test as the corpus sees it (graph.config.ts, subjects/): the limits that decide some expected codes, and its subjects. */

/** Limits of the graph under test (graph.config.ts), which decide some expected codes. */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;
export const MAX_INPUT_PIXELS = 50_000_000;
export const TENSOR_BYTES = 3 * 224 * 224 * 4;
export const TENSOR_ELEMS = 3 * 224 * 224;
export const MIB = 1024 * 1024;

export const S = {
  classify: "sg.v1.preprocess.classify",
  run: "sg.v1.infer.run",
  labels: "sg.v1.infer.labels",
  info: "sg.v1.infer.info",
  greet: "sg.v1.greeter.greet",
  greeting: "sg.v1.greeter-proxy.greeting",
  endpoints: "sg.v1.greeter-proxy.endpoints",
  process: "sg.v1.ab-router.process",
  variantA: "sg.v1.variant-a.process",
  variantB: "sg.v1.variant-b.process",
} as const;
