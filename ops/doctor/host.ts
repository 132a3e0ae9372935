/**
 * What a host offers the infer node's execution providers, read from the machine without loading onnxruntime:
 * the provider libraries beside onnxruntime-node's binding, the shared libraries the dynamic loader can find
 * (ldconfig's cache plus LD_LIBRARY_PATH), the NVIDIA driver, and Vulkan's loader and drivers (ICDs).
 * `diagnose()` turns these facts into a verdict per provider in plain words; it is pure, so tests feed it hosts.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

export interface HostFacts {
  /** Folder of onnxruntime-node's native binding (where its provider .so files must be), or null if not installed. */
  bindingDir: string | null;
  ortVersion: string | null;
  /** Files in bindingDir. */
  bindingFiles: string[];
  /** Shared library sonames the loader can find (e.g. "libcudart.so.12"), with where. */
  libraries: Record<string, string>;
  /** /proc/driver/nvidia/version's first line, or null. */
  nvidiaDriver: string | null;
  /** Vulkan ICD manifests found (file names with their folder). */
  vulkanIcds: string[];
  xdgRuntimeDir: string | null;
}

export type ProviderName = "cuda" | "webgpu" | "cpu";

export interface ProviderVerdict {
  provider: ProviderName;
  /** What the host's files say: ready to try, or what is missing. */
  ready: boolean;
  /** Plain-words reasons it cannot load (empty when ready). */
  missing: string[];
  /** What to do about it. */
  fix?: string;
}

/** CUDA libraries the CUDA 12 build of onnxruntime's provider links against (plus cuDNN 9 at run time). */
export const CUDA12_LIBRARIES = ["libcudart.so.12", "libcublas.so.12", "libcublasLt.so.12", "libcurand.so.10", "libcufft.so.11", "libcudnn.so.9"] as const;
const CUDA_PROVIDER_FILES = ["libonnxruntime_providers_cuda.so", "libonnxruntime_providers_shared.so"] as const;

/** Where the infer workspace resolves onnxruntime-node from (the package lives in the infer node's closure). */
export function findOrtBinding(repoRoot: string): { dir: string; version: string } | null {
  try {
    const req = createRequire(join(repoRoot, "services/infer/package.json"));
    const pkgFile = req.resolve("onnxruntime-node/package.json");
    const version = (JSON.parse(readFileSync(pkgFile, "utf8")) as { version: string }).version;
    const arch = process.arch === "arm64" ? "arm64" : "x64";
    const dir = join(dirname(pkgFile), "bin", "napi-v6", process.platform, arch);
    return existsSync(dir) ? { dir, version } : null;
  } catch {
    return null;
  }
}

function loaderLibraries(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  const r = spawnSync("ldconfig", ["-p"], { encoding: "utf8" });
  if (r.status === 0) {
    for (const line of r.stdout.split("\n")) {
      const m = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)/.exec(line);
      if (m && m[2]!.includes(process.arch === "arm64" ? "AArch64" : "x86-64") && !(m[1]! in out)) out[m[1]!] = m[3]!;
    }
  }
  for (const d of (env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean)) {
    try {
      for (const f of readdirSync(d)) if (/\.so(\.\d+)*$/.test(f) && !(f in out)) out[f] = join(d, f);
    } catch {
      // a missing folder in LD_LIBRARY_PATH
    }
  }
  return out;
}

const ICD_DIRS = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"];

export function readHost(repoRoot: string, env: NodeJS.ProcessEnv = process.env): HostFacts {
  const ort = findOrtBinding(repoRoot);
  let bindingFiles: string[] = [];
  if (ort) {
    try { bindingFiles = readdirSync(ort.dir); } catch { bindingFiles = []; }
  }
  let nvidiaDriver: string | null = null;
  try { nvidiaDriver = readFileSync("/proc/driver/nvidia/version", "utf8").split("\n")[0]!.trim() || null; } catch { nvidiaDriver = null; }
  const vulkanIcds: string[] = [];
  for (const f of (env.VK_ICD_FILENAMES ?? env.VK_DRIVER_FILES ?? "").split(":").filter(Boolean)) if (existsSync(f)) vulkanIcds.push(f);
  for (const d of ICD_DIRS) {
    try { for (const f of readdirSync(d)) if (f.endsWith(".json")) vulkanIcds.push(join(d, f)); } catch { /* none there */ }
  }
  return {
    bindingDir: ort?.dir ?? null, ortVersion: ort?.version ?? null, bindingFiles, libraries: loaderLibraries(env),
    nvidiaDriver, vulkanIcds, xdgRuntimeDir: env.XDG_RUNTIME_DIR ?? null,
  };
}

/** What each provider needs, checked against the host's files. */
export function diagnose(h: HostFacts): ProviderVerdict[] {
  const has = (lib: string) => lib in h.libraries;
  const cuda: string[] = [];
  if (!h.bindingDir) cuda.push("onnxruntime-node is not installed (run npm ci)");
  else {
    const absent = CUDA_PROVIDER_FILES.filter((f) => !h.bindingFiles.includes(f));
    if (absent.length) cuda.push(`onnxruntime's CUDA provider libraries are not installed beside its binding (${absent.join(", ")} missing in ${h.bindingDir})`);
  }
  if (!h.nvidiaDriver && !has("libcuda.so.1")) cuda.push("no NVIDIA driver (no /proc/driver/nvidia/version, no libcuda.so.1)");
  const cudaLibs = CUDA12_LIBRARIES.filter((l) => !has(l));
  if (cudaLibs.length) {
    const other = Object.keys(h.libraries).filter((l) => /^libcudart\.so\.\d+$/.test(l)).map((l) => l.replace("libcudart.so.", "CUDA "));
    cuda.push(`the CUDA 12 runtime libraries it links against are not found by the loader: ${cudaLibs.join(", ")}${other.length ? ` (found ${other.join(", ")}, which this build does not use)` : ""}`);
  }
  const webgpu: string[] = [];
  if (!has("libvulkan.so.1")) webgpu.push("no Vulkan loader (libvulkan.so.1; Debian/Ubuntu package libvulkan1)");
  const gpuIcds = h.vulkanIcds.filter((f) => !/lvp_icd|swiftshader/i.test(f));
  if (gpuIcds.length === 0) {
    webgpu.push(h.vulkanIcds.length
      ? `only software Vulkan drivers are installed (${h.vulkanIcds.map((f) => f.split("/").pop()).join(", ")}), and Dawn refuses them`
      : "no Vulkan driver (ICD) for a GPU: the GPU driver's Vulkan part (e.g. NVIDIA's nvidia_icd.json) is not installed");
  }
  return [
    { provider: "cuda", ready: cuda.length === 0, missing: cuda, ...(cuda.length ? { fix: "on a host with an NVIDIA driver and CUDA 12 + cuDNN 9: `servegraph doctor --install-cuda` (needs network access to NuGet)" } : {}) },
    { provider: "webgpu", ready: webgpu.length === 0, missing: webgpu, ...(webgpu.length ? { fix: "install libvulkan1 and the GPU driver's Vulkan ICD (NVIDIA: the driver package's Vulkan component)" } : {}) },
    { provider: "cpu", ready: h.bindingDir !== null, missing: h.bindingDir ? [] : ["onnxruntime-node is not installed (run npm ci)"] },
  ];
}
