/**
 * servegraph soak: holds the classify graph at a steady share of its capacity for a long time and reports what
 * drifts: the memory of every process (replicas and nats-server), latency minute by minute, errors.
 *
 *   servegraph soak [--duration 600] [--load 0.8] [--capacity-duration 10] [--concurrency 16] [--window 60]
 *                   [--sample 5] [--images data/images] [--url http://127.0.0.1:8080] [--nats url]
 *                   [--out bench-results] [--json] [--graph file]
 *
 * 1. The graph: the same search as bench (ops/bench/target.ts): --url, else the one `servegraph up` started, else
 *    it starts its own classify graph (nats-server + ingress, preprocess, infer) and stops it at the end.
 * 2. Capacity: a closed loop (bench's runLevel, autocannon) at --concurrency for --capacity-duration seconds
 *    after a short warm-up, POST /classify over the images of --images in turn: images/s answered 2xx.
 * 3. The soak: an open loop at --load x capacity for --duration seconds. Requests leave on a fixed schedule
 *    whatever the answers do (a slower graph builds a queue and shows it in latency, where a closed loop would
 *    slow down with it); latency runs from each request's scheduled time. At most MAX_IN_FLIGHT requests are
 *    outstanding; one that would exceed it is not sent and counts as dropped.
 * 4. Every --sample seconds the RSS of every graph process (/proc/<pid>/status VmRSS; processes found again each
 *    time, so a replaced replica shows up); per --window (60 s, or a quarter of a shorter run) requests, errors,
 *    p50 and p99.
 *
 * Reports the windows, the p99 drift (first window vs last), every process's RSS at the start and the end, and
 * the errors, as a table (or the JSON with --json), and writes <out>/soak-latest.json. Loopback only.
 * Exit codes: 0 done; 1 the graph failed, a graph process exited during the soak, or more than 1% of requests
 * failed; 2 bad usage.
 */
import http from "node:http";
import { loadavg } from "node:os";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { loadGraph } from "../../runtime/index.ts";
import { busyCores, startCpuSample, type CpuUse } from "../bench/cpu.ts";
import { loadImages, runLevel, summarize, type LatencySummary, type RequestBody } from "../bench/load.ts";
import { gitCommit, machineInfo, type MachineInfo } from "../bench/machine.ts";
import { BenchUsageError, openTarget, readyReplicas, servedTargets, type BenchTarget, type TargetSource } from "../bench/target.ts";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const MAX_IN_FLIGHT = 512;
const REQUEST_TIMEOUT_MS = 30_000;
const WARMUP_S = 3;
/** More failed requests than this share makes the soak fail (exit 1). */
const MAX_ERROR_RATE = 0.01;

export interface SoakWindow {
  /** Seconds from the soak's start to the window's start (requests are placed by their scheduled time). */
  startS: number;
  durationS: number;
  sent: number;
  ok: number;
  errors: number;
  /** 2xx answers per second. */
  rps: number;
  /** Milliseconds, 2xx answers only; null when there were none. */
  latencyMs: LatencySummary | null;
}

export interface ProcessMemory {
  name: string;
  pid: number;
  startMiB: number;
  endMiB: number;
  maxMiB: number;
  /** (end - start) / start. */
  change: number;
  /** Still running at the end of the soak. */
  alive: boolean;
  /** First seen after the soak started (e.g. a replaced replica). */
  appeared: boolean;
  /** RSS (MiB) at each sample: [seconds from the start, MiB]. */
  samples: [number, number][];
}

export interface SoakResult {
  version: 1;
  startedAt: string;
  finishedAt: string;
  command: string;
  commit: string | null;
  machine: MachineInfo;
  graph: { source: TargetSource; ingressUrl: string; replicas: Record<string, number> };
  settings: { durationS: number; load: number; capacityDurationS: number; concurrency: number; windowS: number; sampleS: number; images: string[]; maxInFlight: number };
  capacity: { imagesPerS: number; latencyMs: LatencySummary | null; errors: number; non2xx: number };
  offeredPerS: number;
  soak: {
    durationS: number;
    sent: number;
    ok: number;
    achievedPerS: number;
    latencyMs: LatencySummary | null;
    errors: { total: number; rate: number; byKind: Record<string, number> };
    windows: SoakWindow[];
    p99Drift: { firstMs: number | null; lastMs: number | null; change: number | null };
    /** CPU during the soak (Linux): the whole machine, the graph + this command, and other processes. */
    cpu: CpuUse | null;
  };
  processes: ProcessMemory[];
  healthy: boolean;
  problems: string[];
  warnings: string[];
}

function usage(msg: string): number {
  process.stderr.write(`servegraph soak: ${msg}\n`);
  return 2;
}

function progress(line: string): void {
  process.stderr.write(`[soak] ${line}\n`);
}

// --- processes --------------------------------------------------------------------------------------------------

/** A graph process's name: its replica id (SG_REPLICA_ID in its environment), else its command name. */
function processName(pid: number): string {
  try {
    const env = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    const id = env.find((e) => e.startsWith("SG_REPLICA_ID="));
    if (id) return id.slice("SG_REPLICA_ID=".length);
  } catch {
    // not ours to read, or gone
  }
  try {
    const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    if (comm === "node" || comm === "MainThread") {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (cmd.some((a) => a.endsWith("cli.ts")) && cmd.includes("up")) return "servegraph-up";
    }
    return comm;
  } catch {
    return `pid-${pid}`;
  }
}

function rssMiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

interface Tracked { name: string; pid: number; samples: [number, number][]; appeared: boolean; alive: boolean }

function createMemoryTracker(graphPids: () => Promise<number[]>): { sample(atS: number, first?: boolean): Promise<void>; result(): ProcessMemory[] } {
  const byPid = new Map<number, Tracked>();
  return {
    async sample(atS, first = false) {
      const pids = new Set(await graphPids().catch(() => [] as number[]));
      for (const t of byPid.values()) if (!pids.has(t.pid)) t.alive = rssMiB(t.pid) !== undefined && t.alive;
      for (const pid of pids) {
        const mib = rssMiB(pid);
        let t = byPid.get(pid);
        if (mib === undefined) {
          if (t) t.alive = false;
          continue;
        }
        if (!t) byPid.set(pid, (t = { name: processName(pid), pid, samples: [], appeared: !first, alive: true }));
        t.samples.push([Math.round(atS * 10) / 10, Math.round(mib * 10) / 10]);
      }
    },
    result() {
      return [...byPid.values()].filter((t) => t.samples.length > 0).map((t) => {
        const start = t.samples[0]![1];
        const end = t.samples[t.samples.length - 1]![1];
        return {
          name: t.name, pid: t.pid, startMiB: start, endMiB: end, maxMiB: Math.max(...t.samples.map((s) => s[1])),
          change: start > 0 ? (end - start) / start : 0, alive: t.alive, appeared: t.appeared, samples: t.samples,
        };
      }).sort((a, b) => a.name.localeCompare(b.name));
    },
  };
}

// --- the open loop ----------------------------------------------------------------------------------------------

interface Outcome { scheduledS: number; ok: boolean; latencyMs: number; kind: string }

/**
 * Sends POST /classify at `ratePerS` on a fixed schedule for `durationS`, cycling over `bodies`; calls `onSample`
 * every `sampleS` seconds. Resolves with every request's outcome once the last answer is in (or timed out).
 */
async function openLoop(o: {
  url: URL; bodies: readonly RequestBody[]; ratePerS: number; durationS: number; sampleS: number; signal: AbortSignal;
  onSample: (atS: number) => Promise<void>; onWindow: (atS: number, outcomes: readonly Outcome[]) => void; windowS: number;
}): Promise<Outcome[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: MAX_IN_FLIGHT });
  const outcomes: Outcome[] = [];
  const pending = new Set<Promise<void>>();
  let inFlight = 0;
  const t0 = performance.now();
  const send = (i: number, scheduledMs: number): Promise<void> => new Promise((done) => {
    const b = o.bodies[i % o.bodies.length]!;
    const finish = (ok: boolean, kind: string): void => {
      outcomes.push({ scheduledS: (scheduledMs - t0) / 1000, ok, latencyMs: performance.now() - scheduledMs, kind });
      inFlight--;
      done();
    };
    inFlight++;
    let settled = false;
    const once = (ok: boolean, kind: string): void => {
      if (settled) return;
      settled = true;
      finish(ok, kind);
    };
    const req = http.request({
      agent, host: o.url.hostname, port: o.url.port, method: "POST", path: "/classify",
      headers: { "content-type": b.contentType, "content-length": String(b.body.length) }, timeout: REQUEST_TIMEOUT_MS,
    }, (res) => {
      const status = res.statusCode ?? 0;
      const ok = status >= 200 && status < 300;
      // an error's kind is its status and table code (`{code, message}` body); a success's body is not kept
      let head = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => { if (!ok && head.length < 4096) head += chunk; });
      res.on("end", () => {
        let code = "";
        if (!ok) {
          try {
            code = String((JSON.parse(head) as { code?: unknown }).code ?? "");
          } catch {
            // not JSON: the status alone
          }
        }
        once(ok, `http ${status}${code ? ` ${code}` : ""}`);
      });
      res.on("error", () => once(false, "connection"));
    });
    req.on("timeout", () => {
      req.destroy();
      once(false, "timeout");
    });
    req.on("error", () => once(false, "connection"));
    req.end(b.body);
  });

  const intervalMs = 1000 / o.ratePerS;
  const total = Math.floor(o.durationS * o.ratePerS);
  let i = 0;
  let nextSampleS = o.sampleS;
  let nextWindowS = o.windowS;
  while (i < total && !o.signal.aborted) {
    const now = performance.now();
    while (i < total && t0 + i * intervalMs <= now) {
      const scheduledMs = t0 + i * intervalMs;
      if (inFlight >= MAX_IN_FLIGHT) {
        outcomes.push({ scheduledS: (scheduledMs - t0) / 1000, ok: false, latencyMs: 0, kind: "dropped (in-flight cap)" });
      } else {
        const p = send(i, scheduledMs);
        pending.add(p);
        void p.then(() => pending.delete(p));
      }
      i++;
    }
    const elapsedS = (performance.now() - t0) / 1000;
    if (elapsedS >= nextSampleS) {
      await o.onSample(elapsedS);
      nextSampleS += o.sampleS;
    }
    if (elapsedS >= nextWindowS) {
      o.onWindow(nextWindowS, outcomes);
      nextWindowS += o.windowS;
    }
    const wait = Math.max(1, Math.min(t0 + i * intervalMs - performance.now(), 50));
    await new Promise((r) => setTimeout(r, wait));
  }
  await Promise.all(pending);
  agent.destroy();
  return outcomes;
}

function windowsOf(outcomes: readonly Outcome[], durationS: number, windowS: number): SoakWindow[] {
  const out: SoakWindow[] = [];
  for (let start = 0; start < durationS - 1e-9; start += windowS) {
    const len = Math.min(windowS, durationS - start);
    const mine = outcomes.filter((x) => x.scheduledS >= start && x.scheduledS < start + len);
    const okLat = Float64Array.from(mine.filter((x) => x.ok).map((x) => x.latencyMs));
    out.push({ startS: start, durationS: len, sent: mine.length, ok: okLat.length, errors: mine.length - okLat.length, rps: okLat.length / len, latencyMs: summarize(okLat) });
  }
  return out;
}

// --- report -----------------------------------------------------------------------------------------------------

const f1 = (v: number | null | undefined): string => (v === null || v === undefined || Number.isNaN(v) ? "-" : v.toFixed(1));
const sign = (v: number | null): string => (v === null ? "-" : `${v >= 0 ? "+" : ""}${(v * 100).toFixed(1)}%`);

export function formatSoak(r: SoakResult): string {
  const s = r.soak;
  const lines = [
    `servegraph soak  POST /classify at ${r.graph.ingressUrl} (${r.graph.source})  ${r.startedAt}`,
    `capacity: ${f1(r.capacity.imagesPerS)} images/s (closed loop, ${r.settings.concurrency} connections, ${r.settings.capacityDurationS} s)` +
      ` -> offered ${f1(r.offeredPerS)}/s (${Math.round(r.settings.load * 100)}%), open loop for ${r.settings.durationS} s`,
    "",
    `${"WINDOW".padEnd(14)}${"SENT".padStart(7)}${"OK".padStart(7)}${"ERRORS".padStart(8)}${"RATE/s".padStart(9)}${"P50 ms".padStart(9)}${"P99 ms".padStart(9)}`,
    ...s.windows.map((w) => `${`${f1(w.startS)}-${f1(w.startS + w.durationS)} s`.padEnd(14)}${String(w.sent).padStart(7)}${String(w.ok).padStart(7)}${String(w.errors).padStart(8)}${f1(w.rps).padStart(9)}${f1(w.latencyMs?.p50).padStart(9)}${f1(w.latencyMs?.p99).padStart(9)}`),
    `${"all".padEnd(14)}${String(s.sent).padStart(7)}${String(s.ok).padStart(7)}${String(s.errors.total).padStart(8)}${f1(s.achievedPerS).padStart(9)}${f1(s.latencyMs?.p50).padStart(9)}${f1(s.latencyMs?.p99).padStart(9)}`,
    "",
    `p99 drift (first window -> last): ${f1(s.p99Drift.firstMs)} -> ${f1(s.p99Drift.lastMs)} ms (${sign(s.p99Drift.change)})`,
    `cpu during the soak: ${s.cpu ? `${f1(s.cpu.machineCores)} cores busy, ${f1(s.cpu.ownCores)} graph + soak, ${f1(s.cpu.otherCores)} other processes` : "-"}`,
    `errors: ${s.errors.total} of ${s.sent} (${(s.errors.rate * 100).toFixed(2)}%)${Object.keys(s.errors.byKind).length ? `: ${Object.entries(s.errors.byKind).map(([k, n]) => `${k} ${n}`).join(", ")}` : ""}`,
    "",
    `${"PROCESS".padEnd(18)}${"PID".padStart(8)}${"START MiB".padStart(11)}${"END MiB".padStart(10)}${"MAX MiB".padStart(10)}${"CHANGE".padStart(9)}  NOTE`,
    ...r.processes.map((p) => `${p.name.padEnd(18)}${String(p.pid).padStart(8)}${f1(p.startMiB).padStart(11)}${f1(p.endMiB).padStart(10)}${f1(p.maxMiB).padStart(10)}${sign(p.change).padStart(9)}  ${[!p.alive ? "exited" : "", p.appeared ? "appeared during the soak" : ""].filter(Boolean).join(", ")}`),
  ];
  if (r.problems.length) lines.push("", ...r.problems.map((p) => `problem: ${p}`));
  if (r.warnings.length) lines.push("", ...r.warnings.map((w) => `warning: ${w}`));
  return lines.join("\n") + "\n";
}

function toJson(r: SoakResult): string {
  return JSON.stringify(r, (_k, v: unknown) => (typeof v === "number" && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v), 2) + "\n";
}

// --- the command --------------------------------------------------------------------------------------------------

export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        duration: { type: "string", default: "600" },
        load: { type: "string", default: "0.8" },
        "capacity-duration": { type: "string", default: "10" },
        concurrency: { type: "string", default: "16" },
        window: { type: "string" },
        sample: { type: "string", default: "5" },
        images: { type: "string" },
        url: { type: "string" },
        nats: { type: "string" },
        out: { type: "string" },
        json: { type: "boolean", default: false },
        graph: { type: "string" },
      },
      allowPositionals: false,
    }));
  } catch (err) {
    return usage(err instanceof Error ? err.message : String(err));
  }
  const durationS = Number(values.duration);
  const load = Number(values.load);
  const capacityDurationS = Number(values["capacity-duration"]);
  const concurrency = Number(values.concurrency);
  const sampleS = Number(values.sample);
  const windowS = values.window === undefined ? Math.min(60, durationS / 4) : Number(values.window);
  if (!(durationS >= 10 && durationS <= 24 * 3600)) return usage("--duration must be a number of seconds in [10, 86400]");
  if (!(load > 0 && load <= 1.5)) return usage("--load must be a fraction of the capacity in (0, 1.5]");
  if (!(capacityDurationS >= 2 && capacityDurationS <= 120)) return usage("--capacity-duration must be a number of seconds in [2, 120]");
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1024) return usage("--concurrency must be an integer in 1..1024");
  if (!(sampleS >= 1 && sampleS <= 600)) return usage("--sample must be a number of seconds in [1, 600]");
  if (!(windowS >= 1 && windowS <= durationS)) return usage("--window must be a number of seconds in [1, --duration]");
  const imagesDir = values.images ? resolve(values.images) : join(REPO_ROOT, "data/images");
  const outDir = values.out ? (isAbsolute(values.out) ? values.out : resolve(values.out)) : join(REPO_ROOT, "bench-results");
  const images = loadImages(imagesDir);
  if (images.bodies.length === 0) return usage(`no images in ${imagesDir}`);

  const startedAt = new Date().toISOString();
  const machine = machineInfo();
  machine.busyCoresBefore = await busyCores(1000);
  const warnings: string[] = [];
  if (machine.busyCoresBefore !== null && machine.busyCoresBefore > 0.3) {
    warnings.push(`other processes used ${machine.busyCoresBefore.toFixed(2)} of ${machine.logicalCores} cores just before the run`);
  }
  const graph = await loadGraph(values.graph);
  const aborter = new AbortController();
  const onSigint = (): void => {
    progress("interrupted: finishing with what was measured");
    aborter.abort();
  };
  process.once("SIGINT", onSigint);

  let t: BenchTarget | undefined;
  try {
    t = await openTarget({ url: values.url, nats: values.nats, graph, warnings, progress, graphs: ["classify"] });
    const replicas = await readyReplicas(t.ingressUrl);
    if (!servedTargets(replicas).classify) return usage(`the graph at ${t.ingressUrl} does not serve classify (readyz replicas: ${JSON.stringify(replicas)})`);

    // capacity: closed loop, after an unrecorded warm-up
    const req = { url: t.ingressUrl, method: "POST" as const, path: "/classify", bodies: images.bodies, connections: concurrency, maxRequests: 10_000_000 };
    progress(`warm-up ${WARMUP_S} s, then capacity: closed loop at ${concurrency} connections for ${capacityDurationS} s`);
    await runLevel({ ...req, durationS: WARMUP_S }, aborter.signal);
    const cap = await runLevel({ ...req, durationS: capacityDurationS }, aborter.signal);
    if (cap.ok === 0) throw new Error(`no 2xx answer while measuring capacity (status codes ${JSON.stringify(cap.statusCodes)}, errors ${cap.errors})`);
    const offeredPerS = cap.rps * load;
    progress(`capacity ${cap.rps.toFixed(1)} images/s; soaking at ${offeredPerS.toFixed(1)}/s (${Math.round(load * 100)}%) for ${durationS} s`);

    // the soak
    const memory = createMemoryTracker(t.graphPids);
    await memory.sample(0, true);
    const cpuSample = startCpuSample(await t.graphPids());
    const tSoak = performance.now();
    const outcomes = await openLoop({
      url: new URL(t.ingressUrl), bodies: images.bodies, ratePerS: offeredPerS, durationS, sampleS, windowS, signal: aborter.signal,
      onSample: (atS) => memory.sample(atS),
      onWindow: (endS, all) => {
        // answers in so far for the requests scheduled in the window that just ended
        const from = endS - windowS;
        const w = windowsOf(all.filter((x) => x.scheduledS >= from && x.scheduledS < endS).map((x) => ({ ...x, scheduledS: x.scheduledS - from })), windowS, windowS)[0];
        if (w) progress(`${f1(from)}-${f1(endS)} s: ${w.sent} answered, ${w.errors} errors, p50 ${f1(w.latencyMs?.p50)} ms, p99 ${f1(w.latencyMs?.p99)} ms`);
      },
    });
    const soakS = Math.min(durationS, (performance.now() - tSoak) / 1000);
    const cpu = cpuSample.stop();
    await memory.sample(soakS);
    if (cpu && cpu.otherCores > 0.3) warnings.push(`other processes used ${cpu.otherCores.toFixed(2)} cores during the soak: the graph had less CPU than the capacity measurement may have had`);

    const ranS = aborter.signal.aborted ? Math.max(...outcomes.map((x) => x.scheduledS), 0) : durationS;
    const windows = windowsOf(outcomes, ranS, windowS).filter((w) => w.sent > 0);
    const okLat = Float64Array.from(outcomes.filter((x) => x.ok).map((x) => x.latencyMs));
    const byKind: Record<string, number> = {};
    for (const x of outcomes) if (!x.ok) byKind[x.kind] = (byKind[x.kind] ?? 0) + 1;
    const errorsTotal = outcomes.length - okLat.length;
    const firstP99 = windows[0]?.latencyMs?.p99 ?? null;
    const lastP99 = windows.at(-1)?.latencyMs?.p99 ?? null;
    const processes = memory.result();
    const problems: string[] = [];
    for (const p of processes) {
      if (!p.alive) problems.push(`${p.name} (pid ${p.pid}) exited during the soak`);
      if (p.appeared) problems.push(`${p.name} (pid ${p.pid}) started during the soak (a replica was replaced)`);
    }
    const errorRate = outcomes.length ? errorsTotal / outcomes.length : 0;
    if (errorRate > MAX_ERROR_RATE) problems.push(`${(errorRate * 100).toFixed(2)}% of requests failed (limit ${MAX_ERROR_RATE * 100}%)`);
    if (windows.length < 2) warnings.push("one window only: the p99 drift compares it with itself; use a --duration of at least two windows");

    machine.loadAvg1m.end = loadavg()[0]!;
    const result: SoakResult = {
      version: 1,
      startedAt,
      finishedAt: new Date().toISOString(),
      command: ["servegraph", "soak", ...argv].join(" "),
      commit: gitCommit(REPO_ROOT),
      machine,
      graph: { source: t.source, ingressUrl: t.ingressUrl, replicas },
      settings: { durationS, load, capacityDurationS, concurrency, windowS, sampleS, images: images.names, maxInFlight: MAX_IN_FLIGHT },
      capacity: { imagesPerS: cap.rps, latencyMs: cap.latencyMs, errors: cap.errors, non2xx: cap.non2xx },
      offeredPerS,
      soak: {
        durationS: ranS, sent: outcomes.length, ok: okLat.length, achievedPerS: okLat.length / Math.max(ranS, 1e-9), latencyMs: summarize(okLat),
        errors: { total: errorsTotal, rate: errorRate, byKind }, windows,
        p99Drift: { firstMs: firstP99, lastMs: lastP99, change: firstP99 && lastP99 !== null ? (lastP99 - firstP99) / firstP99 : null },
        cpu,
      },
      processes,
      healthy: problems.length === 0,
      problems,
      warnings,
    };
    mkdirSync(outDir, { recursive: true });
    const json = toJson(result);
    const file = join(outDir, "soak-latest.json");
    writeFileSync(file, json);
    process.stdout.write(values.json ? json : formatSoak(result) + `\nwrote ${file}\n`);
    return result.healthy ? 0 : 1;
  } catch (err) {
    if (err instanceof BenchUsageError) return usage(err.message);
    throw err;
  } finally {
    process.removeListener("SIGINT", onSigint);
    await t?.close();
  }
}
