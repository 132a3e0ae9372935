/**
 * The one normalisation of the graph (subjects/image-normalization.ts): every value is the reference's numpy
 * float32 arithmetic, whichever layout and entry point produced it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  IMAGENET_MEAN,
  IMAGENET_STD,
  hwcToChw,
  normalizeChw,
  normalizeHwc,
  normalizedValue,
} from "../../subjects/image-normalization.ts";
import { mulberry32 } from "../helpers/random.ts";

const f = Math.fround;
const reference = (c: 0 | 1 | 2, v: number): number => f(f(f(v / 255) - f(IMAGENET_MEAN[c])) / f(IMAGENET_STD[c]));

function randomBytes(n: number, seed: number): Uint8Array {
  const r = mulberry32(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
}

test("image-normalization - every byte of every channel is f32(f32(f32(v / 255) - mean) / std)", () => {
  for (const c of [0, 1, 2] as const)
    for (let v = 0; v < 256; v++) assert.equal(normalizedValue(c, v), reference(c, v), `channel ${c} byte ${v}`);
  // The extremes of the golden tensors: R of 0 and B of 255.
  assert.equal(normalizedValue(0, 0), -2.1179039478302);
  assert.equal(normalizedValue(2, 255), 2.640000104904175);
  assert.throws(() => normalizedValue(0, 256), RangeError);
});

test("image-normalization - normalizeChw maps each plane with its channel, at any offset, from any byteOffset", () => {
  // 7x5 pixels: a plane of 35, not a multiple of the 8-wide unrolled loop, so the tail runs too.
  const plane = 35;
  const bytes = randomBytes(3 * plane + 3, 1);
  const pixels = Buffer.from(bytes.buffer).subarray(3, 3 + 3 * plane); // odd byteOffset, as nats.js hands them out
  const out = new Float32Array(4 * 3 * plane).fill(7);
  normalizeChw(pixels, out, 3 * plane);
  for (let i = 0; i < 3 * plane; i++)
    assert.equal(out[3 * plane + i], reference(Math.floor(i / plane) as 0 | 1 | 2, pixels[i]!), `element ${i}`);
  assert.ok(
    out.subarray(0, 3 * plane).every((x) => x === 7),
    "nothing before the row is written",
  );
  assert.ok(
    out.subarray(6 * plane).every((x) => x === 7),
    "nothing after the row is written",
  );
});

test("image-normalization - a SharedArrayBuffer batch slot takes the same values", () => {
  const pixels = randomBytes(3 * 224 * 224, 2);
  const plain = normalizeChw(pixels, new Float32Array(pixels.length));
  const shared = normalizeChw(pixels, new Float32Array(new SharedArrayBuffer(pixels.length * 4)));
  assert.deepEqual(new Uint8Array(shared.buffer), new Uint8Array(plain.buffer));
});

test("image-normalization - HWC -> CHW pixels, normalised, equal normalising the HWC image directly", () => {
  const [w, h] = [6, 4];
  const hwc = randomBytes(3 * w * h, 3);
  const chw = hwcToChw(hwc, w, h);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < 3; c++) {
        assert.equal(chw[c * w * h + y * w + x], hwc[(y * w + x) * 3 + c]);
      }
  assert.deepEqual(normalizeChw(chw, new Float32Array(chw.length)), normalizeHwc(hwc, w, h));
});

test("image-normalization - wrong sizes are RangeErrors", () => {
  assert.throws(() => normalizeChw(new Uint8Array(10), new Float32Array(10)), RangeError);
  assert.throws(() => normalizeChw(new Uint8Array(0), new Float32Array(0)), RangeError);
  assert.throws(() => normalizeChw(new Uint8Array(6), new Float32Array(6), 1), RangeError);
  assert.throws(() => hwcToChw(new Uint8Array(5), 1, 2), RangeError);
  assert.throws(() => normalizeHwc(new Uint8Array(6), 2, 1, new Float32Array(5)), RangeError);
});
