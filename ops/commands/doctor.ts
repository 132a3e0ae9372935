/**
 * servegraph doctor: which execution providers the infer node can use on this host, and why not, in plain words.
 *
 *   servegraph doctor [--json] [--no-probe] [--install-cuda]
 *
 * Two views: what the host's files say (provider libraries beside onnxruntime-node's binding, the libraries the CUDA
 * provider needs by its NEEDED entries and the onnxruntime version it was built for, the NVIDIA driver, GPU device
 * nodes, the Vulkan loader and drivers, and so the adapter WebGPU would get), and what really happens when a
 * session is created with each provider (infer's own provider probe, in a process of its own, on a tiny model).
 * What CUDA needs exactly is written in ../doctor/host.ts.
 * `--install-cuda` runs onnxruntime-node's own installer for the CUDA 12 provider libraries
 * (ONNXRUNTIME_NODE_INSTALL=cuda12); it needs the network to reach NuGet.
 * Exit codes: 0 report printed (whatever it says), 1 the install failed, 2 bad usage.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { z } from "zod";
import { diagnose, readHost, type ProviderVerdict } from "../doctor/host.ts";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const PROBE = join(REPO_ROOT, "services/infer/src/provider-probe.ts");

const ProbeResult = z.object({
  providers: z.array(
    z.object({
      provider: z.string(),
      loaded: z.boolean(),
      reason: z.string().optional(),
      adapter: z.string().optional(),
      ms: z.number().optional(),
    }),
  ),
});
type ProbeResult = z.infer<typeof ProbeResult>;

function probe(timeoutMs: number): ProbeResult | { error: string } {
  if (!existsSync(PROBE)) return { error: `the provider probe ${PROBE} is missing` };
  const r = spawnSync(
    process.execPath,
    ["--import", "tsx", PROBE, JSON.stringify({ providers: ["cuda", "webgpu", "cpu"] })],
    {
      cwd: REPO_ROOT,
      encoding: "utf8",
      timeout: timeoutMs,
      env: { ...process.env, SG_LOG_LEVEL: "error" },
    },
  );
  if (r.error) return { error: `the provider probe did not finish: ${r.error.message}` };
  const last = r.stdout.trim().split("\n").pop() ?? "";
  try {
    return ProbeResult.parse(JSON.parse(last));
  } catch {
    return {
      error: `the provider probe failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}`,
    };
  }
}

function installCuda(bindingDir: string | null): number {
  if (!bindingDir) {
    process.stderr.write("onnxruntime-node is not installed: run npm ci first\n");
    return 1;
  }
  const pkgDir = resolve(bindingDir, "../../../..");
  process.stderr.write(
    `running onnxruntime-node's installer for the CUDA 12 provider (${pkgDir}/script/install.js)...\n`,
  );
  const r = spawnSync(process.execPath, [join(pkgDir, "script/install.js")], {
    cwd: pkgDir,
    stdio: "inherit",
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: "cuda12" },
  });
  if (r.status !== 0) {
    process.stderr.write(
      "the installer failed (it downloads from NuGet: is the network reachable?). Nothing was changed.\n",
    );
    return 1;
  }
  process.stderr.write(
    "installed; the provider also needs CUDA 12 (runtime, cuBLAS/cuBLASLt, cuFFT, cuRAND) and cuDNN 9 on the loader's path.\n",
  );
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        json: { type: "boolean" },
        "no-probe": { type: "boolean" },
        "install-cuda": { type: "boolean" },
        graph: { type: "string" },
      },
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  const host = readHost(REPO_ROOT);
  if (values["install-cuda"]) {
    const code = installCuda(host.bindingDir);
    if (code !== 0) return code;
  }
  const verdicts = diagnose(values["install-cuda"] ? readHost(REPO_ROOT) : host);
  const probed = values["no-probe"] ? undefined : probe(120_000);
  const providers = verdicts.map((v) => {
    const p = probed && "providers" in probed ? probed.providers.find((x) => x.provider === v.provider) : undefined;
    return {
      ...v,
      ...(p
        ? { loads: p.loaded, ...(p.reason ? { reason: p.reason } : {}), ...(p.adapter ? { adapter: p.adapter } : {}) }
        : {}),
    };
  });
  // auto's order, passing over what it would not try (WebGPU with only a software adapter).
  const usable = providers.filter((p) => ("loads" in p ? p.loads : p.ready) && !p.autoSkips).map((p) => p.provider);
  const vulkanDrivers = host.gpu.vulkanDrivers.map((d) => d.manifest);
  const report = {
    host: {
      onnxruntime: host.ortVersion,
      onnxruntimeLibrary: host.ortLibraryVersion,
      binding: host.bindingDir,
      nvidiaDriver: host.nvidiaDriver,
      gpuDevices: host.gpu.devices,
      vulkanDrivers,
      cudaProvider: host.cudaProvider,
    },
    providers,
    ...(probed && "error" in probed ? { probeError: probed.error } : {}),
    auto: usable[0] ?? null,
  };
  if (values.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + "\n");
    return 0;
  }
  const out: string[] = [
    `onnxruntime-node ${host.ortVersion ?? "(not installed)"}${host.ortLibraryVersion && host.ortLibraryVersion !== host.ortVersion ? ` (its libonnxruntime.so: ${host.ortLibraryVersion})` : ""}; NVIDIA driver: ${host.nvidiaDriver ?? "none"}; GPU devices: ${host.gpu.devices.join(", ") || "none"}; Vulkan drivers: ${vulkanDrivers.join(", ") || "none"}`,
    "",
  ];
  for (const p of providers as (ProviderVerdict & { loads?: boolean; reason?: string })[]) {
    const works = p.loads ?? p.ready;
    out.push(
      `${p.provider}: ${works ? "available" : "not available"}${p.loads === undefined ? " (from the host's files; not probed)" : ""}`,
    );
    if (p.adapter) out.push(`  adapter: ${p.adapter}`);
    if (!works) {
      for (const m of p.missing) out.push(`  - ${m}`);
      if (p.reason) out.push(`  - creating a session says: ${p.reason}`);
      if (p.fix) out.push(`  fix: ${p.fix}`);
    }
    for (const n of p.notes ?? []) out.push(`  note: ${n}`);
    if (p.autoSkips) out.push(`  auto passes over it: ${p.autoSkips}`);
  }
  if (report.probeError) out.push("", `probe: ${report.probeError}`);
  out.push("", `EXECUTION_PROVIDER=auto would use: ${report.auto ?? "nothing (no provider loads)"}`);
  process.stdout.write(out.join("\n") + "\n");
  return 0;
}
