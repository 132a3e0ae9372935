/** servegraph doctor's verdicts from a host's facts: what each provider lacks, in plain words. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CUDA12_LIBRARIES,
  diagnose,
  findOrtBinding,
  readHost,
  readProviderLibrary,
  type HostFacts,
} from "../../ops/doctor/host.ts";
import { readElfDynamic, versionStringsIn } from "../../ops/doctor/elf.ts";

const noGpu = { devices: [], vulkanDrivers: [], softwareDrivers: [] };
const lavapipe = {
  devices: [],
  vulkanDrivers: [{ manifest: "/usr/share/vulkan/icd.d/lvp_icd.json", library: "libvulkan_lvp.so" }],
  softwareDrivers: ["lavapipe (Mesa's Vulkan driver on the CPU, llvmpipe)"],
};
const bare: HostFacts = {
  bindingDir: "/x/onnxruntime-node/bin/napi-v6/linux/x64",
  ortVersion: "1.30.0",
  ortLibraryVersion: "1.30.0",
  bindingFiles: ["libonnxruntime.so.1", "onnxruntime_binding.node"],
  libraries: {},
  nvidiaDriver: null,
  xdgRuntimeDir: null,
  cudaProvider: null,
  gpu: noGpu,
};
const withProvider = (needed: string[], ortVersion?: string): Partial<HostFacts> => ({
  nvidiaDriver: "NVRM version: NVIDIA UNIX x86_64 Kernel Module 580.0",
  bindingFiles: [...bare.bindingFiles, "libonnxruntime_providers_cuda.so", "libonnxruntime_providers_shared.so"],
  cudaProvider: { path: "/x/libonnxruntime_providers_cuda.so", needed, ...(ortVersion ? { ortVersion } : {}) },
});
const ORT = findOrtBinding(join(import.meta.dirname, "../.."));
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

test("doctor - a software Vulkan driver: webgpu can run and names its software adapter, and auto passes over it", () => {
  const v = byName({
    ...bare,
    libraries: { "libvulkan.so.1": "/lib/libvulkan.so.1" },
    gpu: lavapipe,
  });
  assert.equal(v.webgpu!.ready, true);
  assert.equal(v.webgpu!.adapter, "software: lavapipe (Mesa's Vulkan driver on the CPU, llvmpipe)");
  assert.match(v.webgpu!.autoSkips!, /^only a software adapter \(lavapipe .*the CPU provider is faster$/);
  assert.match(v.webgpu!.notes!.join("\n"), /speed says nothing of a GPU/);
  // With a GPU device node the same driver list is a hardware adapter that auto tries.
  const hw = byName({
    ...bare,
    libraries: { "libvulkan.so.1": "/lib/libvulkan.so.1" },
    gpu: { ...lavapipe, devices: ["/dev/dri/renderD128"] },
  });
  assert.equal(hw.webgpu!.adapter, "hardware: /dev/dri/renderD128");
  assert.equal(hw.webgpu!.autoSkips, undefined);
});

test("doctor - the CUDA provider's own NEEDED entries say which libraries are missing, by name", () => {
  const v = byName({
    ...bare,
    ...withProvider(
      ["libonnxruntime_providers_shared.so", "libcublasLt.so.12", "libcudnn.so.9", "libcudart.so.12", "libc.so.6"],
      "1.30.0",
    ),
    libraries: { "libcudart.so.12": "/usr/local/cuda/lib64/libcudart.so.12", "libc.so.6": "/lib/libc.so.6" },
  });
  assert.equal(v.cuda!.ready, false);
  // libonnxruntime_providers_shared.so sits beside the binding: found there, not reported.
  assert.deepEqual(v.cuda!.missing, [
    "the CUDA provider needs libraries the loader cannot find (its NEEDED entries): libcublasLt.so.12, libcudnn.so.9",
  ]);
});

test("doctor - a CUDA provider of another onnxruntime version is refused; an unreadable version is a note", () => {
  const libraries: Record<string, string> = { "libcudart.so.12": "/c/libcudart.so.12" };
  const v = byName({ ...bare, ...withProvider(["libcudart.so.12"], "1.22.0"), libraries });
  assert.equal(v.cuda!.ready, false);
  assert.match(
    v.cuda!.missing.join("\n"),
    /built for onnxruntime 1\.22\.0, the binding is 1\.30\.0: they must be the same version/,
  );
  assert.match(v.cuda!.fix!, /reinstall the provider for 1\.30\.0/);
  const same = byName({ ...bare, ...withProvider(["libcudart.so.12"], "1.30.0"), libraries });
  assert.deepEqual([same.cuda!.ready, same.cuda!.notes], [true, undefined]);
  const unknown = byName({ ...bare, ...withProvider(["libcudart.so.12"]), libraries });
  assert.equal(unknown.cuda!.ready, true);
  assert.match(unknown.cuda!.notes![0]!, /version cannot be read .*it must be 1\.30\.0/);
});

test(
  "doctor - ELF: the binding's libonnxruntime.so names its NEEDED libraries and its version; a non-ELF file says so",
  { skip: ORT ? false : "onnxruntime-node is not installed (npm ci)" },
  () => {
    const elf = readElfDynamic(join(ORT!.dir, "libonnxruntime.so.1"));
    assert.equal(elf.soname, "libonnxruntime.so.1");
    assert.ok(elf.needed.includes("libc.so.6") && elf.needed.includes("libstdc++.so.6"), elf.needed.join(", "));
    assert.deepEqual(elf.versionDefs, [`VERS_${ORT!.version}`]);
    assert.ok(versionStringsIn(join(ORT!.dir, "libonnxruntime.so.1")).includes(ORT!.version));
    assert.equal(readElfDynamic(join(ORT!.dir, "onnxruntime_binding.node")).needed[0], "libonnxruntime.so.1");
    assert.equal(readHost(join(import.meta.dirname, "../..")).ortLibraryVersion, ORT!.version);
    // A provider file whose only version string is another onnxruntime's: that version, not the binding's.
    const dir = mkdtempSync(join(tmpdir(), "sg-doctor-"));
    try {
      const notElf = join(dir, "libonnxruntime_providers_cuda.so");
      writeFileSync(notElf, "not an elf");
      assert.match(readProviderLibrary(notElf, "1.30.0").unreadable!, /not an ELF file/);
      const fake = join(dir, "fake.so");
      writeFileSync(fake, Buffer.concat([Buffer.from("x\u00001.3.2\u00001.22.0\u0000y")]));
      assert.deepEqual(versionStringsIn(fake), ["1.22.0", "1.3.2"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test("doctor - a GPU host with everything installed is ready for cuda and webgpu", () => {
  const libraries: Record<string, string> = {
    "libvulkan.so.1": "/lib/libvulkan.so.1",
    "libcuda.so.1": "/lib/libcuda.so.1",
  };
  for (const l of CUDA12_LIBRARIES) libraries[l] = `/opt/cuda/${l}`;
  const v = byName({
    ...bare,
    libraries,
    nvidiaDriver: "NVRM version: NVIDIA UNIX x86_64 Kernel Module 580.0",
    bindingFiles: [...bare.bindingFiles, "libonnxruntime_providers_cuda.so", "libonnxruntime_providers_shared.so"],
    gpu: {
      devices: ["/dev/nvidia0"],
      vulkanDrivers: [{ manifest: "/usr/share/vulkan/icd.d/nvidia_icd.json", library: "libGLX_nvidia.so.0" }],
      softwareDrivers: [],
    },
  });
  assert.deepEqual([v.cuda!.ready, v.webgpu!.ready, v.cpu!.ready], [true, true, true]);
  assert.deepEqual(v.cuda!.missing, []);
});

test("doctor - without onnxruntime-node nothing is ready", () => {
  const v = byName({ ...bare, bindingDir: null, ortVersion: null, bindingFiles: [] });
  assert.equal(v.cpu!.ready, false);
  assert.match(v.cpu!.missing[0]!, /npm ci/);
});
