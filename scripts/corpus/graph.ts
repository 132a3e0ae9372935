/** The graph under test as the corpus sees it (graph.config.ts, subjects/): the limits that decide some expected codes, and its subjects. */
import { IMAGE_TENSOR_SHAPE } from "../../subjects/endpoints.ts";
import { endpointSubject } from "../../subjects/names.ts";

/** Limits of the graph under test (graph.config.ts), which decide some expected codes. */
export const MAX_BODY_BYTES = 8 * 1024 * 1024;
export const MAX_INPUT_PIXELS = 50_000_000;
export const TENSOR_ELEMS = IMAGE_TENSOR_SHAPE.reduce((a: number, b: number) => a * b, 1);
export const TENSOR_BYTES = TENSOR_ELEMS * Float32Array.BYTES_PER_ELEMENT;
export const MIB = 1024 * 1024;

export const S = {
  classify: endpointSubject("preprocess", "classify"),
  run: endpointSubject("infer", "run"),
  labels: endpointSubject("infer", "labels"),
  info: endpointSubject("infer", "info"),
  greet: endpointSubject("greeter", "greet"),
  greeting: endpointSubject("greeter-proxy", "greeting"),
  endpoints: endpointSubject("greeter-proxy", "endpoints"),
  process: endpointSubject("ab-router", "process"),
  variantA: endpointSubject("variant-a", "process"),
  variantB: endpointSubject("variant-b", "process"),
} as const;
