/**
 * `servegraph bench --target infer`: the infer node's own ceiling, and what request-reply costs on the same wire.
 *
 * The bench starts a graph of its own for it: a nats-server and one infer replica (the supervisor of `servegraph
 * up`) with MODEL=trivial (a generated model of the real one's shapes with almost no compute: what is left is the
 * node's own work, receiving, batching, normalising, copying and replying), plus `--param` overrides (e.g.
 * `infer.EXECUTION_PROVIDER=cpu`, or `infer.MODEL=` for the real model). Beside it, a bare responder in a process
 * of its own (echo-responder.ts) answers every request with a reply of infer's size: "what free is" on this wire.
 *
 * Load: from the bench process, closed loop at each concurrency (nats-load.ts), single-image 1x3x224x224 tensors
 * sent straight to infer's `run` subject with the runtime client (`call(InferRun, ...)`, what preprocess does),
 * uint8 pixels (what preprocess sends) and float32 values (already normalised) for comparison; and the same
 * payloads and headers to the bare responder with a plain `nc.request`. Per concurrency, in this order: infer
 * uint8, bare uint8, infer float32, bare float32. The pixels are fixed pseudo-random bytes: the node's work per
 * image does not depend on their values.
 *
 * Per level: answers/s, latency, CPU time of the answering process per answer (infer replicas' or the
 * responder's, from /proc/<pid>/stat, the pid from $SRV.INFO metadata), the bench's own CPU per request (the load
 * generator), the machine's other load, and infer's batch sizes.
 * Targets: >= 800 images/s with uint8 input, and <= 1 ms of infer CPU per image at that rate.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import {
  connectNats,
  createClient,
  subjectFor,
  telemetryWanted,
  withParameterOverrides,
  type ResolvedGraph,
} from "../../../runtime/index.ts";
import {
  Headers,
  IMAGE_TENSOR_SHAPE,
  InferRun,
  TensorDtype,
  formatShape,
  normalizeChw,
} from "../../../subjects/index.ts";
import { startNats, type LocalNats } from "../../../ops/nats-server.ts";
import { startSupervisor, type Supervisor } from "../../../ops/supervisor.ts";
import { discoverInfer, startBatchCount, type InferReplica, type LevelBatches } from "./batches.ts";
import { startHelper, type HelperProcess } from "./child.ts";
import { startCpuSample, startProcessCpu, type CpuUse } from "./cpu.ts";
import { runNatsLevel, type NatsLevelResult } from "./nats-load.ts";

/** The targets of the issue "GPU inference for real", on this machine. */
export const INFER_GOALS = { minImagesPerS: 800, maxCpuMsPerImage: 1 } as const;

/** MODEL value of infer's generated trivial model (TRIVIAL_MODEL of services/infer/src/params.ts). */
const TRIVIAL_MODEL = "trivial";
/** The graph the bench starts: infer alone. */
const BENCH_GRAPH = "bench-infer";
const ECHO_SUBJECT = "sg.bench.echo";
const NAME = "servegraph-bench";
const CALL_TIMEOUT_MS = 30_000;

export const Series = { INFER: "infer", BARE: "bare" } as const;
export type Series = (typeof Series)[keyof typeof Series];

export interface InferLevel extends NatsLevelResult {
  series: Series;
  dtype: TensorDtype;
  requestBytes: number;
  /** CPU milliseconds the answering process (the infer replicas, or the bare responder) used per answer. */
  serverCpuMsPerRequest: number | null;
  /** CPU milliseconds the bench process (the load generator and client) used per answer. */
  clientCpuMsPerRequest: number | null;
  cpu: CpuUse | null;
  /** Infer's forward passes during the level (null for the bare responder). */
  batches: LevelBatches | null;
}

export interface InferGoals {
  minImagesPerS: number;
  maxCpuMsPerImage: number;
  /** Best images/s of infer with uint8 input over the levels, and at which concurrency. */
  imagesPerS: number | null;
  atConcurrency: number | null;
  /** Infer's CPU per image at that level. */
  cpuMsPerImage: number | null;
  rateMet: boolean | null;
  cpuMet: boolean | null;
}

export interface InferReport {
  subject: string;
  /** The model file the replica loaded ($SRV.INFO metadata). */
  model: string | null;
  executionProvider: string | null;
  maxBatchSize: number | null;
  replicas: number;
  requestBytes: Record<TensorDtype, number>;
  replyBytes: number;
  client: string;
  responder: string;
  levels: InferLevel[];
  goals: InferGoals;
}

/** One row of the table: infer and the bare responder at one dtype and concurrency. */
export interface InferRow {
  dtype: TensorDtype;
  concurrency: number;
  infer: InferLevel | undefined;
  bare: InferLevel | undefined;
  /** infer's rate over the bare responder's. */
  ofBare: number | null;
}

/** Infer's ceiling (best uint8 level) against the targets. */
export function inferGoals(levels: readonly InferLevel[]): InferGoals {
  const u8 = levels.filter((l) => l.series === Series.INFER && l.dtype === TensorDtype.uint8 && l.ok > 0);
  const best = u8.length ? u8.reduce((a, b) => (b.rps > a.rps ? b : a)) : undefined;
  const imagesPerS = best?.rps ?? null;
  const cpuMsPerImage = best?.serverCpuMsPerRequest ?? null;
  return {
    ...INFER_GOALS,
    imagesPerS,
    atConcurrency: best?.concurrency ?? null,
    cpuMsPerImage,
    rateMet: imagesPerS === null ? null : imagesPerS >= INFER_GOALS.minImagesPerS,
    cpuMet: cpuMsPerImage === null ? null : cpuMsPerImage <= INFER_GOALS.maxCpuMsPerImage,
  };
}

/** The levels paired by dtype and concurrency, uint8 first, in the order of the concurrencies measured. */
export function inferRows(levels: readonly InferLevel[]): InferRow[] {
  const rows: InferRow[] = [];
  for (const dtype of [TensorDtype.uint8, TensorDtype.float32]) {
    const cs = [...new Set(levels.filter((l) => l.dtype === dtype).map((l) => l.concurrency))];
    for (const c of cs) {
      const infer = levels.find((l) => l.dtype === dtype && l.concurrency === c && l.series === Series.INFER);
      const bare = levels.find((l) => l.dtype === dtype && l.concurrency === c && l.series === Series.BARE);
      rows.push({
        dtype,
        concurrency: c,
        infer,
        bare,
        ofBare: infer && bare && bare.rps > 0 ? infer.rps / bare.rps : null,
      });
    }
  }
  return rows;
}

/** Fixed pseudo-random pixels (xorshift32), so every run sends the same bytes. */
export function benchPixels(n: number, seed = 0x5eed): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export interface InferPlan {
  graph: ResolvedGraph;
  /** `--param node.KEY=VALUE` overrides, applied after MODEL=trivial. */
  params: readonly string[];
  /** Where the bench's helper scripts live (ops/bench). */
  scriptsDir: string;
  concurrency: readonly number[];
  durationS: number;
  warmupS: number;
  maxRequests: number;
  signal: AbortSignal;
  warnings: string[];
  progress: (line: string) => void;
}

export interface InferRun {
  report: InferReport;
  /** What the result's `graph` says. */
  replicas: Record<string, number>;
  tracing: boolean;
}

interface Started {
  nats: LocalNats;
  nc: NatsConnection;
  sup?: Supervisor;
  echo?: HelperProcess<unknown>;
}

async function stopAll(s: Started, progress: (l: string) => void): Promise<void> {
  progress("stopping infer, the bare responder and nats-server");
  await s.echo?.stop().catch(() => {});
  await s.sup?.stop().catch(() => {});
  await s.nc.close().catch(() => {});
  await s.nats.stop();
}

export async function runInferTarget(p: InferPlan): Promise<InferRun> {
  const base = withParameterOverrides(p.graph, [`infer.MODEL=${TRIVIAL_MODEL}`, ...p.params]);
  if (!base.nodes.infer) throw new Error(`${p.graph.file} has no infer node`);
  const graph: ResolvedGraph = {
    ...base,
    graphs: {
      ...base.graphs,
      [BENCH_GRAPH]: { description: "infer alone (servegraph bench --target infer)", nodes: ["infer"] },
    },
  };
  const model = graph.nodes.infer!.parameters.MODEL ?? "";
  p.progress(`starting nats-server and one infer replica (MODEL=${model || "<generated ResNet18>"})`);
  const nats = await startNats();
  const s: Started = { nats, nc: await connectNats({ servers: nats.url, name: NAME }) };
  try {
    s.sup = await startSupervisor({
      graph,
      graphs: [BENCH_GRAPH],
      natsUrl: nats.url,
      nc: s.nc,
      restart: false,
      stdio: "inherit",
      signal: p.signal,
      env: { SG_LOG_LEVEL: process.env.SG_LOG_LEVEL ?? "warn" },
      log: p.progress,
    });
    const { replicas, maxBatchSize } = await discoverInfer(s.nc, graph, p.warnings);
    if (model === TRIVIAL_MODEL && !replicas.some((r) => r.model?.includes(TRIVIAL_MODEL))) {
      p.warnings.push(
        `infer reports model ${replicas[0]?.model ?? "unknown"}, not the trivial one: its numbers include the model's compute`,
      );
    }
    const subject = subjectFor(graph, "infer", "run");
    const client = createClient(s.nc, { caller: NAME, defaultTimeoutMs: CALL_TIMEOUT_MS });
    const pixels = benchPixels(IMAGE_TENSOR_SHAPE.reduce((a: number, b: number) => a * b, 1));
    const f32 = normalizeChw(pixels, new Float32Array(pixels.length));
    const payload: Record<TensorDtype, Uint8Array> = { uint8: pixels, float32: new Uint8Array(f32.buffer) };
    // infer's reply size, from one call: the bare responder answers with as many bytes
    const probe = await client.call(InferRun, subject, {
      data: pixels,
      shape: IMAGE_TENSOR_SHAPE,
      dtype: TensorDtype.uint8,
    });
    const replyBytes = probe.data.length;
    s.echo = await startHelper(
      `${p.scriptsDir}/echo-responder.ts`,
      { natsUrl: nats.url, subject: ECHO_SUBJECT, replyBytes },
      { cwd: graph.root, readyTimeoutMs: 30_000, parse: (x) => x },
    );

    const hdrs = (dtype: TensorDtype): MsgHdrs => {
      const h = natsHeaders();
      h.set(Headers.Dtype, dtype);
      h.set(Headers.Shape, formatShape(IMAGE_TENSOR_SHAPE));
      return h;
    };
    const bareHeaders: Record<TensorDtype, MsgHdrs> = {
      uint8: hdrs(TensorDtype.uint8),
      float32: hdrs(TensorDtype.float32),
    };
    const send = (series: Series, dtype: TensorDtype) =>
      series === Series.INFER
        ? () => client.call(InferRun, subject, { data: payload[dtype], shape: IMAGE_TENSOR_SHAPE, dtype })
        : () => s.nc.request(ECHO_SUBJECT, payload[dtype], { timeout: CALL_TIMEOUT_MS, headers: bareHeaders[dtype] });
    const inferPids = replicas.map((r) => r.pid).filter((x): x is number => x !== undefined);
    if (inferPids.length === 0) p.warnings.push("no infer replica advertises its pid: no CPU per image");
    const serverPids = (series: Series): number[] => (series === Series.INFER ? inferPids : [s.echo!.pid]);
    const allPids = [nats.process.pid ?? 0, ...inferPids, s.echo.pid];
    const order: [Series, TensorDtype][] = [
      [Series.INFER, TensorDtype.uint8],
      [Series.BARE, TensorDtype.uint8],
      [Series.INFER, TensorDtype.float32],
      [Series.BARE, TensorDtype.float32],
    ];

    if (p.warmupS > 0) {
      const c = Math.max(...p.concurrency);
      p.progress(`warm-up: each series at C=${c} for ${p.warmupS / 2} s`);
      for (const [series, dtype] of order)
        await runNatsLevel({
          concurrency: c,
          durationS: p.warmupS / 2,
          maxRequests: p.maxRequests,
          send: send(series, dtype),
          signal: p.signal,
        });
    }
    const levels: InferLevel[] = [];
    for (const c of p.concurrency) {
      for (const [series, dtype] of order) {
        if (p.signal.aborted) break;
        p.progress(`${series} ${dtype} C=${c} for ${p.durationS} s`);
        const batchesSince = series === Series.INFER ? await startBatchCount(s.nc, replicas) : undefined;
        const cpu = startCpuSample(allPids);
        const server = startProcessCpu(serverPids(series));
        const client0 = process.cpuUsage();
        const l = await runNatsLevel({
          concurrency: c,
          durationS: p.durationS,
          maxRequests: p.maxRequests,
          send: send(series, dtype),
          signal: p.signal,
        });
        const clientCpu = process.cpuUsage(client0);
        const serverS = server.stop();
        levels.push({
          ...l,
          series,
          dtype,
          requestBytes: payload[dtype].length,
          serverCpuMsPerRequest: serverS !== null && l.ok > 0 ? (serverS * 1000) / l.ok : null,
          clientCpuMsPerRequest: l.ok > 0 ? (clientCpu.user + clientCpu.system) / 1000 / l.ok : null,
          cpu: cpu.stop(),
          batches: batchesSince ? await batchesSince() : null,
        });
      }
    }
    const first: InferReplica | undefined = replicas[0];
    return {
      report: {
        subject,
        model: first?.model ?? null,
        executionProvider: first?.executionProvider ?? null,
        maxBatchSize,
        replicas: replicas.length,
        requestBytes: { uint8: payload.uint8.length, float32: payload.float32.length },
        replyBytes,
        client:
          "runtime client call(InferRun) from the bench process (infer); plain nc.request with the same payload and headers (bare)",
        responder: `bare nats.js responder in a process of its own: replies ${replyBytes} bytes at once, no batching, no model`,
        levels,
        goals: inferGoals(levels),
      },
      replicas: { infer: replicas.length },
      tracing: telemetryWanted(),
    };
  } finally {
    await stopAll(s, p.progress);
  }
}
