/**
 * Pillow 9.4's `img.filter(GaussianBlur(r))` (libImaging/BoxBlur.c), bit-exact: the same 24-bit fixed-point
 * extended box blur, rounded at every pass, with C `float` where C computes in float. See pil-exact.ts.
 */
import { assertRgb } from "./pil-rgb.ts";

const FIXED_BLUR_ONE = 1 << 24;
const FIXED_BLUR_HALF = 1 << 23;

/**
 * Pillow's `_gaussian_blur_radius` (Gwosdek et al., extended box blur), computed with C `float`
 * semantics: `sqrt`/`floor` are taken in double on float operands and stored back into float.
 */
export function gaussianBlurBoxRadius(sigma: number, passes: number): number {
  const f = Math.fround;
  const sigma2 = f(f(f(sigma) * f(sigma)) / passes);
  const boxLength = f(Math.sqrt(12.0 * sigma2 + 1.0));
  const l = f(Math.floor((boxLength - 1.0) / 2.0));
  let a = f(f(f(2 * l) + 1) * f(f(l * f(l + 1)) - f(3 * sigma2)));
  a = f(a / f(6 * f(sigma2 - f(f(l + 1) * f(l + 1)))));
  return f(l + a);
}

interface BoxWeights {
  /** Integer part of the box radius. */
  readonly radius: number;
  /** 24-bit fixed-point weight of each pixel inside the integer box. */
  readonly inner: number;
  /** 24-bit fixed-point weight of each of the two fractional edge pixels. */
  readonly edge: number;
}

/** `ImagingHorizontalBoxBlur`'s weights: `ww = (UINT32)(1 << 24) / (r * 2 + 1)` in float, truncated. */
function boxWeights(floatRadius: number): BoxWeights {
  const f = Math.fround;
  const radius = Math.trunc(floatRadius);
  const inner = Math.trunc(f(FIXED_BLUR_ONE / f(f(floatRadius * 2) + 1)));
  const edge = Math.floor((FIXED_BLUR_ONE - (radius * 2 + 1) * inner) / 2);
  return { radius, inner, edge };
}

function clampIndex(i: number, last: number): number {
  return i < 0 ? 0 : i > last ? last : i;
}

/**
 * One horizontal box-blur pass over one row (3 channels), from `src[srcOff..]` to `dst[dstOff..]`.
 * out[x] = (ww * sum(in[x-r..x+r]) + fw * (in[x-r-1] + in[x+r+1]) + 2^23) >> 24, indices clamped.
 */
function boxBlurRow(
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
  width: number,
  w: BoxWeights,
): void {
  const { radius: r, inner: ww, edge: fw } = w;
  const last = width - 1;
  // The accumulator for x = -1 covers [-r-1, r-1], clamped.
  let a0 = 0,
    a1 = 0,
    a2 = 0;
  for (let i = -r - 1; i <= r - 1; i++) {
    const p = srcOff + clampIndex(i, last) * 3;
    a0 += src[p]!;
    a1 += src[p + 1]!;
    a2 += src[p + 2]!;
  }
  // Unclamped middle: x - r - 1 >= 0 and x + r + 1 <= last.
  const midStart = Math.min(r + 1, width);
  const midEnd = Math.max(midStart, last - r); // exclusive
  let x = 0;
  for (; x < midStart; x++) {
    const sub = srcOff + clampIndex(x - r - 1, last) * 3;
    const add = srcOff + clampIndex(x + r, last) * 3;
    const far = srcOff + clampIndex(x + r + 1, last) * 3;
    a0 += src[add]! - src[sub]!;
    a1 += src[add + 1]! - src[sub + 1]!;
    a2 += src[add + 2]! - src[sub + 2]!;
    const o = dstOff + x * 3;
    dst[o] = (a0 * ww + (src[sub]! + src[far]!) * fw + FIXED_BLUR_HALF) >>> 24;
    dst[o + 1] = (a1 * ww + (src[sub + 1]! + src[far + 1]!) * fw + FIXED_BLUR_HALF) >>> 24;
    dst[o + 2] = (a2 * ww + (src[sub + 2]! + src[far + 2]!) * fw + FIXED_BLUR_HALF) >>> 24;
  }
  let sub = srcOff + (x - r - 1) * 3;
  let add = srcOff + (x + r) * 3;
  let o = dstOff + x * 3;
  for (; x < midEnd; x++) {
    a0 += src[add]! - src[sub]!;
    a1 += src[add + 1]! - src[sub + 1]!;
    a2 += src[add + 2]! - src[sub + 2]!;
    dst[o] = (a0 * ww + (src[sub]! + src[add + 3]!) * fw + FIXED_BLUR_HALF) >>> 24;
    dst[o + 1] = (a1 * ww + (src[sub + 1]! + src[add + 4]!) * fw + FIXED_BLUR_HALF) >>> 24;
    dst[o + 2] = (a2 * ww + (src[sub + 2]! + src[add + 5]!) * fw + FIXED_BLUR_HALF) >>> 24;
    sub += 3;
    add += 3;
    o += 3;
  }
  for (; x <= last; x++) {
    const s = srcOff + clampIndex(x - r - 1, last) * 3;
    const ad = srcOff + clampIndex(x + r, last) * 3;
    const far = srcOff + clampIndex(x + r + 1, last) * 3;
    a0 += src[ad]! - src[s]!;
    a1 += src[ad + 1]! - src[s + 1]!;
    a2 += src[ad + 2]! - src[s + 2]!;
    const oo = dstOff + x * 3;
    dst[oo] = (a0 * ww + (src[s]! + src[far]!) * fw + FIXED_BLUR_HALF) >>> 24;
    dst[oo + 1] = (a1 * ww + (src[s + 1]! + src[far + 1]!) * fw + FIXED_BLUR_HALF) >>> 24;
    dst[oo + 2] = (a2 * ww + (src[s + 2]! + src[far + 2]!) * fw + FIXED_BLUR_HALF) >>> 24;
  }
}

/**
 * One vertical box-blur pass over the whole image, row-major: the running column sums live in `acc`
 * (one per byte of a row), so every read is sequential. Same arithmetic as {@link boxBlurRow} along y.
 */
function boxBlurColumns(
  src: Uint8Array,
  dst: Uint8Array,
  width: number,
  height: number,
  w: BoxWeights,
  acc: Int32Array,
): void {
  const { radius: r, inner: ww, edge: fw } = w;
  const n = width * 3;
  const last = height - 1;
  acc.fill(0);
  for (let k = -r - 1; k <= r - 1; k++) {
    const row = clampIndex(k, last) * n;
    for (let i = 0; i < n; i++) acc[i]! += src[row + i]!;
  }
  for (let y = 0; y <= last; y++) {
    const sub = clampIndex(y - r - 1, last) * n;
    const add = clampIndex(y + r, last) * n;
    const far = clampIndex(y + r + 1, last) * n;
    const out = y * n;
    for (let i = 0; i < n; i++) {
      const a = acc[i]! + src[add + i]! - src[sub + i]!;
      acc[i] = a;
      dst[out + i] = (a * ww + (src[sub + i]! + src[far + i]!) * fw + FIXED_BLUR_HALF) >>> 24;
    }
  }
}

/**
 * One horizontal pass of the 3-tap kernel [fw, ww, fw] (integer radius 0, the case of sigma ~1), i.e.
 * {@link boxBlurRow} without the running sum.
 *
 * The inner loops use `Math.imul` and `| 0` so V8 stays in int32 arithmetic: the products and sums
 * wrap modulo 2^32, and since the true (C `UINT32`) sum is below 2^32, `>>> 24` of the wrapped value
 * is the same byte.
 */
function blurRow3Tap(
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
  width: number,
  ww: number,
  fw: number,
): void {
  const end = (width - 1) * 3;
  const next = width > 1 ? 3 : 0;
  for (let c = 0; c < 3; c++) {
    const p = src[srcOff + c]!;
    dst[dstOff + c] = (p * ww + (p + src[srcOff + c + next]!) * fw + FIXED_BLUR_HALF) >>> 24;
  }
  for (let i = 3; i < end; i++) {
    const s = srcOff + i;
    dst[dstOff + i] =
      ((((Math.imul(src[s]!, ww) + Math.imul(src[s - 3]! + src[s + 3]!, fw)) | 0) + FIXED_BLUR_HALF) | 0) >>> 24;
  }
  if (width > 1) {
    for (let c = 0; c < 3; c++) {
      const s = srcOff + end + c;
      const p = src[s]!;
      dst[dstOff + end + c] = (p * ww + (src[s - 3]! + p) * fw + FIXED_BLUR_HALF) >>> 24;
    }
  }
}

/** One vertical 3-tap pass producing one row from three input rows (already clamped by the caller). */
function blurRows3Tap(
  prev: Uint8Array,
  cur: Uint8Array,
  next: Uint8Array,
  dst: Uint8Array,
  dstOff: number,
  n: number,
  ww: number,
  fw: number,
): void {
  for (let i = 0; i < n; i++) {
    dst[dstOff + i] =
      ((((Math.imul(cur[i]!, ww) + Math.imul(prev[i]! + next[i]!, fw)) | 0) + FIXED_BLUR_HALF) | 0) >>> 24;
  }
}

/**
 * Box blur for an integer radius of 0, fully streamed: every input row gets its horizontal passes as
 * soon as the first vertical pass needs it, and each vertical pass keeps only a ring of 3 rows. The
 * image is read once and written once; the intermediate passes stay in cache.
 * Vertical pass k emits row y once pass k-1 has emitted row y+1 (rows are clamped at both edges).
 */
function boxBlurRadius0(data: Uint8Array, width: number, height: number, passes: number, w: BoxWeights): Uint8Array {
  const { inner: ww, edge: fw } = w;
  const n = width * 3;
  const last = height - 1;
  const out = new Uint8Array(data.length);
  // rings[k] holds the last 3 rows emitted by stage k (stage 0: horizontal passes done).
  const rings: Uint8Array[][] = [];
  for (let k = 0; k < passes; k++) rings.push([new Uint8Array(n), new Uint8Array(n), new Uint8Array(n)]);
  const rowA = new Uint8Array(n);
  const rowB = new Uint8Array(n);
  for (let t = 0; t <= last + passes; t++) {
    if (t <= last) {
      const dst = rings[0]![t % 3]!;
      if (passes === 1) {
        blurRow3Tap(data, t * n, dst, 0, width, ww, fw);
      } else {
        blurRow3Tap(data, t * n, rowA, 0, width, ww, fw);
        let from = rowA,
          to = rowB;
        for (let p = 1; p < passes - 1; p++) {
          blurRow3Tap(from, 0, to, 0, width, ww, fw);
          const tmp = from;
          from = to;
          to = tmp;
        }
        blurRow3Tap(from, 0, dst, 0, width, ww, fw);
      }
    }
    for (let k = 1; k <= passes; k++) {
      const y = t - k;
      if (y < 0 || y > last) continue;
      const ring = rings[k - 1]!;
      const prev = ring[(y === 0 ? 0 : y - 1) % 3]!;
      const cur = ring[y % 3]!;
      const next = ring[(y === last ? last : y + 1) % 3]!;
      if (k === passes) blurRows3Tap(prev, cur, next, out, y * n, n, ww, fw);
      else blurRows3Tap(prev, cur, next, rings[k]![y % 3]!, 0, n, ww, fw);
    }
  }
  return out;
}

/**
 * Pillow's `ImagingBoxBlur(imOut, imIn, radius, radius, passes)` on RGB: `passes` horizontal passes,
 * then `passes` vertical passes (Pillow transposes; we walk columns row-major), each rounded to 8 bits.
 * A zero radius returns a copy, like Pillow.
 */
export function boxBlurRgb(
  data: Uint8Array,
  width: number,
  height: number,
  floatRadius: number,
  passes: number,
): Uint8Array {
  assertRgb(data, width, height);
  if (!Number.isInteger(passes) || passes < 1) throw new RangeError("number of passes must be greater than zero");
  if (!(floatRadius >= 0)) throw new RangeError("radius must be >= 0");
  if (floatRadius === 0) return data.slice();
  const w = boxWeights(floatRadius);
  if (w.radius === 0) return boxBlurRadius0(data, width, height, passes, w);
  const n = width * 3;
  let out = new Uint8Array(data.length);
  // Horizontal passes row by row, ping-ponging between two row buffers (cache friendly).
  const rowA = new Uint8Array(n);
  const rowB = new Uint8Array(n);
  for (let y = 0; y < height; y++) {
    const off = y * n;
    if (passes === 1) {
      boxBlurRow(data, off, out, off, width, w);
      continue;
    }
    boxBlurRow(data, off, rowA, 0, width, w);
    let from = rowA,
      to = rowB;
    for (let p = 1; p < passes - 1; p++) {
      boxBlurRow(from, 0, to, 0, width, w);
      const t = from;
      from = to;
      to = t;
    }
    boxBlurRow(from, 0, out, off, width, w);
  }
  let spare = new Uint8Array(data.length);
  const acc = new Int32Array(n);
  for (let p = 0; p < passes; p++) {
    boxBlurColumns(out, spare, width, height, w, acc);
    const t = out;
    out = spare;
    spare = t;
  }
  return out;
}

/** `ImageFilter.GaussianBlur(sigma)` as Pillow 9.4 applies it: 3 extended-box passes per axis. */
export function gaussianBlurRgb(data: Uint8Array, width: number, height: number, sigma = 1.0): Uint8Array {
  const passes = 3;
  return boxBlurRgb(data, width, height, gaussianBlurBoxRadius(sigma, passes), passes);
}
