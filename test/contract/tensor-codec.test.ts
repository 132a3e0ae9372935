import { test } from "node:test";
import assert from "node:assert/strict";
import {
  bytesPerElement,
  checkTensor,
  decodeFloat32,
  encodeFloat32,
  firstNonFinite,
  isTensorDtype,
  parseShape,
  formatShape,
} from "../../subjects/tensor-codec.ts";
import { GraphError } from "../../subjects/errors.ts";

test("tensor-codec - encode/decode is the identity, from any byteOffset", () => {
  const t = Float32Array.from({ length: 3 * 224 * 224 }, (_, i) => Math.sin(i) * 3);
  const bytes = encodeFloat32(t);
  assert.equal(bytes.byteLength, 602_112, "one image tensor fits NATS' default 1 MiB max_payload");
  for (const offset of [0, 1, 2, 3]) {
    const buf = Buffer.alloc(bytes.byteLength + offset);
    buf.set(bytes, offset);
    const view = buf.subarray(offset);
    assert.deepEqual(decodeFloat32(view, "float32", [3, 224, 224]), t);
  }
});

test("tensor-codec - wrong dtype, size or shape is BAD_REQUEST", () => {
  const bytes = new Uint8Array(12);
  const bad = (fn: () => unknown) =>
    assert.throws(fn, (e: unknown) => e instanceof GraphError && e.code === "BAD_REQUEST");
  bad(() => decodeFloat32(bytes, "float64", [3]));
  bad(() => decodeFloat32(bytes, undefined, [3]));
  bad(() => decodeFloat32(bytes, "float32", [4]));
  bad(() => parseShape("3,-1"));
  bad(() => parseShape("3,x"));
  bad(() => parseShape(undefined));
  bad(() => parseShape("0x1,3,224,224"));
  bad(() => parseShape("1e2"));
  bad(() => parseShape("+3"));
  for (const v of [NaN, Infinity, -Infinity]) {
    const t = new Float32Array([1, 2, v, 4]);
    bad(() => decodeFloat32(encodeFloat32(t), "float32", [4]));
  }
  const edge = new Float32Array([3.4028234663852886e38, -3.4028234663852886e38, 1e-45, -0, 0]);
  assert.deepEqual(
    decodeFloat32(encodeFloat32(edge), "float32", [5]),
    edge,
    "the largest, smallest and signed-zero floats are finite",
  );
  assert.deepEqual(parseShape("1, 3,224,224"), [1, 3, 224, 224]);
  assert.equal(formatShape([3, 224, 224]), "3,224,224");
});

test("tensor-codec - uint8 tensors: one byte per element, any byte value, checked against a set of dtypes", () => {
  assert.equal(bytesPerElement("uint8"), 1);
  assert.equal(bytesPerElement("float32"), 4);
  assert.ok(isTensorDtype("uint8") && isTensorDtype("float32") && !isTensorDtype("int8") && !isTensorDtype("toString"));
  const pixels = Uint8Array.from({ length: 3 * 224 * 224 }, (_, i) => i & 255);
  assert.equal(pixels.byteLength, 150_528, "a quarter of the float32 tensor of the same image");
  // 0xff 0xff 0xff 0x7f would be a NaN as float32: as uint8 it is just pixels.
  assert.equal(checkTensor(Buffer.from([0xff, 0xff, 0xff, 0x7f]), "uint8", ["float32", "uint8"], [4]), "uint8");
  assert.equal(checkTensor(pixels, "uint8", ["float32", "uint8"], [1, 3, 224, 224]), "uint8");
  assert.equal(checkTensor(new Uint8Array(8), "float32", ["float32", "uint8"], [2]), "float32");
  const bad = (fn: () => unknown, re: RegExp) =>
    assert.throws(fn, (e: unknown) => e instanceof GraphError && e.code === "BAD_REQUEST" && re.test(e.message));
  bad(() => checkTensor(pixels, "uint8", ["float32"], [1, 3, 224, 224]), /expected float32/);
  bad(() => checkTensor(pixels, "int8", ["float32", "uint8"], [1, 3, 224, 224]), /expected float32 or uint8/);
  bad(
    () => checkTensor(pixels, "float32", ["float32", "uint8"], [1, 3, 224, 224]),
    /150528 bytes, shape 1,3,224,224 of float32 needs 602112/,
  );
  bad(() => checkTensor(pixels.subarray(1), "uint8", "uint8", [1, 3, 224, 224]), /needs 150528/);
});

test("tensor-codec - firstNonFinite finds the first NaN or infinity at any byte offset, aligned or not", () => {
  for (const offset of [0, 1, 2, 3, 4]) {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const values = Float32Array.from({ length: 1000 }, (_, i) => (i % 7) - 3.5 + i * 1e-3);
      values[3] = 3.4e38; // the largest finite values are not flagged
      values[5] = -0;
      values[611] = bad;
      values[900] = NaN;
      const bytes = new Uint8Array(offset + values.byteLength + 3);
      bytes.set(new Uint8Array(values.buffer), offset);
      assert.equal(firstNonFinite(bytes.subarray(offset, offset + values.byteLength)), 611, `offset ${offset}, ${bad}`);
      values[611] = 1;
      values[900] = 1;
      bytes.set(new Uint8Array(values.buffer), offset);
      assert.equal(
        firstNonFinite(bytes.subarray(offset, offset + values.byteLength)),
        -1,
        `offset ${offset}, all finite`,
      );
    }
  }
});
