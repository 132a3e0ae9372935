import { test } from "node:test";
import assert from "node:assert/strict";
import { softmax, topK } from "../../services/preprocess/src/postprocess.ts";

const sum = (xs: ArrayLike<number>): number => Array.from(xs).reduce((a, b) => a + b, 0);

test("postprocess - softmax sums to one and preserves order", () => {
  const p = softmax(new Float32Array([1, 2, 3, -4, 0.5]));
  assert.ok(p instanceof Float64Array);
  assert.ok(Math.abs(sum(p) - 1) < 1e-15);
  assert.ok(p[2]! > p[1]! && p[1]! > p[0]! && p[0]! > p[4]! && p[4]! > p[3]!);
  // exp(1) / (exp(1) + exp(2) + exp(3) + exp(-4) + exp(0.5)) in float64
  const e = [1, 2, 3, -4, 0.5].map(Math.exp);
  assert.ok(Math.abs(p[0]! - e[0]! / sum(e)) < 1e-16);
});

test("postprocess - softmax is stable for large logits", () => {
  const p = softmax(new Float32Array([1000, 1001, 3e38, -3e38]));
  assert.ok(p.every(Number.isFinite));
  assert.equal(p[2], 1);
  assert.equal(p[3], 0);
  const q = softmax(new Float32Array([1000, 1000]));
  assert.deepEqual(Array.from(q), [0.5, 0.5]);
  const r = softmax(new Float32Array([-1000, -1001]));
  assert.ok(Math.abs(r[0]! - 1 / (1 + Math.exp(-1))) < 1e-15);
});

test("postprocess - softmax of an empty vector is empty", () => {
  assert.equal(softmax(new Float32Array(0)).length, 0);
});

test("postprocess - topK ranks by score, best first, with labels", () => {
  const labels = ["a", "b", "c", "d", "e"];
  const got = topK([0.1, 0.4, 0.05, 0.3, 0.15], 3, labels);
  assert.deepEqual(got, [
    { index: 1, label: "b", score: 0.4 },
    { index: 3, label: "d", score: 0.3 },
    { index: 4, label: "e", score: 0.15 },
  ]);
});

test("postprocess - topK breaks ties by the lower index", () => {
  const got = topK([0.2, 0.3, 0.2, 0.3, 0.2], 5, []);
  assert.deepEqual(
    got.map((c) => c.index),
    [1, 3, 0, 2, 4],
  );
  assert.deepEqual(
    topK([0.5, 0.5, 0.5], 2, []).map((c) => c.index),
    [0, 1],
  );
});

test("postprocess - topK clamps k to the vector length and to zero", () => {
  assert.equal(topK([0.5, 0.25, 0.25], 10, ["x", "y", "z"]).length, 3);
  assert.deepEqual(topK([0.5, 0.5], 0, []), []);
  assert.deepEqual(topK([0.5, 0.5], -3, []), []);
  assert.deepEqual(topK([], 5, []), []);
});

test("postprocess - topK names unlabelled classes by index", () => {
  assert.deepEqual(topK([0.1, 0.9], 1, ["only-one"]), [{ index: 1, label: "class 1", score: 0.9 }]);
});

test("postprocess - topK agrees with a full stable sort on random scores", () => {
  let s = 42;
  const next = (): number => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) % 1000) / 1000; // coarse: many ties
  const probs = Array.from({ length: 1000 }, next);
  const expected = probs
    .map((p, index) => ({ p, index }))
    .sort((a, b) => b.p - a.p || a.index - b.index)
    .slice(0, 25)
    .map((x) => x.index);
  assert.deepEqual(
    topK(probs, 25, []).map((c) => c.index),
    expected,
  );
});
