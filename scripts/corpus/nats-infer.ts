/** The infer run subject over NATS: bad tensor shapes, dtypes and sizes, non-finite values, stray headers, deadlines. */
import type { BodySpec } from "../../test/fixtures/corpus/format.ts";
import { b64, E, json, type Corpus } from "./builder.ts";
import { MIB, S, TENSOR_BYTES, TENSOR_ELEMS } from "./graph.ts";
import { natsDeadlines } from "./nats-deadlines.ts";
import { BAD_CONTENT_TYPES, BAD_DTYPES, BAD_SHAPES, tensorHeaders } from "./nats-values.ts";
import { ODD_TOP_K } from "./numbers.ts";

export function natsInfer(c: Corpus): void {
  const good = (): BodySpec => ({ kind: "float32", count: TENSOR_ELEMS, seed: c.seed() });
  const small = (): BodySpec => ({ kind: "float32", count: c.int(0, 64), seed: c.seed() });
  const ok = "1,3,224,224";
  for (const [i, s] of BAD_SHAPES.entries()) {
    c.nats(S.run, "shape", `Graph-Shape ${JSON.stringify(s.slice(0, 40))}`, {
      headers: tensorHeaders(s, "float32"),
      body: i % 8 === 0 ? good() : small(),
      expect: E("BAD_REQUEST"),
    });
  }
  c.nats(S.run, "shape", "no Graph-Shape", {
    headers: tensorHeaders(undefined, "float32"),
    body: good(),
    expect: E("BAD_REQUEST"),
  });
  c.nats(S.run, "shape", "2,3,224,224 with two rows of data", {
    headers: tensorHeaders("2,3,224,224", "float32"),
    body: { kind: "float32", count: 2 * TENSOR_ELEMS, seed: c.seed() },
    expect: E("BAD_REQUEST"),
  });
  for (const [i, d] of BAD_DTYPES.entries()) {
    c.nats(S.run, "dtype", `Graph-Dtype ${JSON.stringify(d)}`, {
      headers: tensorHeaders(ok, d),
      body: i % 5 === 0 ? good() : small(),
      expect: E("BAD_REQUEST"),
    });
  }
  c.nats(S.run, "dtype", "no Graph-Dtype", {
    headers: tensorHeaders(ok, undefined),
    body: good(),
    expect: E("BAD_REQUEST"),
  });
  c.nats(S.run, "dtype", "float64 with float64-sized data", {
    headers: tensorHeaders(ok, "float64"),
    body: { kind: "float32", count: 2 * TENSOR_ELEMS, seed: c.seed() },
    expect: E("BAD_REQUEST"),
  });
  c.nats(S.run, "dtype", "uint8 with float32-sized data", {
    headers: tensorHeaders(ok, "uint8"),
    body: { kind: "random", seed: c.seed(), length: TENSOR_BYTES },
    expect: E("BAD_REQUEST"),
  });
  c.nats(S.run, "dtype", "uint8 with a 2,3,224,224 shape", {
    headers: tensorHeaders("2,3,224,224", "uint8"),
    body: { kind: "random", seed: c.seed(), length: 2 * TENSOR_ELEMS },
    expect: E("BAD_REQUEST"),
  });
  for (const bytes of [
    0,
    1,
    3,
    4,
    TENSOR_BYTES - 4,
    TENSOR_BYTES - 1,
    TENSOR_BYTES + 1,
    TENSOR_BYTES + 4,
    2 * TENSOR_BYTES,
    TENSOR_ELEMS,
    224 * 224 * 4 * 4,
    1000,
  ]) {
    c.nats(S.run, "size", `${bytes} bytes for a 1,3,224,224 float32 tensor`, {
      headers: tensorHeaders(ok, "float32"),
      body: { kind: "float32", count: Math.min(TENSOR_ELEMS, Math.ceil(bytes / 4)), seed: c.seed(), bytes },
      expect: E("BAD_REQUEST"),
    });
  }
  c.nats(S.run, "size", "1.5 MiB (over the NATS default max_payload) for a 1,3,224,224 float32 tensor", {
    headers: tensorHeaders(ok, "float32"),
    body: { kind: "fill", byte: 0x3f, length: 1.5 * MIB },
    expect: E("BAD_REQUEST"),
    timeoutMs: 20_000,
  });
  c.nats(S.run, "size", "JSON instead of a tensor", {
    headers: tensorHeaders(ok, "float32"),
    body: json({ data: [1, 2, 3], shape: [1, 3, 224, 224] }),
    expect: E("BAD_REQUEST"),
  });
  // non-finite values: the right size, shape and dtype
  const specials = ["NaN", "Infinity", "-Infinity"] as const;
  for (const special of specials) {
    c.nats(S.run, "non-finite", `every value ${special}`, {
      headers: tensorHeaders(ok, "float32"),
      body: { kind: "float32", count: TENSOR_ELEMS, seed: c.seed(), special, every: 1 },
      expect: E("BAD_REQUEST"),
    });
    c.nats(S.run, "non-finite", `one ${special} at a random position`, {
      headers: tensorHeaders(ok, "float32"),
      body: {
        kind: "float32",
        count: TENSOR_ELEMS,
        seed: c.seed(),
        special,
        every: TENSOR_ELEMS,
        offset: c.int(0, TENSOR_ELEMS - 1),
      },
      expect: E("BAD_REQUEST"),
    });
    c.nats(S.run, "non-finite", `every ${c.int(50, 500)}th value ${special}`, {
      headers: tensorHeaders(ok, "float32"),
      body: {
        kind: "float32",
        count: TENSOR_ELEMS,
        seed: c.seed(),
        special,
        every: c.int(50, 500),
        offset: c.int(0, 49),
      },
      expect: E("BAD_REQUEST"),
    });
    c.nats(S.run, "non-finite", `the last value ${special}`, {
      headers: tensorHeaders(ok, "float32"),
      body: {
        kind: "float32",
        count: TENSOR_ELEMS,
        seed: c.seed(),
        special,
        every: TENSOR_ELEMS,
        offset: TENSOR_ELEMS - 1,
      },
      expect: E("BAD_REQUEST"),
    });
  }
  // a quiet NaN with a payload and a signalling NaN pattern, as raw bits
  for (const [name, bits] of [
    ["signalling NaN 0x7f800001", 0x7f800001],
    ["NaN with payload 0x7fc12345", 0x7fc12345],
    ["negative NaN 0xffc00000", 0xffc00000],
  ] as const) {
    const patch = Buffer.alloc(4);
    patch.writeUInt32LE(bits);
    c.nats(S.run, "non-finite", `a ${name} at value ${c.int(0, TENSOR_ELEMS - 1)}`, {
      headers: tensorHeaders(ok, "float32"),
      body: { kind: "concat", parts: [{ kind: "float32", count: TENSOR_ELEMS - 1, seed: c.seed() }, b64(patch)] },
      expect: E("BAD_REQUEST"),
    });
  }
  for (let i = 0; i < 4; i++) {
    c.nats(S.run, "stray-headers", "Graph-Top-K and Content-Type on a tensor with a bad shape", {
      headers: {
        ...tensorHeaders(c.pick(BAD_SHAPES), "float32"),
        "Graph-Top-K": c.pick(ODD_TOP_K.filter(Boolean)),
        "Content-Type": c.pick(BAD_CONTENT_TYPES),
      },
      body: small(),
      expect: E("BAD_REQUEST"),
    });
  }
  natsDeadlines(c, S.run, good(), { body: small(), code: "BAD_REQUEST", headers: tensorHeaders(ok, "float32") });
}
