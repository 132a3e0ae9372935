/**
 * A batch slot's staging buffer on the model's thread, with infer's pixel normalisation done in WebAssembly
 * (normalize.wat, compiled to normalize.wasm): the same table lookup as subjects/image-normalization.ts
 * (`normalizeChw`), so every value has the same bits, in about a third of the time (about 40 against 110 us per
 * 224x224 image here; the largest item of infer's own CPU per image, ahead of the forward pass of a small model).
 *
 * Each normaliser owns one WebAssembly memory of a fixed size, laid out as
 *
 *   [ output: `values` float32, from byte 0 | the 3 channel tables (3 x 256 u32) | one row of uint8 pixels ]
 *
 * `output` is what the model runs on (onnxruntime takes a Float32Array of any ArrayBuffer; the memory is never grown,
 * so its buffer is never detached). A pixel row is copied into the memory's own row area first (WebAssembly reads
 * only its memory; the copy is a tenth of the lookups' cost), then looked up plane by plane into `output`.
 */
import { readFileSync } from "node:fs";
import { normalizedValue } from "../../../subjects/image-normalization.ts";

const WASM_PAGE_BYTES = 64 * 1024;
const TABLE_BYTES = 3 * 256 * Uint32Array.BYTES_PER_ELEMENT;

interface Exports {
  lookup(src: number, dst: number, n: number, lut: number): void;
}

/**
 * The part of the WebAssembly JS API used here. TypeScript declares `WebAssembly` only in its DOM library, which
 * this project does not load (Node's own types leave it out), so the global is typed here.
 */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: { env: { memory: WasmMemory } }) => { exports: unknown };
  Memory: new (d: { initial: number; maximum: number }) => WasmMemory;
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let compiled: object | undefined;
/** normalize.wasm, compiled once per thread. */
function normalizeModule(): object {
  return (compiled ??= new Wasm.Module(readFileSync(new URL("./normalize.wasm", import.meta.url))));
}

export interface PixelNormalizer {
  /** The staging buffer: `values` float32 values at byte 0 of this normaliser's memory. */
  readonly output: Float32Array;
  /** The largest pixel row `normalizeRow` takes (bytes: one per value). */
  readonly rowValues: number;
  /**
   * Planar CHW uint8 pixels (3 equal planes, at most `rowValues` bytes) -> their normalised float32 values in
   * `output` from element `offset`, exactly as `normalizeChw(pixels, output, offset)` would write them.
   */
  normalizeRow(pixels: Uint8Array, offset: number): void;
}

/** A staging buffer of `values` float32 values that normalises pixel rows of up to `rowValues` bytes into itself. */
export function createPixelNormalizer(values: number, rowValues: number): PixelNormalizer {
  if (!Number.isInteger(values) || values < 1 || !Number.isInteger(rowValues) || rowValues < 1)
    throw new RangeError(`a pixel normaliser needs values >= 1 and rowValues >= 1, got ${values} and ${rowValues}`);
  const outputBytes = values * Float32Array.BYTES_PER_ELEMENT;
  const tableAt = Math.ceil(outputBytes / 16) * 16;
  const rowAt = tableAt + TABLE_BYTES;
  const pages = Math.ceil((rowAt + rowValues) / WASM_PAGE_BYTES);
  // 65,536 pages is all a wasm32 memory can address (4 GiB): a slot of about 7,000 ResNet-sized rows.
  if (pages > 65_536) throw new RangeError(`a staging buffer of ${values} values does not fit a WebAssembly memory`);
  const memory = new Wasm.Memory({ initial: pages, maximum: pages });
  const { lookup } = new Wasm.Instance(normalizeModule(), { env: { memory } }).exports as unknown as Exports;
  const bytes = new Uint8Array(memory.buffer);
  const tables = new Float32Array(memory.buffer, tableAt, 3 * 256);
  for (let c = 0; c < 3; c++) for (let v = 0; v < 256; v++) tables[c * 256 + v] = normalizedValue(c as 0 | 1 | 2, v);
  const output = new Float32Array(memory.buffer, 0, values);

  return {
    output,
    rowValues,
    normalizeRow(pixels, offset) {
      const n = pixels.length;
      const plane = (n / 3) | 0;
      if (plane * 3 !== n || plane === 0) throw new RangeError(`CHW pixels must be 3 equal planes, got ${n} bytes`);
      if (n > rowValues)
        throw new RangeError(`a pixel row of ${n} bytes is longer than this normaliser's ${rowValues}`);
      if (!Number.isInteger(offset) || offset < 0 || offset + n > values)
        throw new RangeError(`output has ${values} floats, ${n} do not fit from ${offset}`);
      bytes.set(pixels, rowAt);
      for (let c = 0; c < 3; c++)
        lookup(rowAt + c * plane, (offset + c * plane) * Float32Array.BYTES_PER_ELEMENT, plane, tableAt + c * 1024);
    },
  };
}
