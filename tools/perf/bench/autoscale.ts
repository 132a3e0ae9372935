/**
 * servegraph bench autoscale: how the autoscaler of `servegraph up` follows a stepped load, with the windows of
 * graph.config.ts (numbers, not a test).
 *
 *   servegraph bench autoscale [--high-chain 32] [--high-classify 16] [--hold 30] [--cold-starts 5]
 *                              [--chain-delay-ms 100] [--images data/images] [--out bench-results] [--json] [--graph file]
 *
 * It starts `servegraph up chain classify ab` (a child process with its own broker and state file, every window
 * at its default; greeter answers after --chain-delay-ms, a slow dependency: an instant greeter keeps almost
 * nothing in flight in the chain's nodes, the ingress being the bottleneck, and nothing would scale) and, for the chain (GET /greeting) and then classify (POST /classify, the smallest images of
 * --images), runs a closed loop of HTTP callers: 1 caller until the graph is at rest, then a step up to --high-*
 * callers held --hold seconds, then a step down to 1 caller until every node is back at its min (at most its
 * scale-down window + 60 s). Every 250 ms it reads each autoscaled node's count from `up` (`{op: "autoscaler"}`)
 * and how many of its replicas answer $SRV.PING (serving). Per step it reports, per node, the time from the load
 * change to the first new replica serving and to the final count serving, with the decisions `up` logged, and the
 * requests that failed during the step (the goal is 0).
 *
 * Cold start: for the node with `replicas: [0, N]` of the ab graph (variant-b), --cold-starts times: pin it at 0
 * (`scale variant-b 0`), wait until no replica runs and the activator holds its subject, then time one request
 * routed to it (a user key its gate sends to B) from sending to its answer; then `scale --auto`. Median and all.
 *
 * Writes <out>/autoscale-<timestamp>.json and <out>/autoscale-latest.json; prints a summary (or the JSON).
 */
import { projectRoot } from "../../../runtime/project.ts";
import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { gather, loadGraph, type ResolvedGraph } from "../../../runtime/index.ts";
import { Headers } from "../../../subjects/headers.ts";
import { Discovery, OPS_CONTROL_SUBJECT } from "../../../subjects/names.ts";
import type { AutoscalerSnapshot } from "../../../ops/autoscaler.ts";
import { loadImages, type RequestBody } from "./load.ts";
import { gitCommit, machineInfo } from "./machine.ts";
import { spawnUp } from "../../harness/spawn-up.ts";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const CLI = join(REPO_ROOT, "ops/cli.ts");
const POLL_MS = 250;
/** How long a $SRV.PING waits for answers: replicas under load answer late, and a missed one reads as not serving. */
const PING_WINDOW_MS = 400;
const REST_MS = 10_000;
const REQUEST_TIMEOUT_MS = 60_000;
const COLD_NODE = "variant-b";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const progress = (line: string): void => void process.stderr.write(`[bench autoscale] ${line}\n`);
const median = (xs: number[]): number | null => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

interface Sample {
  t_ms: number;
  replicas: number;
  serving: number;
}

interface NodeStep {
  node: string;
  from: number;
  /** The count at the end of the step. */
  to: number;
  /** Load change -> the first replica added (or removed) serving (PING count changed); null: no change. */
  first_change_ms: number | null;
  /** Load change -> `to` replicas serving. */
  settled_ms: number | null;
  decisions: { t_ms: number; from: number; to: number; by: string; reason: string }[];
  samples: Sample[];
}

interface StepResult {
  graph: "chain" | "classify";
  step: "up" | "down";
  callers_from: number;
  callers_to: number;
  duration_ms: number;
  requests: number;
  failed: number;
  failures: Record<string, number>;
  nodes: NodeStep[];
}

/** A closed loop of HTTP callers whose count can change; counts answers and failures since the last `take()`. */
function closedLoop(send: (i: number) => Promise<Response>) {
  let target = 0;
  let running = 0;
  let ok = 0;
  let failures: Record<string, number> = {};
  let seq = 0;
  const workers = new Set<Promise<void>>();
  const worker = async (id: number): Promise<void> => {
    while (id < target) {
      try {
        const r = await send(seq++);
        await r.arrayBuffer();
        if (r.status === 200) ok++;
        else failures[`HTTP ${r.status}`] = (failures[`HTTP ${r.status}`] ?? 0) + 1;
      } catch (e) {
        const k = e instanceof Error ? e.name : "error";
        failures[k] = (failures[k] ?? 0) + 1;
      }
    }
  };
  return {
    set(n: number): void {
      target = n;
      for (; running < n; running++) {
        const p = worker(running).finally(() => {
          workers.delete(p);
          running--;
        });
        workers.add(p);
      }
    },
    take(): { ok: number; failures: Record<string, number> } {
      const r = { ok, failures };
      ok = 0;
      failures = {};
      return r;
    },
    async stop(): Promise<void> {
      target = 0;
      await Promise.all(workers);
    },
  };
}

interface Up {
  proc: ChildProcess;
  nc: NatsConnection;
  ingress: string;
  logFile: string;
  stop(): Promise<void>;
}

async function startUp(graphFile: string | undefined, dir: string, chainDelayMs: number): Promise<Up> {
  const stateFile = join(dir, "state.json");
  const logFile = join(dir, "up.log");
  let log = "";
  const flush = (): void => writeFileSync(logFile, log);
  const up = await spawnUp({
    args: [
      "chain",
      "classify",
      "ab",
      "--port",
      "0",
      "--param",
      `greeter.DELAY_MS=${chainDelayMs}`,
      ...(graphFile ? ["--graph", graphFile] : []),
    ],
    env: { SG_STATE_FILE: stateFile, SG_LOG_LEVEL: "info" },
    startTimeoutMs: 180_000,
    cli: CLI,
    cwd: REPO_ROOT,
    onOutput: (d, stream) => {
      if (stream === "stderr") log += d.toString();
    },
  }).catch((e: unknown) => {
    flush();
    throw e;
  });
  const { proc, summary } = up;
  const state = JSON.parse(readFileSync(stateFile, "utf8")) as { natsUser: string; natsPassword: string };
  const nc = await connect({
    servers: summary.nats,
    user: state.natsUser,
    pass: state.natsPassword,
    name: "bench-autoscale",
  });
  return {
    proc,
    nc,
    ingress: summary.ingress ?? "",
    logFile,
    async stop() {
      await nc.close().catch(() => {});
      await up.stop();
      flush();
    },
  };
}

async function control<T>(nc: NatsConnection, body: unknown, timeoutMs = 130_000): Promise<T> {
  const m = await nc.request(OPS_CONTROL_SUBJECT, JSON.stringify(body), { timeout: timeoutMs });
  if (m.headers?.get(Headers.ServiceErrorCode))
    throw new Error(`control ${JSON.stringify(body)}: ${m.headers.get(Headers.ServiceError)}`);
  return m.json() as T;
}

/** Count per node (this up's, from its autoscaler) and replicas answering $SRV.PING. */
async function read(
  nc: NatsConnection,
  nodes: readonly string[],
): Promise<{ snap: AutoscalerSnapshot; serving: Record<string, number> }> {
  const [snap, ...pings] = await Promise.all([
    control<AutoscalerSnapshot>(nc, { op: "autoscaler" }, 5000),
    ...nodes.map((n) => gather(nc, Discovery.ping(n), PING_WINDOW_MS).then((x) => x.length)),
  ]);
  return { snap, serving: Object.fromEntries(nodes.map((n, i) => [n, pings[i]!])) };
}

/** Runs one step: sets the callers, samples every node until `done` or `maxMs`. */
async function step(o: {
  nc: NatsConnection;
  loop: ReturnType<typeof closedLoop>;
  graph: StepResult["graph"];
  kind: StepResult["step"];
  from: number;
  to: number;
  nodes: readonly string[];
  maxMs: number;
  done: (snap: AutoscalerSnapshot, serving: Record<string, number>) => boolean;
}): Promise<StepResult> {
  const before = await read(o.nc, o.nodes);
  const lastDecisionAt = new Map(before.snap.nodes.map((n) => [n.node, n.last_decision?.at ?? ""]));
  const per = new Map<string, NodeStep>(
    o.nodes.map((n) => {
      const s = before.snap.nodes.find((x) => x.node === n)!;
      return [
        n,
        {
          node: n,
          from: s.replicas,
          to: s.replicas,
          first_change_ms: null,
          settled_ms: null,
          decisions: [],
          samples: [],
        },
      ];
    }),
  );
  o.loop.take();
  const t0 = performance.now();
  const wall0 = Date.now();
  o.loop.set(o.to);
  progress(`${o.graph}: ${o.from} -> ${o.to} callers`);
  for (;;) {
    await sleep(POLL_MS);
    const t = Math.round(performance.now() - t0);
    const { snap, serving } = await read(o.nc, o.nodes);
    for (const n of o.nodes) {
      const s = snap.nodes.find((x) => x.node === n)!;
      const ns = per.get(n)!;
      const last = ns.samples.at(-1);
      if (!last || last.replicas !== s.replicas || last.serving !== serving[n])
        ns.samples.push({ t_ms: t, replicas: s.replicas, serving: serving[n]! });
      // Counted in the step's direction only: under load a replica may answer a PING late and read as missing.
      if (ns.first_change_ms === null && (o.kind === "up" ? serving[n]! > ns.from : serving[n]! < ns.from))
        ns.first_change_ms = t;
      const d = s.last_decision;
      if (d && d.at !== lastDecisionAt.get(n)) {
        lastDecisionAt.set(n, d.at);
        ns.decisions.push({ t_ms: Date.parse(d.at) - wall0, from: d.from, to: d.to, by: d.by, reason: d.reason });
      }
      ns.to = s.replicas;
    }
    if (o.done(snap, serving) || t > o.maxMs) break;
  }
  const durationMs = Math.round(performance.now() - t0);
  const { ok, failures } = o.loop.take();
  // Settled: the first time as many replicas as the step ended with were serving (up: at least, down: at most).
  for (const ns of per.values()) {
    if (ns.to === ns.from) continue;
    const hit = ns.samples.find((x) => (o.kind === "up" ? x.serving >= ns.to : x.serving <= ns.to));
    ns.settled_ms = hit ? hit.t_ms : null;
  }
  const failed = Object.values(failures).reduce((a, b) => a + b, 0);
  progress(
    `${o.graph} ${o.kind}: ${[...per.values()].map((n) => `${n.node} ${n.from} -> ${n.to}${n.settled_ms !== null ? ` serving after ${(n.settled_ms / 1000).toFixed(1)} s` : ""}`).join(", ")}; ${ok + failed} requests, ${failed} failed`,
  );
  return {
    graph: o.graph,
    step: o.kind,
    callers_from: o.from,
    callers_to: o.to,
    duration_ms: durationMs,
    requests: ok + failed,
    failed,
    failures,
    nodes: [...per.values()],
  };
}

async function stepped(o: {
  nc: NatsConnection;
  graphDef: ResolvedGraph;
  graph: StepResult["graph"];
  nodes: string[];
  high: number;
  holdMs: number;
  send: (i: number) => Promise<Response>;
}): Promise<StepResult[]> {
  const loop = closedLoop(o.send);
  const mins = Object.fromEntries(o.nodes.map((n) => [n, o.graphDef.nodes[n]!.replicas.min]));
  const downMs = Math.max(...o.nodes.map((n) => o.graphDef.nodes[n]!.autoscale!.scaleDownAfterMs));
  const atMin = (snap: AutoscalerSnapshot): boolean =>
    o.nodes.every((n) => snap.nodes.find((x) => x.node === n)!.replicas === mins[n]);
  // Down: until the stopped replicas are gone from discovery too (they drain first).
  const servingMin = (serving: Record<string, number>): boolean => o.nodes.every((n) => serving[n] === mins[n]);
  try {
    // At rest: one caller, every node at its min.
    loop.set(1);
    const t0 = performance.now();
    for (;;) {
      const { snap } = await read(o.nc, o.nodes);
      if (atMin(snap) && performance.now() - t0 > REST_MS) break;
      if (performance.now() - t0 > downMs + 90_000)
        throw new Error(`${o.graph}: the nodes did not come to rest at their min`);
      await sleep(500);
    }
    const up = await step({
      nc: o.nc,
      loop,
      graph: o.graph,
      kind: "up",
      from: 1,
      to: o.high,
      nodes: o.nodes,
      maxMs: o.holdMs,
      done: () => false,
    });
    const down = await step({
      nc: o.nc,
      loop,
      graph: o.graph,
      kind: "down",
      from: o.high,
      to: 1,
      nodes: o.nodes,
      maxMs: downMs + 60_000,
      done: (snap, serving) => atMin(snap) && servingMin(serving),
    });
    return [up, down];
  } finally {
    await loop.stop();
  }
}

/** User keys the ab gate sends to variant B (it answers which variant it chose). */
async function usersOfB(ingress: string, count: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; out.length < count && i < 200; i++) {
    const r = await fetch(`${ingress}/process/probe?user_key=bench-user-${i}`, {
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const body = (await r.json()) as { ab_test_result?: { selected_variant?: string } };
    if (body.ab_test_result?.selected_variant === "B") out.push(`bench-user-${i}`);
  }
  return out;
}

async function coldStarts(
  nc: NatsConnection,
  ingress: string,
  n: number,
): Promise<{ node: string; runs_ms: number[]; failed: number; median_ms: number | null }> {
  const [user] = await usersOfB(ingress, 1);
  if (!user) throw new Error("no user key routed to variant B in 200 tries");
  const runs: number[] = [];
  let failed = 0;
  try {
    for (let i = 0; i < n; i++) {
      await control(nc, { op: "scale", node: COLD_NODE, replicas: 0 });
      for (let w = 0; ; w++) {
        const snap = await control<AutoscalerSnapshot>(nc, { op: "autoscaler" }, 5000);
        const s = snap.nodes.find((x) => x.node === COLD_NODE)!;
        const pings = (await gather(nc, Discovery.ping(COLD_NODE), PING_WINDOW_MS)).length;
        if (s.replicas === 0 && s.activator === "armed" && pings === 0) break;
        if (w > 100) throw new Error(`${COLD_NODE} did not reach 0 replicas`);
        await sleep(200);
      }
      await sleep(1000); // the machine settles after the replica's exit
      const t0 = performance.now();
      const r = await fetch(`${ingress}/process/cold-${i}?user_key=${user}`, {
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      await r.arrayBuffer();
      const ms = performance.now() - t0;
      if (r.status === 200) runs.push(Math.round(ms));
      else failed++;
      progress(`cold start ${i + 1}/${n}: ${COLD_NODE} answered ${r.status} after ${ms.toFixed(0)} ms`);
    }
  } finally {
    await control(nc, { op: "scale", node: COLD_NODE, auto: true }).catch(() => {});
  }
  return { node: COLD_NODE, runs_ms: runs, failed, median_ms: median(runs) };
}

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        "high-chain": { type: "string", default: "32" },
        "high-classify": { type: "string", default: "16" },
        hold: { type: "string", default: "30" },
        "cold-starts": { type: "string", default: "5" },
        "chain-delay-ms": { type: "string", default: "100" },
        images: { type: "string", default: join(REPO_ROOT, "data/images") },
        out: { type: "string", default: join(projectRoot(), "bench-results") },
        json: { type: "boolean" },
        graph: { type: "string" },
      },
    }));
  } catch (e) {
    process.stderr.write(`servegraph bench autoscale: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
  const int = (k: string, lo: number, hi: number): number | undefined => {
    const v = Number(values[k]);
    return Number.isInteger(v) && v >= lo && v <= hi ? v : undefined;
  };
  const highChain = int("high-chain", 2, 1024);
  const highClassify = int("high-classify", 2, 1024);
  const holdS = int("hold", 5, 600);
  const colds = int("cold-starts", 0, 50);
  const chainDelayMs = int("chain-delay-ms", 0, 10_000);
  if (
    highChain === undefined ||
    highClassify === undefined ||
    holdS === undefined ||
    colds === undefined ||
    chainDelayMs === undefined
  ) {
    process.stderr.write(
      "servegraph bench autoscale: --high-chain/--high-classify 2..1024, --hold 5..600 s, --cold-starts 0..50, --chain-delay-ms 0..10000\n",
    );
    return 2;
  }
  const graphDef = await loadGraph(values.graph as string | undefined);
  const images = loadImages(values.images as string);
  const small: RequestBody[] = images.files
    .map((f, i) => ({ f, i, size: statSync(f).size }))
    .sort((a, b) => a.size - b.size)
    .slice(0, 4)
    .map((x) => images.bodies[x.i]!);
  if (!small.length) {
    process.stderr.write(`servegraph bench autoscale: no images in ${values.images}\n`);
    return 2;
  }
  const dir = mkdtempSync(join(tmpdir(), "sg-bench-autoscale-"));
  const startedAt = new Date().toISOString();
  const machine = machineInfo();
  progress("starting servegraph up chain classify ab (default windows)");
  const up = await startUp(values.graph as string | undefined, dir, chainDelayMs);
  const steps: StepResult[] = [];
  let cold: Awaited<ReturnType<typeof coldStarts>> | null = null;
  let upLog = "";
  try {
    steps.push(
      ...(await stepped({
        nc: up.nc,
        graphDef,
        graph: "chain",
        nodes: ["greeter-proxy", "greeter"],
        high: highChain,
        holdMs: holdS * 1000,
        send: (i) => fetch(`${up.ingress}/greeting/b${i % 1000}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }),
      })),
    );
    steps.push(
      ...(await stepped({
        nc: up.nc,
        graphDef,
        graph: "classify",
        nodes: ["preprocess", "infer"],
        high: highClassify,
        holdMs: holdS * 1000,
        send: (i) => {
          const b = small[i % small.length]!;
          return fetch(`${up.ingress}/classify`, {
            method: "POST",
            body: b.body,
            headers: { "content-type": b.contentType },
            signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
          });
        },
      })),
    );
    if (colds > 0) cold = await coldStarts(up.nc, up.ingress, colds);
  } finally {
    await up.stop();
    upLog = readFileSync(up.logFile, "utf8");
    rmSync(dir, { recursive: true, force: true });
  }
  const result = {
    kind: "autoscale",
    startedAt,
    finishedAt: new Date().toISOString(),
    command: ["servegraph bench autoscale", ...argv].join(" "),
    commit: gitCommit(REPO_ROOT),
    machine: { ...machine, loadAvg1mEnd: loadavg()[0] },
    chain_greeter_delay_ms: chainDelayMs,
    windows: Object.fromEntries(
      ["greeter-proxy", "greeter", "preprocess", "infer", COLD_NODE].map((n) => [
        n,
        { replicas: graphDef.nodes[n]!.replicas, ...graphDef.nodes[n]!.autoscale },
      ]),
    ),
    steps,
    cold_start: cold,
    autoscaler_log: upLog
      .split("\n")
      .filter((l) => / autoscale |activator:/.test(l))
      .map((l) => l.replace(/\s+node=.*$/, "")),
  };
  const out = resolve(values.out as string);
  mkdirSync(out, { recursive: true });
  const stamp = startedAt.replace(/[:.]/g, "-");
  writeFileSync(join(out, `autoscale-${stamp}.json`), JSON.stringify(result, null, 2) + "\n");
  writeFileSync(join(out, "autoscale-latest.json"), JSON.stringify(result, null, 2) + "\n");
  if (values.json) {
    process.stdout.write(JSON.stringify(result) + "\n");
  } else {
    const s = (ms: number | null): string => (ms === null ? "-" : `${(ms / 1000).toFixed(1)} s`);
    const lines = [
      "",
      `autoscale bench (${result.commit ?? "?"}, ${machine.logicalCores} cores), windows from graph.config.ts, greeter delay ${chainDelayMs} ms`,
      "",
      "  graph     step                node           replicas  first serving  all serving  requests  failed",
    ];
    for (const st of steps) {
      for (const [i, n] of st.nodes.entries()) {
        lines.push(
          `  ${(i ? "" : st.graph).padEnd(10)}${(i ? "" : `${st.step} ${st.callers_from}->${st.callers_to} callers`).padEnd(20)}${n.node.padEnd(15)}${`${n.from} -> ${n.to}`.padEnd(10)}${s(n.first_change_ms).padEnd(15)}${s(n.settled_ms).padEnd(13)}${(i ? "" : String(st.requests)).padEnd(10)}${i ? "" : st.failed}`,
        );
      }
    }
    if (cold)
      lines.push(
        "",
        `  cold start of ${cold.node} from 0 replicas to its first answer (through ingress and ab-router): median ${s(cold.median_ms)} of ${cold.runs_ms.length} (${cold.runs_ms.map((x) => `${x} ms`).join(", ")})${cold.failed ? `, ${cold.failed} failed` : ""}`,
      );
    lines.push("", `  written to ${join(out, `autoscale-${stamp}.json`)}`, "");
    process.stdout.write(lines.join("\n"));
  }
  return steps.every((x) => x.failed === 0) && (!cold || cold.failed === 0) ? 0 : 1;
}
