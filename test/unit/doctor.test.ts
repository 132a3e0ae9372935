/** servegraph doctor's verdicts from a host's facts: what each provider lacks, in plain words. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { CUDA12_LIBRARIES, diagnose, type HostFacts } from "../../ops/doctor/host.ts";

const bare: HostFacts = {
  bindingDir: "/x/onnxruntime-node/bin/napi-v6/linux/x64", ortVersion: "1.30.0",
  bindingFiles: ["libonnxruntime.so.1", "onnxruntime_binding.node"], libraries: {}, nvidiaDriver: null, vulkanIcds: [], xdgRuntimeDir: null,
};
const byName = (h: HostFacts) => Object.fromEntries(diagnose(h).map((v) => [v.provider, v]));

test("doctor - a CPU-only host: cuda and webgpu say what is missing, cpu is ready", () => {
  const v = byName({ ...bare, libraries: { "libcudart.so.13": "/usr/local/cuda-13.0/lib/libcudart.so.13" } });
  assert.equal(v.cpu!.ready, true);
  assert.equal(v.cuda!.ready, false);
  assert.match(v.cuda!.missing.join("\n"), /libonnxruntime_providers_cuda\.so/);
  assert.match(v.cuda!.missing.join("\n"), /no NVIDIA driver/);
  assert.match(v.cuda!.missing.join("\n"), /found CUDA 13, which this build does not use/);
  assert.match(v.cuda!.fix!, /--install-cuda/);
  assert.equal(v.webgpu!.ready, false);
  assert.match(v.webgpu!.missing.join("\n"), /no Vulkan loader/);
});

test("doctor - software Vulkan is named as the reason WebGPU cannot run", () => {
  const v = byName({ ...bare, libraries: { "libvulkan.so.1": "/lib/libvulkan.so.1" }, vulkanIcds: ["/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"] });
  assert.deepEqual(v.webgpu!.missing, ["only software Vulkan drivers are installed (lvp_icd.x86_64.json), and Dawn refuses them"]);
});

test("doctor - a GPU host with everything installed is ready for cuda and webgpu", () => {
  const libraries: Record<string, string> = { "libvulkan.so.1": "/lib/libvulkan.so.1", "libcuda.so.1": "/lib/libcuda.so.1" };
  for (const l of CUDA12_LIBRARIES) libraries[l] = `/opt/cuda/${l}`;
  const v = byName({
    ...bare, libraries, nvidiaDriver: "NVRM version: NVIDIA UNIX x86_64 Kernel Module 580.0",
    bindingFiles: [...bare.bindingFiles, "libonnxruntime_providers_cuda.so", "libonnxruntime_providers_shared.so"],
    vulkanIcds: ["/usr/share/vulkan/icd.d/nvidia_icd.json"],
  });
  assert.deepEqual([v.cuda!.ready, v.webgpu!.ready, v.cpu!.ready], [true, true, true]);
  assert.deepEqual(v.cuda!.missing, []);
});

test("doctor - without onnxruntime-node nothing is ready", () => {
  const v = byName({ ...bare, bindingDir: null, ortVersion: null, bindingFiles: [] });
  assert.equal(v.cpu!.ready, false);
  assert.match(v.cpu!.missing[0]!, /npm ci/);
});
