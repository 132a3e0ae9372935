/**
 * What a host offers the infer node's execution providers, read from the machine without loading onnxruntime:
 * the provider libraries beside onnxruntime-node's binding (and, from their ELF files, the libraries they need and
 * the onnxruntime version they were built for), the shared libraries the dynamic loader can find (ldconfig's cache
 * plus LD_LIBRARY_PATH), the NVIDIA driver, GPU device nodes, and Vulkan's loader and drivers (ICDs).
 * `diagnose()` turns these facts into a verdict per provider in plain words; it is pure, so tests feed it hosts.
 *
 * What the CUDA provider needs, exactly (onnxruntime-node 1.30):
 * - its npm package ships no CUDA provider; the package's installer (`ONNXRUNTIME_NODE_INSTALL=cuda12`,
 *   `servegraph doctor --install-cuda`) fetches libonnxruntime_providers_cuda.so and libonnxruntime_providers_shared.so
 *   from NuGet (Microsoft.ML.OnnxRuntime.Gpu.Linux) at install time, beside the binding;
 * - the provider must be built from the same onnxruntime version as the binding's libonnxruntime.so: nothing checks
 *   this when it loads, and a mismatch loads and then misbehaves, so doctor refuses one whose version differs;
 * - it links against the CUDA runtime, cuBLAS/cuBLASLt, cuFFT, cuRAND and cuDNN 9 of the CUDA major it was built
 *   for (12): read from its NEEDED entries when the file is there, else the list below.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import {
  probeGpu,
  webgpuAdapterOf,
  webgpuSkipReason,
  formatAdapter,
  type GpuProbe,
} from "../../services/infer/src/gpu-devices.ts";
import { ortVersionOfDefs, readElfDynamic, versionStringsIn } from "./elf.ts";

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
  xdgRuntimeDir: string | null;
  /** onnxruntime's version as the binding's libonnxruntime.so defines it (its VERS_<version> symbols), or null. */
  ortLibraryVersion: string | null;
  /** The CUDA provider library beside the binding, as its ELF file describes it, or null when it is not there. */
  cudaProvider: ProviderLibrary | null;
  /** GPU device nodes and Vulkan drivers (infer's own reading: ../../services/infer/src/gpu-devices.ts). */
  gpu: GpuProbe;
}

export interface ProviderLibrary {
  path: string;
  /** Its DT_NEEDED entries. */
  needed: string[];
  /** The onnxruntime version it was built for, when the file says (a VERS_ symbol version or its version string). */
  ortVersion?: string;
  /** Why the file could not be read, if it could not. */
  unreadable?: string;
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
  /** What it would run on (GPU providers): "software: lavapipe (...)" / "hardware: /dev/nvidia0". */
  adapter?: string;
  /** Facts that do not stop it loading but matter (a software adapter that `auto` passes over, an unread version). */
  notes?: string[];
  /** `auto` does not try it here, and why. */
  autoSkips?: string;
}

/**
 * What the CUDA 12 build of onnxruntime's CUDA provider links against, for a host that does not have the provider
 * yet: the CUDA runtime, cuBLAS and cuBLASLt, cuRAND, cuFFT (CUDA 12's sonames) and cuDNN 9.
 */
export const CUDA12_LIBRARIES = [
  "libcudart.so.12",
  "libcublas.so.12",
  "libcublasLt.so.12",
  "libcurand.so.10",
  "libcufft.so.11",
  "libcudnn.so.9",
] as const;
const CUDA_PROVIDER = "libonnxruntime_providers_cuda.so";
const CUDA_PROVIDER_FILES = [CUDA_PROVIDER, "libonnxruntime_providers_shared.so"] as const;

/** A provider library's own facts from its ELF file (never throws: an unreadable file says why). */
export function readProviderLibrary(path: string, bindingVersion: string | null): ProviderLibrary {
  try {
    const elf = readElfDynamic(path);
    let ortVersion = ortVersionOfDefs(elf.versionDefs);
    if (!ortVersion) {
      // onnxruntime compiles its version into what it builds as a string; other libraries' versions may sit beside
      // it, so the binding's own version wins when it is there, and otherwise only an onnxruntime-like one counts.
      const strings = versionStringsIn(path);
      ortVersion =
        bindingVersion && strings.includes(bindingVersion)
          ? bindingVersion
          : strings.find((v) => /^1\.[1-9]\d\.\d+$/.test(v));
    }
    return { path, needed: elf.needed, ...(ortVersion ? { ortVersion } : {}) };
  } catch (err) {
    return { path, needed: [], unreadable: err instanceof Error ? err.message : String(err) };
  }
}

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

export function readHost(repoRoot: string, env: NodeJS.ProcessEnv = process.env): HostFacts {
  const ort = findOrtBinding(repoRoot);
  let bindingFiles: string[] = [];
  if (ort) {
    try {
      bindingFiles = readdirSync(ort.dir);
    } catch {
      bindingFiles = [];
    }
  }
  let nvidiaDriver: string | null = null;
  try {
    nvidiaDriver = readFileSync("/proc/driver/nvidia/version", "utf8").split("\n")[0]!.trim() || null;
  } catch {
    nvidiaDriver = null;
  }
  const gpu = probeGpu({ env });
  let ortLibraryVersion: string | null = null;
  const lib = ort && bindingFiles.find((f) => /^libonnxruntime\.so(\.\d+)*$/.test(f));
  if (ort && lib) {
    try {
      ortLibraryVersion = ortVersionOfDefs(readElfDynamic(join(ort.dir, lib)).versionDefs) ?? null;
    } catch {
      ortLibraryVersion = null;
    }
  }
  const bindingVersion = ortLibraryVersion ?? ort?.version ?? null;
  return {
    bindingDir: ort?.dir ?? null,
    ortVersion: ort?.version ?? null,
    bindingFiles,
    libraries: loaderLibraries(env),
    nvidiaDriver,
    xdgRuntimeDir: env.XDG_RUNTIME_DIR ?? null,
    ortLibraryVersion,
    gpu,
    cudaProvider:
      ort && bindingFiles.includes(CUDA_PROVIDER)
        ? readProviderLibrary(join(ort.dir, CUDA_PROVIDER), bindingVersion)
        : null,
  };
}

/** What each provider needs, checked against the host's files. */
export function diagnose(h: HostFacts): ProviderVerdict[] {
  const has = (lib: string) => lib in h.libraries || h.bindingFiles.includes(lib);
  const cuda: string[] = [];
  const cudaNotes: string[] = [];
  const binding = h.ortLibraryVersion ?? h.ortVersion;
  if (!h.bindingDir) cuda.push("onnxruntime-node is not installed (run npm ci)");
  else {
    const absent = CUDA_PROVIDER_FILES.filter((f) => !h.bindingFiles.includes(f));
    if (absent.length)
      cuda.push(
        `onnxruntime's CUDA provider libraries are not installed beside its binding (${absent.join(", ")} missing in ${h.bindingDir}): onnxruntime-node's npm package ships none`,
      );
  }
  if (!h.nvidiaDriver && !has("libcuda.so.1"))
    cuda.push("no NVIDIA driver (no /proc/driver/nvidia/version, no libcuda.so.1)");
  const p = h.cudaProvider;
  if (p?.unreadable) cuda.push(`the CUDA provider cannot be read: ${p.unreadable}`);
  if (p && !p.unreadable) {
    const missing = p.needed.filter((l) => !has(l));
    if (missing.length)
      cuda.push(`the CUDA provider needs libraries the loader cannot find (its NEEDED entries): ${missing.join(", ")}`);
    if (p.ortVersion && binding && p.ortVersion !== binding) {
      cuda.push(
        `the CUDA provider is built for onnxruntime ${p.ortVersion}, the binding is ${binding}: they must be the same version (nothing checks this at load; a mismatch loads and then misbehaves)`,
      );
    } else if (!p.ortVersion) {
      cudaNotes.push(
        `the CUDA provider's onnxruntime version cannot be read from ${p.path}: it must be ${binding ?? "the binding's"}`,
      );
    }
  } else if (!p) {
    const cudaLibs = CUDA12_LIBRARIES.filter((l) => !has(l));
    if (cudaLibs.length) {
      const other = Object.keys(h.libraries)
        .filter((l) => /^libcudart\.so\.\d+$/.test(l))
        .map((l) => l.replace("libcudart.so.", "CUDA "));
      cuda.push(
        `the CUDA 12 libraries its provider links against are not found by the loader: ${cudaLibs.join(", ")}${other.length ? ` (found ${other.join(", ")}, which this build does not use)` : ""}`,
      );
    }
  }
  const cudaFix =
    p && p.ortVersion && binding && p.ortVersion !== binding
      ? `reinstall the provider for ${binding}: \`servegraph doctor --install-cuda\` (fetches it from NuGet)`
      : "on a host with an NVIDIA driver, CUDA 12 (runtime, cuBLAS/cuBLASLt, cuFFT, cuRAND) and cuDNN 9 on the loader's path: `servegraph doctor --install-cuda` (fetches the provider from NuGet)";

  const webgpu: string[] = [];
  const webgpuNotes: string[] = [];
  if (!has("libvulkan.so.1")) webgpu.push("no Vulkan loader (libvulkan.so.1; Debian/Ubuntu package libvulkan1)");
  if (h.gpu.vulkanDrivers.length === 0)
    webgpu.push(
      "no Vulkan driver (ICD): the GPU driver's Vulkan part (e.g. NVIDIA's nvidia_icd.json) is not installed",
    );
  const adapter = h.gpu.vulkanDrivers.length ? webgpuAdapterOf(h.gpu) : undefined;
  const autoSkips = webgpuSkipReason(h.gpu);
  if (autoSkips)
    webgpuNotes.push(
      "a forced EXECUTION_PROVIDER=webgpu runs on this software adapter: the model computes on the CPU through Vulkan, so its speed says nothing of a GPU",
    );
  return [
    {
      provider: "cuda",
      ready: cuda.length === 0,
      missing: cuda,
      ...(cuda.length ? { fix: cudaFix } : {}),
      ...(cudaNotes.length ? { notes: cudaNotes } : {}),
    },
    {
      provider: "webgpu",
      ready: webgpu.length === 0,
      missing: webgpu,
      ...(webgpu.length
        ? { fix: "install libvulkan1 and the GPU driver's Vulkan ICD (NVIDIA: the driver package's Vulkan component)" }
        : {}),
      ...(adapter ? { adapter: formatAdapter(adapter) } : {}),
      ...(webgpuNotes.length ? { notes: webgpuNotes } : {}),
      ...(autoSkips ? { autoSkips } : {}),
    },
    {
      provider: "cpu",
      ready: h.bindingDir !== null,
      missing: h.bindingDir ? [] : ["onnxruntime-node is not installed (run npm ci)"],
    },
  ];
}
