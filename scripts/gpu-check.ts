/**
 * npm run gpu-check: the classify graph on this host's GPU, in one bounded command (a few minutes on a 16-core GPU
 * host; what ../shared/gpu-check's device-run.sh runs on a lent GPU machine).
 *
 *  1. Which GPU provider loads here (infer's provider probe: cuda, then webgpu). None: print the reasons, exit 0.
 *  2. The graph with infer forced to CPU classifies the test images (data/images); then with infer forced to the GPU
 *     provider: the top-5 labels must be identical for every image (SG_REFERENCE_MODEL, when set, is the model both
 *     use, e.g. a torch-exported ResNet18; else graph.config.ts's model).
 *  3. `npm run bench -- --target classify` on the GPU graph at concurrencies up to 128, preprocess scaled to the
 *     host's cores, and infer's own CPU per image from /proc.
 *  4. A short table: provider, the model alone per batch size, end-to-end images/s, infer CPU ms/image, and which
 *     stage limits.
 *
 * `--provider cpu` (or any provider) skips the probe and runs the whole check with that provider: a dry run of the
 * check itself on a host without a GPU. `--provider webgpu` on a host with only a software Vulkan driver (lavapipe)
 * runs the GPU code path for real on that adapter, says the adapter is software (so its speed figures mean nothing),
 * and keeps the bench short (C=1 and 4, no stage benches: lavapipe takes about a second per image).
 *
 * Exit codes: 0 done (or no GPU provider), 1 the GPU graph disagreed with CPU or failed.
 */
import { spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { extname, join, resolve } from "node:path";
import { spawnUp } from "../tools/harness/spawn-up.ts";

const ROOT = resolve(import.meta.dirname, "..");
const CLI = join(ROOT, "ops/cli.ts");
/** The benchmarks are not part of the product CLI. */
const PERF_CLI = join(ROOT, "tools/perf/cli.ts");
const PROBE = join(ROOT, "services/infer/src/provider-probe.ts");
const IMAGES = join(ROOT, "data/images");
const TYPES: Record<string, string> = { ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png" };
const say = (s: string) => process.stdout.write(s + "\n");
const work = mkdtempSync(join(tmpdir(), "sg-gpu-check-"));
const env = { ...process.env, SG_STATE_FILE: join(work, "state.json"), SG_LOG_LEVEL: "warn", NATS_URL: "" };

interface Probe {
  provider: string;
  loaded: boolean;
  reason?: string;
  ms?: number;
}

function probe(): Probe[] {
  const r = spawnSync(process.execPath, ["--import", "tsx", PROBE, JSON.stringify({ providers: ["cuda", "webgpu"] })], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 180_000,
    env,
  });
  try {
    return (JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as { providers: Probe[] }).providers;
  } catch {
    throw new Error(
      `the provider probe failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ")}`,
    );
  }
}

interface Up {
  child: ChildProcess;
  ingress: string;
  stop(): Promise<void>;
}

/** `servegraph up classify` with parameter overrides; resolves once it printed its summary. */
async function up(params: string[], replicas: string[]): Promise<Up> {
  const u = await spawnUp({
    args: [
      "classify",
      "--port",
      "0",
      ...params.flatMap((p) => ["--param", p]),
      ...replicas.flatMap((r) => ["--replicas", r]),
    ],
    cwd: ROOT,
    cli: CLI,
    env,
    keepNatsEnv: true,
    startTimeoutMs: 180_000,
  });
  return {
    child: u.proc,
    ingress: u.summary.ingress ?? "",
    stop: async () => {
      await u.stop(60_000);
    },
  };
}

async function top5(ingress: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const name of readdirSync(IMAGES)
    .filter((n) => TYPES[extname(n).toLowerCase()])
    .sort()) {
    const res = await fetch(`${ingress}/classify?top_k=5`, {
      method: "POST",
      body: readFileSync(join(IMAGES, name)),
      headers: { "content-type": TYPES[extname(name).toLowerCase()]! },
    });
    if (res.status !== 200) throw new Error(`${name}: HTTP ${res.status} ${await res.text()}`);
    out[name] = ((await res.json()) as { label: string }[]).map((p) => p.label);
  }
  return out;
}

function cli(args: string[]): string {
  const entry = args[0] === "bench" || args[0] === "soak" ? PERF_CLI : CLI;
  const r = spawnSync(process.execPath, ["--import", "tsx", entry, ...args], {
    cwd: ROOT,
    encoding: "utf8",
    env,
    timeout: 600_000,
  });
  if (r.status !== 0)
    throw new Error(`servegraph ${args[0]} failed (${r.status}): ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  return r.stdout;
}

/** CPU seconds (user + system) of a process, from /proc. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function main(): Promise<number> {
  const forced = process.argv.indexOf("--provider");
  const probes = forced > 0 ? [{ provider: process.argv[forced + 1] ?? "", loaded: true }] : probe();
  const gpu = probes.find((p) => p.loaded);
  if (!gpu) {
    say("gpu-check: no GPU provider available on this host:");
    for (const p of probes) say(`  ${p.provider}: ${p.reason ?? "did not load"}`);
    say("(servegraph doctor says what each one needs.)");
    return 0;
  }
  say(
    forced > 0
      ? `gpu-check: --provider ${gpu.provider} (no probe: the graph starts with it or fails saying why)`
      : `gpu-check: ${gpu.provider} loads (session + warm-up in ${Math.round(gpu.ms ?? 0)} ms)`,
  );
  const model = process.env.SG_REFERENCE_MODEL ? [`infer.MODEL=${resolve(process.env.SG_REFERENCE_MODEL)}`] : [];

  const cpuGraph = await up(["infer.EXECUTION_PROVIDER=cpu", ...model], []);
  let cpuTop: Record<string, string[]>;
  try {
    cpuTop = await top5(cpuGraph.ingress);
  } finally {
    await cpuGraph.stop();
  }

  const preprocessReplicas = Math.max(1, Math.min(8, availableParallelism() - 2));
  const g = await up([`infer.EXECUTION_PROVIDER=${gpu.provider}`, ...model], [`preprocess=${preprocessReplicas}`]);
  try {
    const gpuTop = await top5(g.ingress);
    const differ = Object.keys(cpuTop).filter((k) => JSON.stringify(cpuTop[k]) !== JSON.stringify(gpuTop[k]));
    say(
      `top-5 on ${gpu.provider} vs cpu: ${Object.keys(cpuTop).length - differ.length}/${Object.keys(cpuTop).length} images identical`,
    );
    for (const k of differ) say(`  ${k}: cpu ${cpuTop[k]!.join(", ")} | ${gpu.provider} ${gpuTop[k]!.join(", ")}`);

    const info = JSON.parse(cli(["request", "$SRV.INFO.infer", ""])) as {
      metadata: { pid: string; execution_provider: string; adapter?: string };
    };
    const inferPid = Number(info.metadata.pid);
    const software = info.metadata.adapter?.startsWith("software") ?? false;
    if (software)
      say(
        `adapter ${info.metadata.adapter}: the model computes on the CPU through Vulkan, so the speed figures below say nothing of a GPU`,
      );
    const benchArgs = software
      ? ["--concurrency", "1,4", "--duration", "5", "--warmup", "1", "--no-stages"]
      : ["--concurrency", "1,16,64,128", "--duration", "6", "--warmup", "3"];
    const served = (): number =>
      (
        JSON.parse(cli(["request", "$SRV.STATS.infer", ""])) as {
          endpoints: { data?: { batched_requests?: number } }[];
        }
      ).endpoints.reduce((a, e) => Math.max(a, e.data?.batched_requests ?? 0), 0);
    const served0 = served();
    const cpu0 = cpuSeconds(inferPid);
    const bench = JSON.parse(
      cli(["bench", "--url", g.ingress, "--target", "classify", ...benchArgs, "--json", "--out", work]),
    ) as BenchJson;
    const cpuUsed = cpuSeconds(inferPid) - cpu0;
    const images = served() - served0;
    const levels = bench.classify?.levels ?? [];
    const best = levels.reduce<BenchLevel | undefined>((a, l) => (!a || l.rps > a.rps ? l : a), undefined);
    const model1 = bench.stages?.model?.batches ?? [];
    const pre = bench.stages?.preprocess?.imagesPerS ?? null;
    const modelBest = Math.max(0, ...model1.map((b) => b.imagesPerS));
    say("");
    say(`provider        ${info.metadata.execution_provider} (asked: ${gpu.provider})`);
    if (info.metadata.adapter)
      say(`adapter         ${info.metadata.adapter}${software ? " (speed figures mean nothing)" : ""}`);
    say(`model alone     ${model1.map((b) => `batch ${b.batchSize}: ${b.imagesPerS.toFixed(0)}/s`).join(", ") || "-"}`);
    say(
      `preprocess      ${pre === null ? "-" : `${pre.toFixed(0)} images/s`} (${preprocessReplicas} replicas in the graph)`,
    );
    say(
      `end to end      ${levels.map((l) => `C=${l.concurrency}: ${l.rps.toFixed(l.rps < 10 ? 1 : 0)}/s p50 ${l.latencyMs?.p50 == null ? "-" : `${l.latencyMs.p50.toFixed(1)} ms`}`).join("; ")}`,
    );
    say(`infer CPU       ${images > 0 ? ((cpuUsed * 1000) / images).toFixed(2) : "-"} ms per image`);
    say(
      `limiting stage  ${software ? "- (software adapter)" : best && pre !== null && modelBest > 0 ? (pre < modelBest ? "preprocess (CPU)" : "the model (GPU)") : "-"}`,
    );
    return differ.length === 0 ? 0 : 1;
  } finally {
    await g.stop();
  }
}

interface BenchLevel {
  concurrency: number;
  rps: number;
  latencyMs: { p50: number | null } | null;
}
interface BenchJson {
  classify?: { levels: BenchLevel[] };
  stages?: {
    preprocess?: { imagesPerS: number } | null;
    model?: { batches: { batchSize: number; imagesPerS: number }[] } | null;
  };
}

main().then(
  (code) => {
    rmSync(work, { recursive: true, force: true });
    process.exitCode = code;
  },
  (err: unknown) => {
    rmSync(work, { recursive: true, force: true });
    process.stderr.write(`gpu-check: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
