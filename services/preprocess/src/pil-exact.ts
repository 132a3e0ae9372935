/**
 * A bit-exact TypeScript port of the two Pillow (9.4) operations of the reference pipeline, plus the
 * numpy-float32 normalisation:
 *
 *   `img.filter(GaussianBlur(r))`  -> {@link gaussianBlurRgb}   (libImaging/BoxBlur.c)
 *   `img.resize((w, h), BILINEAR)` -> {@link resizeBilinearRgb} (libImaging/Resample.c, 8 bpc path)
 *   `((asarray(img, float32) / 255) - mean) / std`, HWC -> CHW -> {@link normalizeToChw}
 *   (the normalisation itself lives in subjects/image-normalization.ts: infer applies it to the uint8 pixels)
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
import { hwcToChw, normalizeHwc } from "../../../subjects/image-normalization.ts";
import { gaussianBlurRgb } from "./pil-blur.ts";
import { assertRgb } from "./pil-rgb.ts";
import { resizeBilinearRgb } from "./pil-resize.ts";

export { boxBlurRgb, gaussianBlurBoxRadius, gaussianBlurRgb } from "./pil-blur.ts";
export { bilinearCoeffs, resizeBilinearRgb, type ResampleCoeffs } from "./pil-resize.ts";
export { IMAGENET_MEAN, IMAGENET_STD } from "../../../subjects/image-normalization.ts";

/**
 * HWC RGB bytes -> CHW float32, normalised with the reference's ImageNet mean/std (subjects/image-normalization.ts,
 * numpy float32 arithmetic). Writes into `out` when given (length 3 * width * height).
 */
export function normalizeToChw(data: Uint8Array, width: number, height: number, out?: Float32Array): Float32Array {
  assertRgb(data, width, height);
  return normalizeHwc(data, width, height, out);
}

/** Side of the square model input: the infer endpoint's tensor shape (subjects/endpoints.ts). */
export const MODEL_INPUT_SIZE = IMAGE_TENSOR_SHAPE[3];

/**
 * The reference transform up to the pixels the model sees: GaussianBlur(1.0) -> resize(224x224, BILINEAR), as
 * uint8 CHW (3 x 224 x 224), which is what travels to infer (it normalises them).
 */
export function pilPixelsRgb(data: Uint8Array, width: number, height: number, size = MODEL_INPUT_SIZE): Uint8Array {
  const blurred = gaussianBlurRgb(data, width, height, 1.0);
  const resized = resizeBilinearRgb(blurred, width, height, size, size);
  return hwcToChw(resized, size, size);
}

/**
 * The whole reference transform after decoding: GaussianBlur(1.0) -> resize(224x224, BILINEAR) ->
 * normalised float32 CHW (3 x 224 x 224).
 */
export function pilPreprocessRgb(
  data: Uint8Array,
  width: number,
  height: number,
  size = MODEL_INPUT_SIZE,
): Float32Array {
  const blurred = gaussianBlurRgb(data, width, height, 1.0);
  const resized = resizeBilinearRgb(blurred, width, height, size, size);
  return normalizeToChw(resized, size, size);
}
