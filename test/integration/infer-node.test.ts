/**
 * The infer node as a process on a real nats-server, with the generated trivial model (same shapes as ResNet18,
 * almost no compute) and real onnxruntime: on this machine CUDA's provider library is missing and WebGPU finds no
 * adapter (no Vulkan driver: NO_VULKAN below), so `auto` runs on the CPU and reports both reasons everywhere an operator looks; a forced provider that
 * cannot start stops the replica with the reason as the supervisor's "cannot start" line. uint8 pixels and float32
 * values travel on the same subject, and give the same logits for the same image.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import path from "node:path";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { createClient } from "../../runtime/index.ts";
import {
  Headers,
  IMAGE_TENSOR_SHAPE,
  InferInfoEndpoint,
  InferRun,
  elementCount,
  normalizeChw,
  toFloat32,
} from "../../subjects/index.ts";
import { REPO_ROOT, startGraph } from "../helpers/graph.ts";

const GRAPH_FILE = path.resolve(REPO_ROOT, "test/fixtures/infer-graph.config.ts");
const ortBinDir = path.join(
  path.dirname(createRequire(import.meta.url).resolve("onnxruntime-node")),
  "..",
  "bin/napi-v6/linux/x64",
);
const noGpu = existsSync(path.join(ortBinDir, "libonnxruntime_providers_cuda.so"))
  ? "a CUDA provider library is installed"
  : false;
const ROW = elementCount(IMAGE_TENSOR_SHAPE);
/**
 * A machine with no Vulkan driver, made explicit: CI installs lavapipe (for test/integration/webgpu.test.ts), and with
 * a driver named by VK_ICD_FILENAMES that does not exist the Vulkan loader finds none, as on a machine without one.
 */
const NO_VULKAN = { VK_ICD_FILENAMES: "/nonexistent/no-vulkan-driver.json" };

function pixelsOf(seed: number): Uint8Array {
  return Uint8Array.from({ length: ROW }, (_, i) => (Math.imul(i + seed, 2654435761) >>> 24) & 255);
}

test(
  "infer node - auto reports cpu and why cuda and webgpu did not start: $SRV.INFO, $SRV.STATS, info, /metrics",
  { skip: noGpu, timeout: 120_000 },
  async () => {
    await using g = await startGraph({
      graphs: ["infer"],
      graphFile: GRAPH_FILE,
      nodeEnv: { infer: { MODEL: "trivial", EXECUTION_PROVIDER: "auto", ...NO_VULKAN } },
    });
    const fallbacks =
      /^cuda: OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library; webgpu: Failed to get a WebGPU adapter: No supported adapters$/;

    const info = (await g.nc.request("$SRV.INFO.infer", new Uint8Array(0), { timeout: 5000 })).json() as {
      metadata: Record<string, string>;
      endpoints: { name: string; metadata: Record<string, string> }[];
    };
    assert.equal(info.metadata.execution_provider, "cpu");
    assert.match(info.metadata.provider_fallbacks!, fallbacks);
    assert.equal(info.endpoints.find((e) => e.name === "run")?.metadata.request, "tensor float32|uint8 1,3,224,224");

    const stats = (await g.nc.request("$SRV.STATS.infer", new Uint8Array(0), { timeout: 5000 })).json() as {
      endpoints: { data: Record<string, unknown> }[];
    };
    const data = stats.endpoints[0]!.data;
    assert.equal(data.execution_provider, "cpu");
    assert.deepEqual(
      (data.provider_fallbacks as { provider: string }[]).map((f) => f.provider),
      ["cuda", "webgpu"],
    );
    // graph.config.ts declares only maxQueueSize: the rest are the CPU defaults infer chose.
    assert.deepEqual(
      [data.max_batch_size, data.max_queue_delay_ms, data.max_concurrent_batches, data.batch_slots],
      [32, 0, 1, 1],
    );

    const client = createClient(g.nc, { caller: "test", defaultTimeoutMs: 5000 });
    const reply = await client.call(InferInfoEndpoint, "sg.v1.infer.info", {});
    assert.equal(reply.execution_provider, "cpu");
    assert.deepEqual(
      reply.provider_fallbacks.map((f) => f.provider),
      ["cuda", "webgpu"],
    );
    assert.match(reply.provider_fallbacks[1]!.reason, /^Failed to get a WebGPU adapter/);
    assert.equal(reply.max_batch_size, 32);

    const metrics = await (await fetch(info.metadata.metrics_url!)).text();
    const line = metrics.split("\n").find((l) => l.startsWith("sg_model_info{"));
    assert.ok(line, "sg_model_info is exported");
    assert.match(line, /node="infer"/);
    assert.match(line, /provider="cpu"/);
    assert.match(line, /model="trivial"/);
    assert.match(line, /fallbacks="cuda,webgpu"/);
    assert.match(
      line,
      /fallback_reasons="cuda: OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library; webgpu: Failed to get a WebGPU adapter/,
    );
    assert.match(line, /\} 1$/);
    assert.equal(metrics.split("\n").filter((l) => l.startsWith("sg_model_info{")).length, 1, "one series per replica");
  },
);

test(
  "infer node - uint8 pixels and their float32 normalisation give the same logits, alone or mixed in one batch",
  { timeout: 120_000 },
  async () => {
    await using g = await startGraph({
      graphs: ["infer"],
      graphFile: GRAPH_FILE,
      nodeEnv: { infer: { MODEL: "trivial", EXECUTION_PROVIDER: "cpu" } },
    });
    const client = createClient(g.nc, { caller: "test", defaultTimeoutMs: 10_000 });
    const images = [1, 2, 3, 4].map(pixelsOf);
    const floats = images.map((p) => new Uint8Array(normalizeChw(p, new Float32Array(ROW)).buffer));
    const call = (data: Uint8Array, dtype: "uint8" | "float32") =>
      client.call(InferRun, "sg.v1.infer.run", { data, shape: IMAGE_TENSOR_SHAPE, dtype });

    const alone = [];
    for (const [i, p] of images.entries()) {
      const a = await call(p, "uint8");
      const b = await call(floats[i]!, "float32");
      assert.equal(a.shape[0], 1000);
      assert.deepEqual(Buffer.from(a.data), Buffer.from(b.data), `image ${i}: same bytes either way`);
      alone.push(toFloat32(a.data));
    }
    assert.notDeepEqual(alone[0], alone[1], "different images, different logits");

    // 16 requests at once, alternating dtypes: they share batches, and each caller gets its own row.
    const mixed = await Promise.all(
      Array.from({ length: 16 }, (_, k) => call(k % 2 ? floats[k % 4]! : images[k % 4]!, k % 2 ? "float32" : "uint8")),
    );
    for (const [k, r] of mixed.entries()) assert.deepEqual(toFloat32(r.data), alone[k % 4], `request ${k}`);

    // A foreign client's uint8 tensor with float32 bytes is refused with error headers.
    const h = natsHeaders();
    h.set(Headers.Dtype, "uint8");
    h.set(Headers.Shape, "1,3,224,224");
    const msg = await g.nc.request("sg.v1.infer.run", floats[0]!, { timeout: 5000, headers: h });
    assert.equal(msg.headers?.get(Headers.GraphError), "BAD_REQUEST");
  },
);

for (const ep of ["webgpu", "cuda"] as const) {
  test(
    `infer node - a forced ${ep} that cannot start stops the replica; the reason is its last stderr line`,
    { skip: noGpu, timeout: 120_000 },
    async () => {
      await assert.rejects(
        startGraph({
          graphs: ["infer"],
          graphFile: GRAPH_FILE,
          nodeEnv: { infer: { MODEL: "trivial", EXECUTION_PROVIDER: ep, ...NO_VULKAN } },
        }),
        (err: unknown) => {
          assert.ok(err instanceof Error);
          const reason =
            ep === "webgpu"
              ? /Failed to get a WebGPU adapter: No supported adapters$/
              : /OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library$/;
          assert.match(err.message, new RegExp(`^node infer cannot start: .*execution provider ${ep} did not start: `));
          assert.match(err.message, reason);
          return true;
        },
      );
    },
  );
}

test(
  "infer provider probe - tries each provider on its own and says which loads and why not, as one JSON line",
  { skip: noGpu, timeout: 120_000 },
  () => {
    const probe = path.resolve(REPO_ROOT, "services/infer/src/provider-probe.ts");
    const r = spawnSync(
      process.execPath,
      ["--import", "tsx", probe, JSON.stringify({ providers: ["webgpu", "cuda", "cpu"] })],
      { cwd: REPO_ROOT, encoding: "utf8", timeout: 90_000, env: { ...process.env, ...NO_VULKAN } },
    );
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as {
      providers: { provider: string; loaded: boolean; reason?: string; ms: number }[];
    };
    assert.deepEqual(
      out.providers.map((p) => [p.provider, p.loaded]),
      [
        ["webgpu", false],
        ["cuda", false],
        ["cpu", true],
      ],
    );
    assert.match(out.providers[0]!.reason!, /^Failed to get a WebGPU adapter/);
    assert.match(
      out.providers[1]!.reason!,
      /^OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library/,
    );
    assert.equal(out.providers[2]!.reason, undefined);
    const bad = spawnSync(process.execPath, ["--import", "tsx", probe, JSON.stringify({ providers: ["tpu"] })], {
      cwd: REPO_ROOT,
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(bad.status, 2);
  },
);
