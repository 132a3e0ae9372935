/**
 * A bit-exact TypeScript port of the two Pillow (9.4) operations of the reference pipeline, plus the
 * numpy-float32 normalisation:
 *
 *   `img.filter(GaussianBlur(r))`  -> {@link gaussianBlurRgb}   (libImaging/BoxBlur.c)
 *   `img.resize((w, h), BILINEAR)` -> {@link resizeBilinearRgb} (libImaging/Resample.c, 8 bpc path)
 *   `((asarray(img, float32) / 255) - mean) / std`, HWC -> CHW -> {@link normalizeToChw}
 *
 * Images are interleaved 8-bit RGB (HWC, 3 bytes per pixel, rows packed). Every function is pure and
 * synchronous; callers run it off the event loop (a worker pool) because it costs ~10 ms per photo.
 *
 * "Bit-exact" means: the same integer arithmetic as the C code (24-bit fixed point box blur rounded at
 * every pass, 22-bit fixed point resampling coefficients rounded half away from zero, clip to 0..255),
 * and the same float32 roundings where C computes in `float`. The loop order differs from the C code
 * (split edge loops, a row-major vertical pass) but each output value is computed from the same
 * integer terms, and integer sums are order independent.
 */
import { IMAGE_TENSOR_SHAPE } from "../../../subjects/index.ts";
import { gaussianBlurRgb } from "./pil-blur.ts";
import { assertRgb } from "./pil-rgb.ts";
import { resizeBilinearRgb } from "./pil-resize.ts";

export { boxBlurRgb, gaussianBlurBoxRadius, gaussianBlurRgb } from "./pil-blur.ts";
export { bilinearCoeffs, resizeBilinearRgb, type ResampleCoeffs } from "./pil-resize.ts";

/** ImageNet statistics of the reference pipeline, per RGB channel. */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/**
 * normalised value of byte v in channel c, with numpy float32 semantics: every step rounds to float32,
 * `((f32(v) / 255) - f32(mean)) / f32(std)`. A 3 x 256 table, so the per-pixel cost is one lookup.
 */
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

const NORMALIZE_LUT = buildNormalizeLut();

/**
 * HWC RGB bytes -> CHW float32, normalised with {@link IMAGENET_MEAN}/{@link IMAGENET_STD}. Writes into
 * `out` when given (length 3 * width * height).
 */
export function normalizeToChw(data: Uint8Array, width: number, height: number, out?: Float32Array): Float32Array {
  assertRgb(data, width, height);
  const plane = width * height;
  const t = out ?? new Float32Array(3 * plane);
  if (t.length !== 3 * plane) throw new RangeError(`output has ${t.length} floats, expected ${3 * plane}`);
  const [l0, l1, l2] = NORMALIZE_LUT;
  for (let i = 0, j = 0; i < plane; i++, j += 3) {
    t[i] = l0[data[j]!]!;
    t[plane + i] = l1[data[j + 1]!]!;
    t[2 * plane + i] = l2[data[j + 2]!]!;
  }
  return t;
}

/** Side of the square model input: the infer endpoint's tensor shape (subjects/endpoints.ts). */
export const MODEL_INPUT_SIZE = IMAGE_TENSOR_SHAPE[3];

/**
 * The whole reference transform after decoding: GaussianBlur(1.0) -> resize(224x224, BILINEAR) ->
 * normalised float32 CHW (3 x 224 x 224).
 */
export function pilPreprocessRgb(data: Uint8Array, width: number, height: number, size = MODEL_INPUT_SIZE): Float32Array {
  const blurred = gaussianBlurRgb(data, width, height, 1.0);
  const resized = resizeBilinearRgb(blurred, width, height, size, size);
  return normalizeToChw(resized, size, size);
}
