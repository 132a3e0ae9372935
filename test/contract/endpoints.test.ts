/**
 * Every endpoint definition of the project (subjects/registry.ts), round-tripped through a real nats-server: served with
 * `service.serve`, called with `client.call`. A valid payload arrives parsed and its reply comes back typed; an
 * invalid payload is refused by the caller before it is sent, and by the server (error headers) when a foreign
 * client sends it anyway. An endpoint needs samples here or an `example` in its definition, else the first test fails.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { headers as natsHeaders } from "@nats-io/transport-node";
import {
  ENDPOINTS,
  OPS_ENDPOINTS,
  ErrorCodes,
  GraphError,
  Headers,
  IMAGE_TENSOR_SHAPE,
  InferRun,
  decodePayload,
  describePayload,
  elementCount,
  encodeFloat32,
  encodePayload,
  type EndpointDef,
  type ErrorCode,
} from "../../subjects/index.ts";
import { connectNats, createClient, createLogger, createService } from "../../runtime/index.ts";
import { startNats } from "../helpers/graph.ts";

const log = createLogger("test", "error");
const image = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]);
const tensor = encodeFloat32(new Float32Array(elementCount(IMAGE_TENSOR_SHAPE)).fill(0.5));
const logits = encodeFloat32(Float32Array.from({ length: 1000 }, (_, i) => i / 1000));

interface Sample {
  /** A request `client.call` accepts, and what the handler then receives. */
  input: unknown;
  received: (v: unknown) => void;
  /** A reply the handler returns, and what the caller then gets. */
  reply: unknown;
  got: (v: unknown) => void;
  /** An input `client.call` refuses with `code`, before sending it. */
  badInput: unknown;
  /** Raw bytes + headers a foreign client might send; the server answers `code`. */
  badWire: { data: Uint8Array; headers: Record<string, string>; code: ErrorCode };
  code: ErrorCode;
}

const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const same = (expected: unknown) => (v: unknown) => assert.deepEqual(v, expected);

const SAMPLES: Record<string, Sample> = {
  "preprocess.classify": {
    input: { data: image, headers: { [Headers.TopK]: 3, [Headers.ContentType]: "image/jpeg" } },
    received: (v) =>
      assert.deepEqual(v, {
        data: Buffer.from(image),
        headers: { [Headers.TopK]: 3, [Headers.ContentType]: "image/jpeg" },
      }),
    reply: [{ label: "cat", score: 0.9 }],
    got: same([{ label: "cat", score: 0.9 }]),
    badInput: { data: image, headers: { [Headers.TopK]: "0x10" } },
    badWire: { data: image, headers: { [Headers.ContentType]: "text/html" }, code: "UNSUPPORTED_MEDIA_TYPE" },
    code: "BAD_REQUEST",
  },
  "infer.run": {
    input: { data: tensor, shape: IMAGE_TENSOR_SHAPE },
    received: (v) => {
      const t = v as { data: Uint8Array; shape: number[]; dtype: string };
      assert.deepEqual(t.shape, [...IMAGE_TENSOR_SHAPE]);
      assert.equal(t.dtype, "float32", "a tensor sent without a dtype is the endpoint's first");
      assert.deepEqual(Buffer.from(t.data), Buffer.from(tensor));
    },
    reply: { data: logits, shape: [1000] },
    got: (v) => {
      const t = v as { data: Uint8Array; shape: number[] };
      assert.deepEqual(t.shape, [1000]);
      assert.deepEqual(Buffer.from(t.data), Buffer.from(logits));
    },
    badInput: { data: tensor, shape: [3, 224, 224] },
    badWire: {
      data: tensor,
      headers: { [Headers.Dtype]: "float32", [Headers.Shape]: "0x1,3,224,224" },
      code: "BAD_REQUEST",
    },
    code: "BAD_REQUEST",
  },
  "infer.labels": {
    input: undefined,
    received: same(undefined),
    reply: ["a", "b"],
    got: same(["a", "b"]),
    badInput: { extra: 1 },
    badWire: { data: json([1]), headers: {}, code: "BAD_REQUEST" },
    code: "BAD_REQUEST",
  },
  "infer.info": {
    input: {},
    received: same({}),
    reply: {
      model: "m.onnx",
      execution_provider: "webgpu",
      provider_fallbacks: [
        { provider: "cuda", reason: "OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library" },
      ],
      input_shape: [3, 224, 224],
      output_size: 1000,
      max_batch_size: 64,
      max_queue_delay_ms: 2,
      max_queue_size: 256,
      max_concurrent_batches: 2,
    },
    got: (v) => {
      const info = v as { output_size: number; execution_provider: string; provider_fallbacks: { provider: string }[] };
      assert.equal(info.output_size, 1000);
      assert.equal(info.execution_provider, "webgpu");
      assert.deepEqual(
        info.provider_fallbacks.map((f) => f.provider),
        ["cuda"],
      );
    },
    badInput: "info please",
    badWire: { data: json({ verbose: true }), headers: {}, code: "BAD_REQUEST" },
    code: "BAD_REQUEST",
  },
  "greeter.greet": {
    input: { name: "ada" },
    received: same({ name: "ada" }),
    reply: { message: "Hello, ada!", served_by: "r1" },
    got: same({ message: "Hello, ada!", served_by: "r1" }),
    badInput: { name: "" },
    badWire: { data: json({ nom: "x" }), headers: {}, code: "BAD_REQUEST" },
    code: "BAD_REQUEST",
  },
  "greeter-proxy.greeting": {
    input: { name: "grace" },
    received: same({ name: "grace" }),
    reply: { message: "Hi, grace!", served_by: "r2" },
    got: same({ message: "Hi, grace!", served_by: "r2" }),
    badInput: { name: 7 },
    badWire: { data: new TextEncoder().encode("{not json"), headers: {}, code: "BAD_REQUEST" },
    code: "BAD_REQUEST",
  },
  "greeter-proxy.endpoints": {
    input: undefined,
    received: same(undefined),
    reply: { pattern_a: "sg.v1.greeter.greet", pattern_b: null },
    got: same({ pattern_a: "sg.v1.greeter.greet", pattern_b: null }),
    badInput: [],
    badWire: { data: json({ x: 1 }), headers: {}, code: "BAD_REQUEST" },
    code: "BAD_REQUEST",
  },
  "ab-router.process": {
    input: { message: "hi", user_key: "u1" },
    received: same({ message: "hi", user_key: "u1" }),
    reply: {
      ab_test_result: { user_key: "u1", selected_variant: "B", gate_name: "g", decided_by: "statsig" },
      response: { variant: "B", message: "HI", algorithm: "x" },
    },
    got: (v) => assert.equal((v as { response: { message: string } }).response.message, "HI"),
    badInput: { message: "hi" },
    badWire: { data: json({ message: "hi", user_key: "" }), headers: {}, code: "BAD_REQUEST" },
    code: "BAD_REQUEST",
  },
  "variant.process": {
    input: { message: "hi" },
    received: same({ message: "hi" }),
    reply: { variant: "A", message: "ok", algorithm: "baseline" },
    got: same({ variant: "A", message: "ok", algorithm: "baseline" }),
    badInput: { message: "x".repeat(5000) },
    badWire: { data: json({ message: 1 }), headers: {}, code: "BAD_REQUEST" },
    code: "BAD_REQUEST",
  },
};

/** The graph's endpoints and those of `up`'s control service: every contract carried over NATS. */
const CONTRACTS: readonly EndpointDef[] = [...ENDPOINTS, ...OPS_ENDPOINTS];
const key = (d: EndpointDef) => `${d.service}.${d.name}`;

/**
 * The samples of an endpoint: this file's (the reference endpoints, with checks of their own), else those its
 * definition's `example` gives (a JSON endpoint of one's own is covered the day it is written).
 */
function sampleOf(d: EndpointDef): Sample | undefined {
  const own = SAMPLES[key(d)];
  if (own) return own;
  const ex = d.example;
  if (!ex || d.request.kind !== "json" || d.reply.kind !== "json") return undefined;
  const req = d.request.schema;
  const rep = d.reply.schema;
  return {
    input: ex.request,
    received: same(req.parse(ex.request)),
    reply: ex.reply,
    got: same(rep.parse(ex.reply)),
    // No JSON schema of a contract takes a BigInt; and a body that is not JSON at all.
    badInput: 1n,
    badWire: { data: new TextEncoder().encode("{not json"), headers: {}, code: "BAD_REQUEST" },
    code: "BAD_REQUEST",
  };
}

test("endpoints - every endpoint has a definition with a known service, a token name and codes from the table", () => {
  for (const d of CONTRACTS)
    assert.ok(sampleOf(d), `${key(d)}: give its definition an \`example\` (request and reply) or add samples here`);
  for (const k of Object.keys(SAMPLES))
    assert.ok(
      CONTRACTS.some((d) => key(d) === k),
      `samples of ${k}, which is not defined`,
    );
  for (const d of CONTRACTS) {
    assert.match(d.name, /^[A-Za-z0-9_-]+$/);
    for (const c of d.errors) assert.ok(c in ErrorCodes, `${key(d)}: ${c}`);
    assert.equal(typeof d.idempotent, "boolean");
  }
});

test("endpoints - a reply that breaks the contract is CONTRACT_VIOLATION on the caller's side", () => {
  for (const d of CONTRACTS) {
    const s = sampleOf(d)!;
    const e = encodePayload(d.reply, s.reply as never, "CONTRACT_VIOLATION");
    s.got(decodePayload(d.reply, e.data, (h) => e.headers[h], "CONTRACT_VIOLATION"));
    assert.throws(
      () => decodePayload(d.reply, json({ surprise: true }), () => undefined, "CONTRACT_VIOLATION"),
      (err: unknown) => err instanceof GraphError && err.code === "CONTRACT_VIOLATION",
      key(d),
    );
  }
});

test("endpoints - valid and invalid payloads round-trip through serve() and call() on a real nats-server", async () => {
  const nats = await startNats();
  const nc = await connectNats({ name: "contract", servers: nats.url });
  const svc = createService(nc, { name: "contract", maxInFlight: 16, defaultTimeoutMs: 3000, log });
  const client = createClient(nc, { caller: "contract", defaultTimeoutMs: 3000 });
  try {
    for (const d of CONTRACTS) {
      const s = sampleOf(d)!;
      const subject = `t.${d.service}.${d.name}`;
      let received: unknown = "not called";
      svc.serve(d as EndpointDef, subject, (input) => {
        received = input;
        return s.reply as never;
      });
      await nc.flush();

      s.got(await client.call(d as EndpointDef, subject, s.input as never));
      s.received(received);

      received = "not called";
      await assert.rejects(
        client.call(d as EndpointDef, subject, s.badInput as never),
        (err: unknown) => err instanceof GraphError && err.code === s.code,
        `${key(d)} bad input`,
      );
      assert.equal(received, "not called", `${key(d)}: a bad input is never sent`);

      const h = natsHeaders();
      for (const [k, v] of Object.entries(s.badWire.headers)) h.set(k, v);
      const msg = await nc.request(subject, s.badWire.data, { timeout: 3000, headers: h });
      assert.equal(msg.headers?.get(Headers.GraphError), s.badWire.code, `${key(d)} bad wire payload`);
      assert.equal(msg.headers?.get(Headers.ServiceErrorCode), String(ErrorCodes[s.badWire.code].status));
      assert.equal(received, "not called", `${key(d)}: the handler never sees a bad payload`);
    }
  } finally {
    await svc.stop({ maxWaitMs: 100 });
    await nc.close();
    await nats.stop();
  }
});

test("endpoints - infer's run takes uint8 pixels or float32 values; the Graph-Dtype header says which", async () => {
  assert.equal(describePayload(InferRun.request), "tensor float32|uint8 1,3,224,224");
  const pixels = Uint8Array.from({ length: elementCount(IMAGE_TENSOR_SHAPE) }, (_, i) => (i * 7) & 255);
  const e = encodePayload(InferRun.request, { data: pixels, shape: IMAGE_TENSOR_SHAPE, dtype: "uint8" }, "BAD_REQUEST");
  assert.deepEqual(e.headers, { [Headers.Dtype]: "uint8", [Headers.Shape]: "1,3,224,224" });
  const bad = (fn: () => unknown) =>
    assert.throws(fn, (err: unknown) => err instanceof GraphError && err.code === "BAD_REQUEST");
  bad(() => encodePayload(InferRun.request, { data: pixels, shape: IMAGE_TENSOR_SHAPE }, "BAD_REQUEST")); // uint8 bytes sent as float32
  bad(() =>
    encodePayload(InferRun.request, { data: tensor, shape: IMAGE_TENSOR_SHAPE, dtype: "uint8" }, "BAD_REQUEST"),
  );
  bad(() =>
    encodePayload(InferRun.request, { data: pixels, shape: IMAGE_TENSOR_SHAPE, dtype: "int8" as never }, "BAD_REQUEST"),
  );
  assert.throws(
    () =>
      encodePayload(
        InferRun.reply,
        { data: pixels.subarray(0, 1000), shape: [1000], dtype: "uint8" },
        "CONTRACT_VIOLATION",
      ),
    (err: unknown) => err instanceof GraphError && err.code === "CONTRACT_VIOLATION",
    "logits are float32 only",
  );

  const nats = await startNats();
  const nc = await connectNats({ name: "contract-dtypes", servers: nats.url });
  const svc = createService(nc, { name: "contract-dtypes", maxInFlight: 16, defaultTimeoutMs: 3000, log });
  const client = createClient(nc, { caller: "contract-dtypes", defaultTimeoutMs: 3000 });
  try {
    const received: { dtype: string; bytes: number }[] = [];
    svc.serve(InferRun, "t.infer.run", (t) => {
      received.push({ dtype: t.dtype, bytes: t.data.byteLength });
      return { data: logits, shape: [1000] };
    });
    await nc.flush();
    const got = await client.call(InferRun, "t.infer.run", { data: pixels, shape: IMAGE_TENSOR_SHAPE, dtype: "uint8" });
    assert.equal(got.dtype, "float32");
    await client.call(InferRun, "t.infer.run", { data: tensor, shape: IMAGE_TENSOR_SHAPE, dtype: "float32" });
    assert.deepEqual(received, [
      { dtype: "uint8", bytes: 150_528 },
      { dtype: "float32", bytes: 602_112 },
    ]);

    // A foreign client: a uint8 header on a float32-sized body, and an unknown dtype, are refused with headers.
    for (const [dtype, body] of [
      ["uint8", tensor],
      ["int8", pixels],
    ] as const) {
      const h = natsHeaders();
      h.set(Headers.Dtype, dtype);
      h.set(Headers.Shape, "1,3,224,224");
      const msg = await nc.request("t.infer.run", body, { timeout: 3000, headers: h });
      assert.equal(msg.headers?.get(Headers.GraphError), "BAD_REQUEST", `${dtype}, ${body.byteLength} bytes`);
    }
    assert.equal(received.length, 2, "the handler never sees a bad tensor");
  } finally {
    await svc.stop({ maxWaitMs: 100 });
    await nc.close();
    await nats.stop();
  }
});

test("endpoints - a node's own endpoint is written with the exported helpers, and a bad definition fails where it is written", async () => {
  const { endpoint, json: jsonPayload, tensor, bytes, NoInput } = await import("../../runtime/index.ts");
  const { z } = await import("zod");
  const Upper = endpoint({
    service: "upper",
    name: "run",
    description: "Upper-cases text.",
    request: jsonPayload(z.strictObject({ text: z.string() })),
    reply: jsonPayload(z.strictObject({ text: z.string() })),
    errors: ["BAD_REQUEST"],
    idempotent: true,
  });
  assert.ok(Object.isFrozen(Upper));
  const e = encodePayload(Upper.request, { text: "hi" }, "BAD_REQUEST");
  assert.deepEqual(
    decodePayload(Upper.request, e.data, () => undefined, "BAD_REQUEST"),
    { text: "hi" },
  );
  assert.throws(
    () => encodePayload(Upper.request, { text: 1 } as never, "BAD_REQUEST"),
    (err: unknown) => err instanceof GraphError && err.code === "BAD_REQUEST",
  );
  assert.deepEqual(tensor(["uint8"] as never, [1, null]), { kind: "tensor", dtypes: ["uint8"], shape: [1, null] });
  assert.equal(bytes(z.object({}), { code: "BAD_REQUEST", message: "empty" }).kind, "bytes");
  const base = {
    service: "upper",
    name: "run",
    description: "",
    request: NoInput,
    reply: NoInput,
    errors: [] as ErrorCode[],
    idempotent: true,
  };
  assert.throws(() => endpoint({ ...base, name: "run.now" }), /name must be a subject token/);
  assert.throws(() => endpoint({ ...base, service: "services/upper" }), /service must be a service folder's name/);
  assert.throws(
    () => endpoint({ ...base, errors: ["TEAPOT" as ErrorCode] }),
    /"TEAPOT" is not a code of the error table/,
  );
  assert.throws(() => endpoint({ ...base, request: tensor([], [1]) }), /at least one dtype/);
});
