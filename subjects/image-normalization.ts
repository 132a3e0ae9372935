/**
 * The image normalisation of the reference pipeline, in one place: preprocess uses it for any float32 tensor it
 * still produces, infer to turn the uint8 pixels it receives into model input. The reference (Python, numpy) is
 *
 *   `((asarray(img, float32) / 255) - mean) / std`    per RGB channel, every step rounded to float32,
 *
 * so byte `v` of channel `c` becomes `f32(f32(f32(v / 255) - f32(mean[c])) / f32(std[c]))`. There are only 3 x 256
 * such values: a table (LUT) built once with exactly that arithmetic makes the per-element cost one lookup, and the
 * result is bit-identical to the reference (the golden tensors in test/fixtures/golden).
 *
 * Layouts: pixels are either interleaved HWC (what decoders produce: R,G,B,R,G,B...) or planar CHW (what the
 * model takes and what travels to infer: all R, then all G, then all B).
 */

/** ImageNet statistics of the reference pipeline, per RGB channel. */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

function buildNormalizeLut(): readonly [Float32Array, Float32Array, Float32Array] {
  const f = Math.fround;
  const channel = (c: 0 | 1 | 2): Float32Array => {
    const lut = new Float32Array(256);
    const mean = f(IMAGENET_MEAN[c]);
    const std = f(IMAGENET_STD[c]);
    for (let v = 0; v < 256; v++) lut[v] = f(f(f(v / 255) - mean) / std);
    return lut;
  };
  return [channel(0), channel(1), channel(2)];
}

/** Module-private so that nothing can write into it. */
const LUT = buildNormalizeLut();
/** The same tables as float32 bit patterns: the hot loop moves 32-bit integers, no float conversion at all. */
const LUT_BITS = LUT.map((l) => new Uint32Array(l.buffer, l.byteOffset, l.length)) as unknown as readonly [
  Uint32Array,
  Uint32Array,
  Uint32Array,
];

/** The normalised value of byte `v` (0..255) in channel `c` (0 R, 1 G, 2 B). */
export function normalizedValue(c: 0 | 1 | 2, v: number): number {
  const x = LUT[c][v];
  if (x === undefined) throw new RangeError(`not a byte: ${v}`);
  return x;
}

/**
 * Planar CHW uint8 pixels (3 planes of equal size) -> normalised float32 CHW, written into `out` from element
 * `outOffset` (e.g. a row of a batch buffer). Returns `out`.
 */
export function normalizeChw(pixels: Uint8Array, out: Float32Array, outOffset = 0): Float32Array {
  const n = pixels.length;
  const plane = (n / 3) | 0;
  if (plane * 3 !== n || plane === 0) throw new RangeError(`CHW pixels must be 3 equal planes, got ${n} bytes`);
  if (!Number.isInteger(outOffset) || outOffset < 0 || outOffset + n > out.length) {
    throw new RangeError(`output has ${out.length} floats, ${n} do not fit from ${outOffset}`);
  }
  // The reference of infer's per-image hot loop (150,528 lookups, ~0.1 ms here; infer runs the same lookups as
  // WebAssembly, services/infer/src/pixel-normalizer.ts, ~0.04 ms): per-plane views indexed from 0 (small-integer
  // indices), 32-bit integer moves of the float bits, unrolled by 8 (measured ~3x faster than the plain float loop).
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  const tail = plane - (plane % 8);
  for (let c = 0; c < 3; c++) {
    const lut = LUT_BITS[c as 0 | 1 | 2];
    const src = pixels.subarray(c * plane, (c + 1) * plane);
    const dst = bits.subarray(outOffset + c * plane, outOffset + (c + 1) * plane);
    let i = 0;
    for (; i < tail; i += 8) {
      dst[i] = lut[src[i]!]!;
      dst[i + 1] = lut[src[i + 1]!]!;
      dst[i + 2] = lut[src[i + 2]!]!;
      dst[i + 3] = lut[src[i + 3]!]!;
      dst[i + 4] = lut[src[i + 4]!]!;
      dst[i + 5] = lut[src[i + 5]!]!;
      dst[i + 6] = lut[src[i + 6]!]!;
      dst[i + 7] = lut[src[i + 7]!]!;
    }
    for (; i < plane; i++) dst[i] = lut[src[i]!]!;
  }
  return out;
}

/** Interleaved HWC RGB bytes -> planar CHW bytes (the same values, moved), into `out` when given. */
export function hwcToChw(data: Uint8Array, width: number, height: number, out?: Uint8Array): Uint8Array {
  const plane = width * height;
  if (data.length !== 3 * plane) throw new RangeError(`expected ${3 * plane} bytes of RGB, got ${data.length}`);
  const t = out ?? new Uint8Array(3 * plane);
  if (t.length !== 3 * plane) throw new RangeError(`output has ${t.length} bytes, expected ${3 * plane}`);
  for (let i = 0, j = 0; i < plane; i++, j += 3) {
    t[i] = data[j]!;
    t[plane + i] = data[j + 1]!;
    t[2 * plane + i] = data[j + 2]!;
  }
  return t;
}

/** Interleaved HWC RGB bytes -> normalised float32 CHW, into `out` when given (length 3 * width * height). */
export function normalizeHwc(data: Uint8Array, width: number, height: number, out?: Float32Array): Float32Array {
  const plane = width * height;
  if (data.length !== 3 * plane) throw new RangeError(`expected ${3 * plane} bytes of RGB, got ${data.length}`);
  const t = out ?? new Float32Array(3 * plane);
  if (t.length !== 3 * plane) throw new RangeError(`output has ${t.length} floats, expected ${3 * plane}`);
  const [l0, l1, l2] = LUT;
  for (let i = 0, j = 0; i < plane; i++, j += 3) {
    t[i] = l0[data[j]!]!;
    t[plane + i] = l1[data[j + 1]!]!;
    t[2 * plane + i] = l2[data[j + 2]!]!;
  }
  return t;
}
