/**
 * infer's start-up choices as pure functions, with test doubles instead of onnxruntime: which execution provider a
 * replica ends up on and what it records about the ones that failed (providers.ts), the batching knobs for that
 * provider (batching.ts), and how a request's tensor becomes a batch row (batch-input.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BATCHING_DEFAULTS } from "../../runtime/index.ts";
import { normalizeChw } from "../../subjects/index.ts";
import { writeBatchRow } from "../../services/infer/src/batch-input.ts";
import { GPU_BATCHING, batchingFor } from "../../services/infer/src/batching.ts";
import { formatAdapter, probeGpu, webgpuAdapterOf, webgpuSkipReason } from "../../services/infer/src/gpu-devices.ts";
import {
  ProviderSelectionError,
  formatFallbacks,
  plainReason,
  providerCandidates,
  selectProvider,
  type ExecutionProvider,
} from "../../services/infer/src/providers.ts";

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A fake session factory: each provider fails with its error, or succeeds with a session named after it. */
function fakeCreate(fails: Partial<Record<ExecutionProvider, string>>) {
  const calls: ExecutionProvider[] = [];
  const create = async (p: ExecutionProvider): Promise<string> => {
    calls.push(p);
    const e = fails[p];
    if (e !== undefined) throw new Error(e);
    return `session on ${p}`;
  };
  return { calls, create };
}

test("infer providers - auto tries cuda, webgpu, cpu in order and records why each failed", async () => {
  const { calls, create } = fakeCreate({
    cuda: "OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library",
    webgpu: "no adapter\nsecond line",
  });
  let t = 0;
  const logged: string[] = [];
  const r = await selectProvider(
    "auto",
    async (p) => {
      t += p === "webgpu" ? 70 : 1;
      return create(p);
    },
    { now: () => t, onFallback: (a) => logged.push(a.provider) },
  );
  assert.deepEqual(calls, ["cuda", "webgpu", "cpu"]);
  assert.equal(r.provider, "cpu");
  assert.equal(r.session, "session on cpu");
  assert.deepEqual(r.fallbacks, [
    { provider: "cuda", reason: "OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library", ms: 1 },
    { provider: "webgpu", reason: "no adapter", ms: 70 },
  ]);
  assert.deepEqual(logged, ["cuda", "webgpu"]);
  assert.equal(
    formatFallbacks(r.fallbacks),
    "cuda: OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library; webgpu: no adapter",
  );
});

test("infer providers - auto stops at the first provider that starts", async () => {
  const { calls, create } = fakeCreate({ cuda: "missing" });
  const r = await selectProvider("auto", create);
  assert.equal(r.provider, "webgpu");
  assert.deepEqual(calls, ["cuda", "webgpu"]);
  assert.deepEqual(
    r.fallbacks.map((f) => f.provider),
    ["cuda"],
  );
});

test("infer providers - a forced provider is tried alone: failing is an error with its reason, never a CPU run", async () => {
  for (const forced of ["cuda", "webgpu"] as const) {
    const { calls, create } = fakeCreate({ [forced]: "it broke" });
    await assert.rejects(selectProvider(forced, create), (e: unknown) => {
      assert.ok(e instanceof ProviderSelectionError);
      assert.equal(e.message, `execution provider ${forced} did not start: it broke`);
      assert.deepEqual(
        e.attempts.map((a) => a.provider),
        [forced],
      );
      return true;
    });
    assert.deepEqual(calls, [forced], "no other provider is tried");
  }
  const cpu = fakeCreate({ cpu: "Load model from m.onnx failed: bad protobuf" });
  await assert.rejects(
    selectProvider("cpu", cpu.create),
    /could not create an onnxruntime session on cpu: Load model from m.onnx failed/,
  );
  assert.deepEqual(providerCandidates("webgpu"), ["webgpu"]);
});

test("infer providers - when every provider fails, auto says why for each", async () => {
  const { create } = fakeCreate({ cuda: "a", webgpu: "b", cpu: "c" });
  await assert.rejects(
    selectProvider("auto", create),
    (e: unknown) =>
      e instanceof ProviderSelectionError &&
      e.message === "no execution provider could start (cuda: a; webgpu: b; cpu: c)" &&
      e.attempts.length === 3,
  );
  await assert.rejects(selectProvider("tpu" as never, create), TypeError);
});

test("infer providers - a slow provider is waited for; the next one is not tried until it has failed", async () => {
  const slow = deferred<string>();
  const started: ExecutionProvider[] = [];
  let t = 0;
  const selection = selectProvider(
    "auto",
    (p) => {
      started.push(p);
      if (p === "cuda") return slow.promise;
      return Promise.resolve(`session on ${p}`);
    },
    { now: () => t },
  );
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, ["cuda"], "one provider at a time: no device is initialised by two providers at once");
  t = 5_000;
  slow.reject(new Error("CUDA driver version is insufficient for CUDA runtime version"));
  const r = await selection;
  assert.equal(r.provider, "webgpu");
  assert.deepEqual(started, ["cuda", "webgpu"]);
  assert.equal(r.fallbacks[0]!.ms, 5_000, "the time the slow attempt took is recorded");

  // ...and a slow provider that does start is the one used.
  const slowOk = deferred<string>();
  const pending = selectProvider("auto", (p) =>
    p === "cuda" ? slowOk.promise : Promise.reject(new Error("not reached")),
  );
  slowOk.resolve("session on cuda");
  const ok = await pending;
  assert.equal(ok.provider, "cuda");
  assert.deepEqual(ok.fallbacks, []);
});

test("infer providers - plainReason keeps the error's first line without onnxruntime's source location", () => {
  assert.equal(
    plainReason(
      new Error(
        "/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters\n",
      ),
    ),
    "Failed to get a WebGPU adapter: No supported adapters",
  );
  assert.equal(
    plainReason(new Error("[ONNXRuntimeError] : 1 : FAIL : Load model from /x.onnx failed:Protobuf parsing failed.")),
    "Load model from /x.onnx failed:Protobuf parsing failed.",
  );
  assert.equal(plainReason(new Error("\n\n  first\nsecond")), "first");
  assert.equal(plainReason("a string"), "a string");
  assert.equal(plainReason(new Error("x".repeat(1000))).length, 303);
});

test("infer batching - CPU keeps the CPU defaults, a GPU batches bigger, later and two at a time", () => {
  assert.deepEqual(batchingFor("cpu"), BATCHING_DEFAULTS);
  assert.deepEqual(batchingFor("cpu"), {
    maxBatchSize: 32,
    maxQueueDelayMs: 0,
    maxQueueSize: 256,
    maxConcurrentBatches: 1,
  });
  for (const gpu of ["cuda", "webgpu"] as const) assert.deepEqual(batchingFor(gpu), GPU_BATCHING);
  assert.ok(
    GPU_BATCHING.maxBatchSize >= 32 &&
      GPU_BATCHING.maxBatchSize <= 64 &&
      GPU_BATCHING.maxQueueDelayMs > 0 &&
      GPU_BATCHING.maxConcurrentBatches === 2,
  );
});

test("infer batching - what graph.config.ts declares wins; a small declared queue bounds the default batch", () => {
  assert.deepEqual(batchingFor("webgpu", { maxQueueDelayMs: 0 }), { ...GPU_BATCHING, maxQueueDelayMs: 0 });
  assert.deepEqual(batchingFor("cpu", { maxBatchSize: 6, maxQueueDelayMs: 1000 }), {
    ...BATCHING_DEFAULTS,
    maxBatchSize: 6,
    maxQueueDelayMs: 1000,
  });
  assert.equal(batchingFor("cuda", { maxQueueSize: 40 }).maxBatchSize, 40);
  assert.equal(batchingFor("cuda", { maxQueueSize: 40, maxBatchSize: 16 }).maxBatchSize, 16);
});

test("infer batch rows - uint8 pixels are normalised into their row, float32 rows are copied as they are", () => {
  const row = 3 * 4 * 4;
  const pixels = Uint8Array.from({ length: row }, (_, i) => (i * 37) & 255);
  const floats = Float32Array.from({ length: row }, (_, i) => i / 10 - 2);
  const wire = Buffer.alloc(row * 4 + 1);
  wire.set(new Uint8Array(floats.buffer), 1); // a float32 payload at an odd byteOffset
  const batch = new Float32Array(new SharedArrayBuffer(3 * row * 4)).fill(9);
  writeBatchRow(batch, 0, row, pixels, "uint8");
  writeBatchRow(batch, 2, row, wire.subarray(1), "float32");
  assert.deepEqual(batch.subarray(0, row), normalizeChw(pixels, new Float32Array(row)));
  assert.ok(
    batch.subarray(row, 2 * row).every((x) => x === 9),
    "row 1 untouched",
  );
  assert.deepEqual(batch.subarray(2 * row), floats);
  assert.throws(() => writeBatchRow(batch, 3, row, pixels, "uint8"), RangeError);
  assert.throws(() => writeBatchRow(batch, 0, row, pixels, "float32"), RangeError);
});

test("infer providers - auto passes over a provider the machine rules out, with that reason; a forced one is tried anyway", async () => {
  const tried: ExecutionProvider[] = [];
  const create = async (p: ExecutionProvider) => {
    tried.push(p);
    if (p === "cuda") throw new Error("libcudart.so.12: cannot open shared object file");
    return `session on ${p}`;
  };
  const skip = (p: ExecutionProvider) =>
    p === "webgpu" ? "only a software adapter (lavapipe) could run it" : undefined;
  const auto = await selectProvider("auto", create, { skip });
  assert.equal(auto.provider, "cpu");
  assert.deepEqual(tried, ["cuda", "cpu"], "webgpu was not tried");
  assert.deepEqual(
    auto.fallbacks.map((f) => [f.provider, f.reason]),
    [
      ["cuda", "libcudart.so.12: cannot open shared object file"],
      ["webgpu", "only a software adapter (lavapipe) could run it"],
    ],
  );
  tried.length = 0;
  const forced = await selectProvider("webgpu", create, { skip });
  assert.equal(forced.provider, "webgpu");
  assert.deepEqual(tried, ["webgpu"]);
});

test("gpu devices - no GPU device node and a software Vulkan driver: WebGPU is a software adapter, and auto skips it", () => {
  const root = mkdtempSync(join(tmpdir(), "sg-gpu-"));
  try {
    const dev = join(root, "dev");
    const icd = join(root, "icd.d");
    mkdirSync(join(dev, "dri"), { recursive: true });
    mkdirSync(icd);
    writeFileSync(join(dev, "dri", "card0"), ""); // a display node, not a render node
    writeFileSync(
      join(icd, "lvp_icd.x86_64.json"),
      JSON.stringify({
        file_format_version: "1.0.1",
        ICD: { library_path: "/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so", api_version: "1.4.305" },
      }),
    );
    writeFileSync(
      join(icd, "radeon_icd.x86_64.json"),
      JSON.stringify({ ICD: { library_path: "/usr/lib/x86_64-linux-gnu/libvulkan_radeon.so" } }),
    );
    writeFileSync(join(icd, "broken.json"), "{not json");
    const soft = probeGpu({ env: {}, devDir: dev, icdDirs: [icd] });
    assert.deepEqual(soft.devices, []);
    assert.equal(soft.vulkanDrivers.length, 2, "the broken manifest is left out");
    assert.deepEqual(webgpuAdapterOf(soft), {
      kind: "software",
      name: "lavapipe (Mesa's Vulkan driver on the CPU, llvmpipe)",
    });
    assert.match(webgpuSkipReason(soft) ?? "", /^only a software adapter \(lavapipe/);
    assert.equal(
      formatAdapter(webgpuAdapterOf(soft)),
      "software: lavapipe (Mesa's Vulkan driver on the CPU, llvmpipe)",
    );

    // VK_ICD_FILENAMES names the drivers the loader uses: only those count.
    const named = probeGpu({
      env: { VK_ICD_FILENAMES: join(icd, "radeon_icd.x86_64.json") },
      devDir: dev,
      icdDirs: [icd],
    });
    assert.deepEqual(named.softwareDrivers, []);
    assert.equal(
      webgpuSkipReason(named),
      undefined,
      "no software driver either: WebGPU is tried and fails with Dawn's own reason",
    );

    // A render node (any DRM GPU) or an NVIDIA device: a hardware adapter may exist, WebGPU is tried.
    writeFileSync(join(dev, "dri", "renderD128"), "");
    writeFileSync(join(dev, "nvidia0"), "");
    writeFileSync(join(dev, "nvidiactl"), "");
    const hard = probeGpu({ env: {}, devDir: dev, icdDirs: [icd] });
    assert.deepEqual(hard.devices, [join(dev, "dri", "renderD128"), join(dev, "nvidia0")]);
    assert.equal(webgpuSkipReason(hard), undefined);
    assert.equal(webgpuAdapterOf(hard).kind, "hardware");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
