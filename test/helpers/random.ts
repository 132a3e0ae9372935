/** Deterministic pseudo-random data for tests, so a failure reproduces. */
export { mulberry32 } from "../../services/infer/src/model-gen.ts";

/** Pseudo-random inputs roughly in the range of normalised image tensors ([-2, 2)). */
export function randomInput(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32) * 4 - 2;
  }
  return out;
}
