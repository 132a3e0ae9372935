/**
 * infer's WebAssembly pixel normalisation (services/infer/src/pixel-normalizer.ts): the same bits as the reference
 * table lookup (subjects/image-normalization.ts) for every byte of every channel, at any row offset and plane size;
 * bad rows refused; and the committed normalize.wasm is what normalize.wat compiles to.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createPixelNormalizer } from "../../services/infer/src/pixel-normalizer.ts";
import { normalizeChw } from "../../subjects/image-normalization.ts";
import { WAT_SOURCES, compileWat, wasmPathOf } from "../../scripts/build-wasm.ts";

const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

test("pixel-normalizer - normalize.wasm is what normalize.wat compiles to (npm run build:wasm rewrites it)", async () => {
  for (const wat of WAT_SOURCES) {
    const built = await compileWat(wat);
    assert.deepEqual(
      new Uint8Array(readFileSync(wasmPathOf(wat))),
      new Uint8Array(built),
      `${wat} is newer than its .wasm`,
    );
  }
});

test("pixel-normalizer - every byte of every channel gets the reference's bits", () => {
  // Each plane holds all 256 values twice, in a different order per channel, plus a tail that is not a multiple of 8.
  const plane = 2 * 256 + 5;
  const px = new Uint8Array(3 * plane);
  for (let c = 0; c < 3; c++) for (let i = 0; i < plane; i++) px[c * plane + i] = (i * (2 * c + 1) + 17 * c) & 0xff;
  const n = createPixelNormalizer(4 * px.length, px.length);
  const ref = new Float32Array(4 * px.length);
  for (const offset of [0, px.length, 2 * px.length + 1, 3 * px.length]) {
    normalizeChw(px, ref, offset);
    n.normalizeRow(px, offset);
    assert.deepEqual(
      bitsOf(n.output.subarray(offset, offset + px.length)),
      bitsOf(ref.subarray(offset, offset + px.length)),
      `row at ${offset}`,
    );
  }
});

test("pixel-normalizer - a 224x224 image row by row, as a batch slot stages it, and other rows are left alone", () => {
  const row = 3 * 224 * 224;
  const rows = 3;
  const n = createPixelNormalizer(rows * row, row);
  n.output.fill(7);
  const px = new Uint8Array(row);
  for (let i = 0; i < row; i++) px[i] = (i * 2654435761) >>> 24;
  n.normalizeRow(px, row); // the middle row only
  const ref = normalizeChw(px, new Float32Array(row));
  assert.deepEqual(bitsOf(n.output.subarray(row, 2 * row)), bitsOf(ref));
  assert.ok(
    n.output.subarray(0, row).every((v) => v === 7),
    "the row before is untouched",
  );
  assert.ok(
    n.output.subarray(2 * row).every((v) => v === 7),
    "the row after is untouched",
  );
  // A shorter row (a smaller image shape) fits too.
  const small = px.subarray(0, 3 * 10);
  n.normalizeRow(small, 0);
  assert.deepEqual(
    bitsOf(n.output.subarray(0, small.length)),
    bitsOf(normalizeChw(small, new Float32Array(small.length))),
  );
});

test("pixel-normalizer - rows that are not 3 planes, too long, or outside the buffer are refused", () => {
  const n = createPixelNormalizer(30, 12);
  assert.throws(() => n.normalizeRow(new Uint8Array(10), 0), /3 equal planes/);
  assert.throws(() => n.normalizeRow(new Uint8Array(0), 0), /3 equal planes/);
  assert.throws(() => n.normalizeRow(new Uint8Array(15), 0), /longer than/);
  assert.throws(() => n.normalizeRow(new Uint8Array(12), 20), /do not fit/);
  assert.throws(() => n.normalizeRow(new Uint8Array(12), -1), /do not fit/);
  assert.throws(() => createPixelNormalizer(0, 3), RangeError);
  assert.throws(() => createPixelNormalizer(2 ** 31, 3), /does not fit a WebAssembly memory/);
});
