/**
 * Tensors travel as raw little-endian float32 bytes; dtype and shape go in headers, never JSON.
 * Decoding always copies into a fresh, aligned buffer: `msg.data` is a Buffer at an arbitrary byteOffset (trap T9).
 */
import { GraphError } from "./errors.ts";

export const TensorDtype = { float32: "float32" } as const;
export type TensorDtype = (typeof TensorDtype)[keyof typeof TensorDtype];

export interface TensorMeta {
  dtype: TensorDtype;
  shape: readonly number[];
}

export function formatShape(shape: readonly number[]): string {
  return shape.join(",");
}

export function parseShape(s: string | undefined): number[] {
  if (!s) throw new GraphError("BAD_REQUEST", "missing tensor shape header");
  const dims = s.split(",").map((d) => Number(d.trim()));
  if (dims.length === 0 || dims.length > 8 || dims.some((d) => !Number.isSafeInteger(d) || d <= 0)) {
    throw new GraphError("BAD_REQUEST", `invalid tensor shape: ${JSON.stringify(s.slice(0, 64))}`);
  }
  return dims;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The bytes of a float32 tensor, little-endian (the platform order on every target we run on). */
export function encodeFloat32(t: Float32Array): Uint8Array {
  return new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
}

/**
 * Checks that `data` is a float32 tensor of `shape` without copying it; the caller copies the bytes where
 * they are needed (e.g. straight into a batch buffer), which keeps one 602 KB copy per image off the heap.
 */
export function checkFloat32(data: Uint8Array, dtype: string | undefined, shape: readonly number[]): Uint8Array {
  if (dtype !== TensorDtype.float32) {
    throw new GraphError("BAD_REQUEST", `unsupported tensor dtype: ${JSON.stringify((dtype ?? "").slice(0, 32))}`);
  }
  const n = elementCount(shape);
  if (data.byteLength !== n * 4) {
    throw new GraphError("BAD_REQUEST", `tensor payload is ${data.byteLength} bytes, shape ${formatShape(shape)} needs ${n * 4}`);
  }
  return data;
}

/** Copies `data` into a new aligned Float32Array after checking it matches the declared dtype and shape. */
export function decodeFloat32(data: Uint8Array, dtype: string | undefined, shape: readonly number[]): Float32Array {
  checkFloat32(data, dtype, shape);
  const out = new Float32Array(elementCount(shape));
  new Uint8Array(out.buffer).set(data);
  return out;
}
