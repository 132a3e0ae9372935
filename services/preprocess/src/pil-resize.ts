/**
 * Pillow 9.4's `img.resize((w, h), BILINEAR)` (libImaging/Resample.c, 8 bpc path), bit-exact: 22-bit fixed-point
 * coefficients rounded half away from zero, clip to 0..255. See pil-exact.ts.
 */
import { assertRgb } from "./pil-rgb.ts";

const RESAMPLE_PRECISION_BITS = 32 - 8 - 2;
const RESAMPLE_HALF = 1 << (RESAMPLE_PRECISION_BITS - 1);
const RESAMPLE_ONE = 1 << RESAMPLE_PRECISION_BITS;

/** Resampling coefficients of one axis, already in 22-bit fixed point. */
export interface ResampleCoeffs {
  /** Maximum taps per output sample (row stride of `weights`). */
  readonly kernelSize: number;
  /** Per output sample: first source index, then tap count. */
  readonly bounds: Int32Array;
  /** outSize * kernelSize fixed-point weights. */
  readonly weights: Int32Array;
}

function bilinearFilter(x: number): number {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

/**
 * `precompute_coeffs` (BILINEAR, box = [0, inSize]) followed by `normalize_coeffs_8bpc`. The triangle
 * support scales with the downscale factor (antialiasing); weights are normalised in double, then
 * rounded half away from zero to 22-bit fixed point.
 */
export function bilinearCoeffs(inSize: number, outSize: number): ResampleCoeffs {
  const support0 = 1.0;
  const scale = inSize / outSize;
  const filterScale = scale < 1.0 ? 1.0 : scale;
  const support = support0 * filterScale;
  const kernelSize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * kernelSize);
  const k = new Float64Array(kernelSize);
  const ss = 1.0 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let total = 0.0;
    for (let x = 0; x < xmax; x++) {
      const wgt = bilinearFilter((x + xmin - center + 0.5) * ss);
      k[x] = wgt;
      total += wgt;
    }
    for (let x = 0; x < xmax; x++) {
      let v = k[x]!;
      if (total !== 0.0) v /= total;
      weights[xx * kernelSize + x] = v < 0 ? Math.trunc(-0.5 + v * RESAMPLE_ONE) : Math.trunc(0.5 + v * RESAMPLE_ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { kernelSize, bounds, weights };
}

function clip8(ss: number): number {
  const v = ss >> RESAMPLE_PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function resampleHorizontal(
  src: Uint8Array,
  srcWidth: number,
  firstRow: number,
  rows: number,
  outWidth: number,
  c: ResampleCoeffs,
): Uint8Array {
  const { kernelSize, bounds, weights } = c;
  const inStride = srcWidth * 3;
  const outStride = outWidth * 3;
  const dst = new Uint8Array(rows * outStride);
  for (let yy = 0; yy < rows; yy++) {
    const rowOff = (yy + firstRow) * inStride;
    let o = yy * outStride;
    for (let xx = 0; xx < outWidth; xx++) {
      const taps = bounds[xx * 2 + 1]!;
      let p = rowOff + bounds[xx * 2]! * 3;
      let kOff = xx * kernelSize;
      let s0 = RESAMPLE_HALF,
        s1 = RESAMPLE_HALF,
        s2 = RESAMPLE_HALF;
      for (let x = 0; x < taps; x++) {
        const kv = weights[kOff++]!;
        s0 += src[p]! * kv;
        s1 += src[p + 1]! * kv;
        s2 += src[p + 2]! * kv;
        p += 3;
      }
      dst[o++] = clip8(s0);
      dst[o++] = clip8(s1);
      dst[o++] = clip8(s2);
    }
  }
  return dst;
}

/** Vertical pass, row-major: each output row accumulates whole source rows (sequential reads). */
function resampleVertical(
  src: Uint8Array,
  width: number,
  rowShift: number,
  outHeight: number,
  c: ResampleCoeffs,
): Uint8Array {
  const { kernelSize, bounds, weights } = c;
  const n = width * 3;
  const dst = new Uint8Array(outHeight * n);
  const acc = new Int32Array(n);
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2]! - rowShift;
    const taps = bounds[yy * 2 + 1]!;
    acc.fill(RESAMPLE_HALF);
    for (let y = 0; y < taps; y++) {
      const kv = weights[yy * kernelSize + y]!;
      if (kv === 0) continue;
      const row = (ymin + y) * n;
      for (let i = 0; i < n; i++) acc[i]! += src[row + i]! * kv;
    }
    const out = yy * n;
    for (let i = 0; i < n; i++) dst[out + i] = clip8(acc[i]!);
  }
  return dst;
}

/**
 * `Image.resize((outWidth, outHeight), BILINEAR)` for an RGB image (`ImagingResample` with the default
 * box). The horizontal pass runs only over the source rows the vertical pass reads, as in Pillow; an
 * axis whose size does not change is not resampled.
 */
export function resizeBilinearRgb(
  data: Uint8Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
): Uint8Array {
  assertRgb(data, width, height);
  if (!Number.isInteger(outWidth) || !Number.isInteger(outHeight) || outWidth < 1 || outHeight < 1) {
    throw new RangeError(`output dimensions must be positive integers, got ${outWidth}x${outHeight}`);
  }
  const needHorizontal = outWidth !== width;
  const needVertical = outHeight !== height;
  const vert = bilinearCoeffs(height, outHeight);
  let img = data;
  let imgWidth = width;
  let rowShift = 0;
  if (needHorizontal) {
    const firstRow = vert.bounds[0]!;
    const lastRow = vert.bounds[outHeight * 2 - 2]! + vert.bounds[outHeight * 2 - 1]!;
    img = resampleHorizontal(data, width, firstRow, lastRow - firstRow, outWidth, bilinearCoeffs(width, outWidth));
    imgWidth = outWidth;
    rowShift = firstRow;
  }
  if (needVertical) return resampleVertical(img, imgWidth, rowShift, outHeight, vert);
  return img === data ? data.slice() : img;
}
