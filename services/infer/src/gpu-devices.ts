/**
 * What a WebGPU adapter would run on, read from the machine before any session is made.
 *
 * onnxruntime-node's WebGPU provider (Dawn, over Vulkan on Linux) takes whatever adapter Vulkan offers, and Mesa's
 * software Vulkan driver (lavapipe, "llvmpipe" as its device calls itself) or Google's SwiftShader is one: the model
 * then runs on the CPU through a GPU API, far slower than onnxruntime's CPU provider. ORT says nothing about the
 * adapter it got, so this module looks at what the adapter can be:
 *
 * - A hardware GPU reaches a Linux process as a device node: `/dev/nvidia<N>` (NVIDIA's driver) or
 *   `/dev/dri/renderD<N>` (every Mesa/DRM driver: AMD, Intel, virtio...). With none, no Vulkan driver can offer a
 *   hardware adapter, so a WebGPU adapter can only be a software one.
 * - The Vulkan drivers installed are listed by their ICD manifests (VK_DRIVER_FILES / VK_ICD_FILENAMES when set,
 *   else the loader's standard folders); a software one is named by its library (`libvulkan_lvp.so`: lavapipe,
 *   `libvk_swiftshader.so`: SwiftShader).
 *
 * So `auto` does not try WebGPU on a machine with no GPU device node (its reason names the software driver found),
 * a forced `webgpu` still runs there and is reported as on a software adapter, and `servegraph doctor` prints the
 * same reading.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const AdapterKind = { hardware: "hardware", software: "software" } as const;
export type AdapterKind = (typeof AdapterKind)[keyof typeof AdapterKind];

/** What a WebGPU (or CUDA) session runs on, as far as the machine tells. */
export interface AdapterInfo {
  kind: AdapterKind;
  /** e.g. "lavapipe (Mesa's Vulkan driver on the CPU, llvmpipe)", or the GPU device nodes found ("/dev/nvidia0"). */
  name: string;
}

export interface GpuProbe {
  /** GPU device nodes found (/dev/nvidia<N>, /dev/dri/renderD<N>). */
  devices: string[];
  /** Vulkan ICD manifests found, with the library each names. */
  vulkanDrivers: { manifest: string; library: string }[];
  /** The software Vulkan drivers among them, by name. */
  softwareDrivers: string[];
}

export interface ProbeOptions {
  env?: NodeJS.ProcessEnv;
  /** Where device nodes are looked for (tests point it elsewhere). */
  devDir?: string;
  /** The loader's manifest folders when VK_DRIVER_FILES / VK_ICD_FILENAMES are unset. */
  icdDirs?: readonly string[];
}

/** The Vulkan loader's standard ICD manifest folders on Linux. */
export const VULKAN_ICD_DIRS: readonly string[] = [
  "/etc/vulkan/icd.d",
  "/usr/local/share/vulkan/icd.d",
  "/usr/share/vulkan/icd.d",
];

const SOFTWARE_VULKAN: readonly { test: RegExp; name: string }[] = [
  { test: /lvp/, name: "lavapipe (Mesa's Vulkan driver on the CPU, llvmpipe)" },
  { test: /swiftshader/i, name: "SwiftShader (Vulkan on the CPU)" },
];

const list = (dir: string): string[] => {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
};

function manifests(env: NodeJS.ProcessEnv, icdDirs: readonly string[]): string[] {
  const named = env.VK_DRIVER_FILES || env.VK_ICD_FILENAMES;
  if (named) return named.split(":").filter((f) => f !== "");
  return icdDirs.flatMap((d) =>
    list(d)
      .filter((f) => f.endsWith(".json"))
      .sort()
      .map((f) => join(d, f)),
  );
}

function libraryOf(manifest: string): string | undefined {
  try {
    const m = JSON.parse(readFileSync(manifest, "utf8")) as { ICD?: { library_path?: unknown } };
    return typeof m.ICD?.library_path === "string" ? m.ICD.library_path : undefined;
  } catch {
    return undefined;
  }
}

export function probeGpu(opts: ProbeOptions = {}): GpuProbe {
  const env = opts.env ?? process.env;
  const dev = opts.devDir ?? "/dev";
  const devices = [
    ...list(dev)
      .filter((f) => /^nvidia[0-9]+$/.test(f))
      .map((f) => join(dev, f)),
    ...list(join(dev, "dri"))
      .filter((f) => /^renderD[0-9]+$/.test(f))
      .map((f) => join(dev, "dri", f)),
  ].sort();
  const vulkanDrivers = manifests(env, opts.icdDirs ?? VULKAN_ICD_DIRS).flatMap((manifest) => {
    const library = libraryOf(manifest);
    return library ? [{ manifest, library }] : [];
  });
  const softwareDrivers = [
    ...new Set(
      vulkanDrivers.flatMap(({ library }) => SOFTWARE_VULKAN.filter((s) => s.test.test(library)).map((s) => s.name)),
    ),
  ];
  return { devices, vulkanDrivers, softwareDrivers };
}

/** What a WebGPU adapter on this machine is: hardware when a GPU device node exists, else software. */
export function webgpuAdapterOf(p: GpuProbe): AdapterInfo {
  if (p.devices.length > 0) return { kind: AdapterKind.hardware, name: p.devices.join(", ") };
  return { kind: AdapterKind.software, name: p.softwareDrivers.join(", ") || "a CPU Vulkan driver" };
}

/**
 * Why `auto` does not try WebGPU here, or undefined when it may: a machine with no GPU device node but a software
 * Vulkan driver can only offer a software adapter.
 */
export function webgpuSkipReason(p: GpuProbe): string | undefined {
  // With no software driver either, WebGPU is tried and fails with Dawn's own reason (no Vulkan, no adapter).
  if (p.devices.length > 0 || p.softwareDrivers.length === 0) return undefined;
  const a = webgpuAdapterOf(p);
  return `only a software adapter (${a.name}) could run it: no GPU device (/dev/nvidia*, /dev/dri/renderD*) on this machine; the CPU provider is faster`;
}

/** One line: "software: lavapipe (...)" / "hardware: /dev/nvidia0". */
export function formatAdapter(a: AdapterInfo | undefined): string {
  return a ? `${a.kind}: ${a.name}` : "";
}
