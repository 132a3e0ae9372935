import { test } from "node:test";
import assert from "node:assert/strict";
import {
  bilinearCoeffs,
  boxBlurRgb,
  gaussianBlurBoxRadius,
  gaussianBlurRgb,
  normalizeToChw,
  pilPreprocessRgb,
  resizeBilinearRgb,
} from "../../services/preprocess/src/pil-exact.ts";

import { mulberry32 as rng } from "../helpers/random.ts";

function randomRgb(width: number, height: number, seed: number): Uint8Array {
  const next = rng(seed);
  return Uint8Array.from({ length: width * height * 3 }, () => Math.floor(next() * 256));
}

function solidRgb(width: number, height: number, rgb: readonly [number, number, number]): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < out.length; i += 3) out.set(rgb, i);
  return out;
}

/*
 * Straight transcriptions of Pillow's C (BoxBlur.c ImagingLineBoxBlur8 + transpose, Resample.c
 * column-by-column vertical pass), one channel at a time, slow and obvious. The optimised port must
 * agree with them byte for byte.
 */
function referenceLineBoxBlur(lineIn: Uint8Array, floatRadius: number): Uint8Array {
  const xsize = lineIn.length;
  const lastx = xsize - 1;
  const radius = Math.trunc(floatRadius);
  const ww = Math.trunc(Math.fround((1 << 24) / Math.fround(Math.fround(floatRadius * 2) + 1)));
  const fw = Math.floor(((1 << 24) - (radius * 2 + 1) * ww) / 2);
  const edgeA = Math.min(radius + 1, xsize);
  const edgeB = Math.max(xsize - radius - 1, 0);
  const out = new Uint8Array(xsize);
  const at = (i: number): number => lineIn[i]!;
  let acc = at(0) * (radius + 1);
  for (let x = 0; x < edgeA - 1; x++) acc += at(x);
  acc += at(lastx) * (radius - edgeA + 1);
  const step = (x: number, sub: number, add: number, left: number, right: number): void => {
    acc += at(add) - at(sub);
    const bulk = acc * ww + (at(left) + at(right)) * fw;
    out[x] = Math.floor((bulk + (1 << 23)) / (1 << 24));
  };
  if (edgeA <= edgeB) {
    for (let x = 0; x < edgeA; x++) step(x, 0, x + radius, 0, x + radius + 1);
    for (let x = edgeA; x < edgeB; x++) step(x, x - radius - 1, x + radius, x - radius - 1, x + radius + 1);
    for (let x = edgeB; x <= lastx; x++) step(x, x - radius - 1, lastx, x - radius - 1, lastx);
  } else {
    for (let x = 0; x < edgeB; x++) step(x, 0, x + radius, 0, x + radius + 1);
    for (let x = edgeB; x < edgeA; x++) step(x, 0, lastx, 0, lastx);
    for (let x = edgeA; x <= lastx; x++) step(x, x - radius - 1, lastx, x - radius - 1, lastx);
  }
  return out;
}

/** planes[c][y][x] from interleaved RGB, and back. */
function toPlanes(data: Uint8Array, width: number, height: number): Uint8Array[][] {
  return [0, 1, 2].map((c) =>
    Array.from({ length: height }, (_, y) =>
      Uint8Array.from({ length: width }, (_, x) => data[(y * width + x) * 3 + c]!),
    ),
  );
}

function fromPlanes(planes: Uint8Array[][], width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) out[(y * width + x) * 3 + c] = planes[c]![y]![x]!;
  return out;
}

function transpose(plane: Uint8Array[], width: number, height: number): Uint8Array[] {
  return Array.from({ length: width }, (_, x) => Uint8Array.from({ length: height }, (_, y) => plane[y]![x]!));
}

function referenceBoxBlur(
  data: Uint8Array,
  width: number,
  height: number,
  floatRadius: number,
  passes: number,
): Uint8Array {
  const planes = toPlanes(data, width, height).map((plane) => {
    let rows = plane;
    for (let p = 0; p < passes; p++) rows = rows.map((row) => referenceLineBoxBlur(row, floatRadius));
    let cols = transpose(rows, width, height);
    for (let p = 0; p < passes; p++) cols = cols.map((col) => referenceLineBoxBlur(col, floatRadius));
    return transpose(cols, height, width);
  });
  return fromPlanes(planes, width, height);
}

function referenceCoeffs(inSize: number, outSize: number): { bounds: number[][]; k: number[][] } {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = 1.0 * filterscale;
  const bounds: number[][] = [];
  const k: number[][] = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = 0 + (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const w: number[] = [];
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      w.push(t < 1.0 ? 1.0 - t : 0.0);
    }
    const ww = w.reduce((a, b) => a + b, 0);
    k.push(
      w
        .map((v) => (ww !== 0 ? v / ww : v))
        .map((v) => (v < 0 ? Math.trunc(-0.5 + v * 2 ** 22) : Math.trunc(0.5 + v * 2 ** 22))),
    );
    bounds.push([xmin, xmax]);
  }
  return { bounds, k };
}

function referenceResize(data: Uint8Array, width: number, height: number, outW: number, outH: number): Uint8Array {
  const clip = (ss: number): number => Math.min(255, Math.max(0, Math.floor(ss / 2 ** 22)));
  const planes = toPlanes(data, width, height).map((plane) => {
    const h = referenceCoeffs(width, outW);
    const rows = plane.map((row) =>
      Uint8Array.from({ length: outW }, (_, xx) => {
        const [xmin, n] = h.bounds[xx]! as [number, number];
        let ss = 1 << 21;
        for (let x = 0; x < n; x++) ss += row[xmin + x]! * h.k[xx]![x]!;
        return clip(ss);
      }),
    );
    const v = referenceCoeffs(height, outH);
    return Array.from({ length: outH }, (_, yy) =>
      Uint8Array.from({ length: outW }, (_, xx) => {
        const [ymin, n] = v.bounds[yy]! as [number, number];
        let ss = 1 << 21;
        for (let y = 0; y < n; y++) ss += rows[ymin + y]![xx]! * v.k[yy]![y]!;
        return clip(ss);
      }),
    );
  });
  return fromPlanes(planes, outW, outH);
}

test("pil-exact - gaussian blur radius is Pillow's float32 extended-box radius", () => {
  // sigma 1, 3 passes: sigma2 = 1/3, l = 0, a = 1/4 (rounded through float32).
  assert.equal(gaussianBlurBoxRadius(1.0, 3), Math.fround(0.25000003));
  assert.equal(Math.trunc(gaussianBlurBoxRadius(5.0, 3)), 4);
});

test("pil-exact - box blur matches a line-by-line transcription of BoxBlur.c", () => {
  const sizes: [number, number][] = [
    [1, 1],
    [2, 3],
    [3, 2],
    [1, 7],
    [7, 1],
    [5, 5],
    [17, 9],
    [40, 31],
  ];
  const radii = [gaussianBlurBoxRadius(1.0, 3), 0.6, 1.5, 2.75, 10.3];
  let seed = 1;
  for (const [w, h] of sizes) {
    for (const radius of radii) {
      for (const passes of [1, 2, 3]) {
        const img = randomRgb(w, h, seed++);
        assert.deepEqual(
          boxBlurRgb(img, w, h, radius, passes),
          referenceBoxBlur(img, w, h, radius, passes),
          `${w}x${h} radius ${radius} passes ${passes}`,
        );
      }
    }
  }
});

test("pil-exact - bilinear resize matches a transcription of Resample.c, up and down", () => {
  const cases: [number, number, number, number][] = [
    [40, 31, 224, 224],
    [300, 200, 224, 224],
    [17, 9, 5, 3],
    [1, 1, 7, 5],
    [2, 3, 224, 224],
    [224, 100, 224, 224],
    [100, 224, 224, 224],
    [9, 9, 9, 9],
    [513, 47, 31, 60],
  ];
  let seed = 100;
  for (const [w, h, ow, oh] of cases) {
    const img = randomRgb(w, h, seed++);
    assert.deepEqual(
      resizeBilinearRgb(img, w, h, ow, oh),
      referenceResize(img, w, h, ow, oh),
      `${w}x${h} -> ${ow}x${oh}`,
    );
  }
});

test("pil-exact - a constant image stays constant through blur and resize", () => {
  const colour = [12, 200, 255] as const;
  for (const [w, h] of [
    [1, 1],
    [2, 3],
    [3, 2],
    [64, 48],
    [500, 300],
  ] as const) {
    const img = solidRgb(w, h, colour);
    assert.deepEqual(gaussianBlurRgb(img, w, h), img, `blur ${w}x${h}`);
    assert.deepEqual(resizeBilinearRgb(img, w, h, 224, 224), solidRgb(224, 224, colour), `resize ${w}x${h}`);
  }
});

test("pil-exact - outputs have the requested dimensions and leave the input untouched", () => {
  const img = randomRgb(37, 23, 7);
  const copy = img.slice();
  assert.equal(gaussianBlurRgb(img, 37, 23).length, 37 * 23 * 3);
  assert.equal(resizeBilinearRgb(img, 37, 23, 224, 224).length, 224 * 224 * 3);
  assert.equal(resizeBilinearRgb(img, 37, 23, 5, 11).length, 5 * 11 * 3);
  assert.equal(pilPreprocessRgb(img, 37, 23).length, 3 * 224 * 224);
  assert.deepEqual(img, copy);
  assert.notEqual(resizeBilinearRgb(img, 37, 23, 37, 23), img, "same-size resize returns a copy");
});

test("pil-exact - bilinear coefficients sum to one in 22-bit fixed point", () => {
  for (const [inSize, outSize] of [
    [1000, 224],
    [188, 224],
    [224, 224],
    [1, 224],
    [2, 3],
  ] as const) {
    const { kernelSize, bounds, weights } = bilinearCoeffs(inSize, outSize);
    for (let i = 0; i < outSize; i++) {
      const n = bounds[i * 2 + 1]!;
      assert.ok(bounds[i * 2]! >= 0 && bounds[i * 2]! + n <= inSize);
      let sum = 0;
      for (let k = 0; k < n; k++) sum += weights[i * kernelSize + k]!;
      assert.ok(Math.abs(sum - 2 ** 22) <= n, `${inSize}->${outSize} sample ${i}: ${sum}`);
    }
  }
});

test("pil-exact - normalisation is numpy float32 ((v / 255) - mean) / std in CHW order", () => {
  const img = new Uint8Array([0, 0, 0, 255, 255, 255]); // 2x1: black, white
  const t = normalizeToChw(img, 2, 1);
  assert.equal(t.length, 6);
  // Extremes of the golden tensors: R of 0 and B of 255.
  assert.equal(t[0], -2.1179039478302);
  assert.equal(t[5], 2.640000104904175);
  const f = Math.fround;
  assert.equal(t[3], f(f(f(255 / 255) - f(0.456)) / f(0.224)), "G plane, second pixel");
});

test("pil-exact - tiny inputs (1x1, 2x3) produce a full 3x224x224 tensor", () => {
  const one = pilPreprocessRgb(new Uint8Array([10, 20, 30]), 1, 1);
  assert.equal(one.length, 3 * 224 * 224);
  assert.ok(
    one.subarray(0, 224 * 224).every((v) => v === one[0]),
    "constant R plane",
  );
  const six = pilPreprocessRgb(randomRgb(2, 3, 3), 2, 3);
  assert.equal(six.length, 3 * 224 * 224);
  assert.ok(six.every(Number.isFinite));
});

test("pil-exact - invalid dimensions are rejected", () => {
  assert.throws(() => gaussianBlurRgb(new Uint8Array(5), 1, 2), RangeError);
  assert.throws(() => resizeBilinearRgb(new Uint8Array(3), 1, 1, 0, 5), RangeError);
  assert.throws(() => boxBlurRgb(new Uint8Array(3), 1, 1, 1, 0), RangeError);
});
