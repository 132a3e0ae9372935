/**
 * infer's GPU code path for real, on a software Vulkan driver: onnxruntime-node's WebGPU provider (Dawn over
 * Vulkan) on Mesa's lavapipe, which .ci/run installs (mesa-vulkan-drivers from Debian's bookworm-backports: the
 * bookworm build is too old for Dawn). The classify graph runs with infer forced to `webgpu` and the reference
 * model; every image of data/images gets the reference pipeline's top-5 (test/fixtures/golden, same classes in the
 * same order, scores within fast mode's 0.01); the GPU batching defaults apply (batches of more than one form under
 * concurrent load, two in flight: batch n+1 is filled while n computes on the real provider); `status` and the
 * info endpoint say the adapter is software. Then `auto` on the same machine runs on the CPU and gives the software
 * adapter as WebGPU's reason. lavapipe is slow (about a second per image on two cores), so a few concurrent
 * requests per image set, each with a generous timeout.
 *
 * Skipped where the machine has no Vulkan loader and software driver, or no reference model, saying which.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { collectStatus } from "../../runtime/index.ts";
import { Predictions, type InferInfo } from "../../subjects/schemas.ts";
import { probeGpu } from "../../services/infer/src/gpu-devices.ts";
import {
  HAVE_REFERENCE_MODEL,
  NO_REFERENCE_MODEL_REASON,
  REFERENCE_MODEL,
  REPO_ROOT,
  startGraph,
  type RunningGraph,
} from "../helpers/graph.ts";

const gpu = probeGpu();
const VULKAN_LOADER = [
  "/usr/lib/x86_64-linux-gnu/libvulkan.so.1",
  "/usr/lib/aarch64-linux-gnu/libvulkan.so.1",
  "/usr/lib64/libvulkan.so.1",
].find((f) => existsSync(f));
const skip = !HAVE_REFERENCE_MODEL
  ? NO_REFERENCE_MODEL_REASON
  : !VULKAN_LOADER
    ? "no Vulkan loader (libvulkan1): .ci/run installs it with lavapipe"
    : gpu.softwareDrivers.length === 0
      ? "no software Vulkan driver (lavapipe): .ci/run installs mesa-vulkan-drivers from bookworm-backports"
      : gpu.devices.length > 0
        ? `this machine has a GPU (${gpu.devices.join(", ")}): Dawn would pick it, not the software adapter this test is about`
        : false;

const REQUEST_TIMEOUT_MS = 180_000;
const CONCURRENCY = 4;
const SCORE_TOLERANCE = 0.01;
interface GoldenClass {
  index: number;
  label: string;
  score: number;
}
const golden = JSON.parse(readFileSync(`${REPO_ROOT}/test/fixtures/golden/top5.json`, "utf8")) as Record<
  string,
  GoldenClass[]
>;

async function inferInfo(g: RunningGraph): Promise<InferInfo> {
  const m = await g.nc.request("sg.v1.infer.info", new TextEncoder().encode("{}"), { timeout: 5000 });
  return m.json() as InferInfo;
}

/** The classify graph with the reference model and infer on `provider`, started before the suite's tests. */
function classifyOn(provider: "webgpu" | "auto"): () => RunningGraph {
  let g: RunningGraph | undefined;
  before(async () => {
    g = await startGraph({
      graphs: ["classify"],
      nodeEnv: { infer: { EXECUTION_PROVIDER: provider, MODEL: REFERENCE_MODEL } },
    });
  });
  after(async () => g?.stop());
  return () => g!;
}

describe("webgpu on a software adapter", { skip, timeout: 600_000 }, () => {
  const graph = classifyOn("webgpu");

  test("webgpu - every image gets the reference top-5 from the forced WebGPU provider, batched, on the software adapter", async () => {
    const g = graph();
    const info = await inferInfo(g);
    assert.equal(info.execution_provider, "webgpu");
    assert.equal(info.adapter?.kind, "software", `adapter ${JSON.stringify(info.adapter)}`);
    assert.match(info.adapter!.name, /lavapipe|SwiftShader/);
    // The GPU batching defaults (services/infer/src/batching.ts GPU_BATCHING), not the CPU's.
    assert.deepEqual([info.max_batch_size, info.max_queue_delay_ms, info.max_concurrent_batches], [64, 2, 2]);

    const names = Object.keys(golden).sort();
    const wrong: string[] = [];
    const queue = [...names];
    const worker = async (): Promise<void> => {
      for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
        const res = await fetch(`${g.ingressUrl}/classify`, {
          method: "POST",
          body: readFileSync(`${REPO_ROOT}/data/images/${name}`),
          headers: { "content-type": "application/octet-stream" },
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        assert.equal(res.status, 200, `${name}: ${res.status} ${await res.clone().text()}`);
        const got = Predictions.parse(await res.json());
        const want = golden[name]!;
        const sameOrder = got.map((p) => p.label).join("|") === want.map((p) => p.label).join("|");
        const close = got.every((p, i) => Math.abs(p.score - want[i]!.score) <= SCORE_TOLERANCE);
        if (!sameOrder || !close)
          wrong.push(
            `${name}: got ${got.map((p) => `${p.label} ${p.score.toFixed(4)}`).join(", ")}; reference ${want.map((p) => `${p.label} ${p.score.toFixed(4)}`).join(", ")}`,
          );
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    assert.deepEqual(wrong, [], "top-5 differs from the reference");

    const status = await collectStatus(g.nc, g.nats.url, ["infer"]);
    const infer = status.nodes.find((n) => n.node === "infer")!;
    assert.equal(infer.batch?.execution_provider, "webgpu");
    assert.match(infer.batch?.adapter ?? "", /^software: (lavapipe|SwiftShader)/);
    // Concurrent requests arriving while a batch computes form the next batch: more than one image per forward pass.
    assert.ok(
      (infer.batch?.avg_batch_size ?? 0) > 1,
      `mean batch ${infer.batch?.avg_batch_size} over ${infer.batch?.batches} batches`,
    );
  });
});

describe("auto where the only WebGPU adapter is software", { skip, timeout: 300_000 }, () => {
  const graph = classifyOn("auto");

  test("webgpu - auto runs on the CPU and gives the software adapter as WebGPU's reason", async () => {
    const info = await inferInfo(graph());
    assert.equal(info.execution_provider, "cpu");
    assert.equal(info.adapter, undefined);
    const webgpu = info.provider_fallbacks.find((f) => f.provider === "webgpu");
    assert.match(
      webgpu?.reason ?? "",
      /^only a software adapter \((lavapipe|SwiftShader)/,
      JSON.stringify(info.provider_fallbacks),
    );
  });
});

test(
  "webgpu - servegraph doctor names the software adapter, a session really loads on it, and auto would use cpu",
  { skip, timeout: 180_000 },
  () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "ops/cli.ts", "doctor", "--json"], {
      cwd: REPO_ROOT,
      encoding: "utf8",
      timeout: 150_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as {
      providers: { provider: string; loads?: boolean; adapter?: string; autoSkips?: string }[];
      auto: string | null;
    };
    const webgpu = report.providers.find((p) => p.provider === "webgpu");
    assert.equal(webgpu?.loads, true, JSON.stringify(webgpu));
    assert.match(webgpu?.adapter ?? "", /^software: (lavapipe|SwiftShader)/);
    assert.match(webgpu?.autoSkips ?? "", /^only a software adapter/);
    assert.equal(report.auto, "cpu");
  },
);
