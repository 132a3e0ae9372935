import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeFloat32, encodeFloat32, parseShape, formatShape } from "../../subjects/tensor-codec.ts";
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
  const bad = (fn: () => unknown) => assert.throws(fn, (e: unknown) => e instanceof GraphError && e.code === "BAD_REQUEST");
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
  assert.deepEqual(decodeFloat32(encodeFloat32(edge), "float32", [5]), edge, "the largest, smallest and signed-zero floats are finite");
  assert.deepEqual(parseShape("1, 3,224,224"), [1, 3, 224, 224]);
  assert.equal(formatShape([3, 224, 224]), "3,224,224");
});
