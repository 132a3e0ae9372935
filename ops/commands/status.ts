/**
 * servegraph status [--watch [seconds]] [--json] [--nats url]
 *
 * Every node of the running graph, from ADR-32 discovery ($SRV.INFO and $SRV.STATS, one answer per replica):
 * replicas, in-flight, requests, errors, p50/p99 latency, batch fill where a node batches, metrics URLs.
 * Finds the graph that `servegraph up` started through its state file (and logs in as its ops user when `up`
 * runs its own broker); NATS_URL or --nats points elsewhere.
 * The `servegraph-ops` control service of `servegraph up` is reported apart from the nodes.
 *
 * Aggregation over replicas: in-flight, requests, errors and queue depth add up; p50 is the mean of the
 * replicas' p50 weighted by their recent sample counts; p99 is the largest replica p99 (an upper bound: the
 * percentiles of a union cannot be computed from the parts); batch fill and average batch size are
 * weighted by each replica's recent batch count.
 *
 * Exit codes: 0 when at least one node answered, 1 when none did or NATS is unreachable, 2 for bad usage.
 */
import { parseArgs } from "node:util";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats, gather } from "../../runtime/index.ts";
import { Discovery } from "../../subjects/names.ts";
import { readState, resolveNatsUrl, useOpsCredentials } from "../state.ts";

const CONTROL_SERVICE = "servegraph-ops";
/** Samples each endpoint keeps for its percentiles (runtime/service.ts) and batches kept for batch stats (infer). */
const RECENT_SAMPLES = 2048;
const RECENT_BATCHES = 512;
const DEFAULT_WATCH_S = 2;

interface InfoReply {
  name: string;
  id: string;
  version?: string;
  metadata?: Record<string, string>;
  endpoints?: { name: string; subject: string }[];
}

interface StatsEndpoint {
  name: string;
  subject: string;
  num_requests: number;
  num_errors: number;
  last_error?: string;
  data?: Record<string, unknown> | null;
}

interface StatsReply {
  name: string;
  id: string;
  started?: string;
  metadata?: Record<string, string>;
  endpoints?: StatsEndpoint[];
}

export interface EndpointStatus {
  name: string;
  subject: string;
  requests: number;
  errors: number;
  p50_ms: number | null;
  p99_ms: number | null;
  last_error: string | null;
}

export interface BatchStatus {
  batches: number;
  avg_batch_size: number;
  max_batch_size: number;
  batch_fill: number;
  queue_depth: number;
  execution_provider: string;
  /** Providers tried before the one in use, and why each did not start (`auto`), per distinct answer. */
  provider_fallbacks: { provider: string; reason: string }[];
}

export interface NodeStatus {
  node: string;
  replicas: number;
  /** The supervisor's replica ids (metadata `replica`), else the discovery ids. */
  replica_ids: string[];
  in_flight: number;
  requests: number;
  errors: number;
  p50_ms: number | null;
  p99_ms: number | null;
  endpoints: EndpointStatus[];
  batch: BatchStatus | null;
  metrics_urls: string[];
  http_url: string | null;
}

export interface GraphStatus {
  nats: string;
  graph: string | null;
  at: string;
  nodes: NodeStatus[];
  /** The `servegraph up` supervisor: seen through discovery of its control service, or through its state file. */
  control: { replicas: number; graph: string | null; pid?: number; started_at?: string };
}

const num = (x: unknown): number => (typeof x === "number" && Number.isFinite(x) ? x : 0);

/** Weighted mean of [value, weight] pairs; null when no weight. */
function weighted(pairs: [number, number][]): number | null {
  let w = 0;
  let s = 0;
  for (const [v, n] of pairs) { s += v * n; w += n; }
  return w > 0 ? s / w : null;
}

/** Builds the status from the discovery answers of every replica (pure: exported for tests). */
export function summarize(infos: InfoReply[], stats: StatsReply[], expectedNodes: readonly string[] = []): Omit<GraphStatus, "nats" | "at"> {
  const byNode = new Map<string, { info: Map<string, InfoReply>; stats: Map<string, StatsReply> }>();
  const entry = (name: string) => {
    let e = byNode.get(name);
    if (!e) byNode.set(name, (e = { info: new Map(), stats: new Map() }));
    return e;
  };
  for (const n of expectedNodes) entry(n);
  for (const i of infos) if (i?.name && i.id) entry(i.name).info.set(i.id, i);
  for (const s of stats) if (s?.name && s.id) entry(s.name).stats.set(s.id, s);

  const control = byNode.get(CONTROL_SERVICE);
  byNode.delete(CONTROL_SERVICE);
  const graphs = new Set<string>();

  const nodes: NodeStatus[] = [];
  for (const [node, { info, stats: st }] of byNode) {
    const ids = [...new Set([...info.keys(), ...st.keys()])].sort();
    const metricsUrls: string[] = [];
    const replicaIds: string[] = [];
    let httpUrl: string | null = null;
    for (const id of ids) {
      const md = info.get(id)?.metadata ?? st.get(id)?.metadata ?? {};
      replicaIds.push(md.replica ?? id);
      if (md.metrics_url) metricsUrls.push(md.metrics_url);
      if (md.http_url) httpUrl ??= md.http_url;
      if (md.graph) graphs.add(md.graph);
    }
    const eps = new Map<string, { subject: string; requests: number; errors: number; p50: [number, number][]; p99: number | null; lastError: string | null }>();
    let inFlight = 0;
    const batchRows: { data: Record<string, unknown> }[] = [];
    for (const s of st.values()) {
      const list = s.endpoints ?? [];
      // in_flight and the batch figures are per replica, repeated in every endpoint's data: count them once
      const first = list[0]?.data ?? {};
      inFlight += num(first.in_flight);
      if ("batch_fill" in first) batchRows.push({ data: first });
      for (const ep of list) {
        let e = eps.get(ep.name);
        if (!e) eps.set(ep.name, (e = { subject: ep.subject, requests: 0, errors: 0, p50: [], p99: null, lastError: null }));
        e.requests += num(ep.num_requests);
        e.errors += num(ep.num_errors);
        if (ep.last_error) e.lastError = ep.last_error;
        const samples = Math.min(num(ep.num_requests), RECENT_SAMPLES);
        if (samples > 0) {
          e.p50.push([num(ep.data?.p50_ms), samples]);
          e.p99 = Math.max(e.p99 ?? 0, num(ep.data?.p99_ms));
        }
      }
    }
    const endpoints: EndpointStatus[] = [...eps].map(([name, e]) => ({
      name, subject: e.subject, requests: e.requests, errors: e.errors, p50_ms: weighted(e.p50), p99_ms: e.p99, last_error: e.lastError,
    }));
    const p99s = [...eps.values()].map((e) => e.p99).filter((x): x is number => x !== null);
    let batch: BatchStatus | null = null;
    if (batchRows.length) {
      const w = (d: Record<string, unknown>): number => Math.min(num(d.batches), RECENT_BATCHES);
      batch = {
        batches: batchRows.reduce((a, r) => a + num(r.data.batches), 0),
        avg_batch_size: weighted(batchRows.map((r) => [num(r.data.avg_batch_size), w(r.data)])) ?? 0,
        max_batch_size: Math.max(...batchRows.map((r) => num(r.data.max_batch_size))),
        batch_fill: weighted(batchRows.map((r) => [num(r.data.batch_fill), w(r.data)])) ?? 0,
        queue_depth: batchRows.reduce((a, r) => a + num(r.data.queue_depth), 0),
        execution_provider: [...new Set(batchRows.map((r) => String(r.data.execution_provider ?? "?")))].join(","),
        provider_fallbacks: fallbacksOf(batchRows.map((r) => r.data.provider_fallbacks)),
      };
    }
    nodes.push({
      node, replicas: ids.length, replica_ids: replicaIds, in_flight: inFlight,
      requests: endpoints.reduce((a, e) => a + e.requests, 0),
      errors: endpoints.reduce((a, e) => a + e.errors, 0),
      p50_ms: weighted([...eps.values()].flatMap((e) => e.p50)),
      p99_ms: p99s.length ? Math.max(...p99s) : null,
      endpoints, batch, metrics_urls: metricsUrls, http_url: httpUrl,
    });
  }
  // HTTP nodes first (the way in), then by name
  nodes.sort((a, b) => Number(b.http_url !== null) - Number(a.http_url !== null) || a.node.localeCompare(b.node));
  const controlGraph = control ? [...control.info.values()].map((i) => i.metadata?.graph).find(Boolean) ?? null : null;
  return {
    graph: graphs.size ? [...graphs].join(",") : controlGraph,
    nodes,
    control: { replicas: control ? new Set([...control.info.keys(), ...control.stats.keys()]).size : 0, graph: controlGraph },
  };
}

export async function collectStatus(nc: NatsConnection, natsUrl: string, expectedNodes: readonly string[] = [], windowMs = 250): Promise<GraphStatus> {
  const [infos, stats] = await Promise.all([gather<InfoReply>(nc, Discovery.info(), windowMs), gather<StatsReply>(nc, Discovery.stats(), windowMs)]);
  return { nats: natsUrl, at: new Date().toISOString(), ...summarize(infos, stats, expectedNodes) };
}

/** The distinct {provider, reason} pairs the replicas report (they usually all agree). */
function fallbacksOf(values: unknown[]): { provider: string; reason: string }[] {
  const out = new Map<string, { provider: string; reason: string }>();
  for (const v of values) {
    if (!Array.isArray(v)) continue;
    for (const f of v as unknown[]) {
      const { provider, reason } = (f ?? {}) as { provider?: unknown; reason?: unknown };
      if (typeof provider === "string" && typeof reason === "string") out.set(`${provider}\0${reason}`, { provider, reason });
    }
  }
  return [...out.values()];
}

const ms = (x: number | null): string => (x === null ? "-" : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]! + 2))).join("").trimEnd());
}

export function formatStatus(s: GraphStatus): string {
  const head = `servegraph status  graph ${s.graph ?? "?"}  nats ${s.nats}  ${s.at.replace("T", " ").replace(/\.\d+Z$/, "Z")}`;
  if (s.nodes.length === 0) return `${head}\n\nno node answered on ${s.nats}: is \`servegraph up\` running (or NATS_URL set to its server)?\n`;
  const rows: string[][] = [["NODE", "REPLICAS", "IN-FLIGHT", "REQUESTS", "ERRORS", "P50 ms", "P99 ms", "BATCH FILL", "METRICS"]];
  for (const n of s.nodes) {
    const batch = n.batch
      ? `${(n.batch.batch_fill * 100).toFixed(0)}% (avg ${n.batch.avg_batch_size.toFixed(1)}/${n.batch.max_batch_size}, ${n.batch.execution_provider}${n.batch.queue_depth ? `, queued ${n.batch.queue_depth}` : ""})`
      : "-";
    const served = n.endpoints.length > 0;
    rows.push([
      n.node, n.replicas === 0 ? "0 DOWN" : String(n.replicas), served ? String(n.in_flight) : "-", served ? String(n.requests) : "-",
      served ? String(n.errors) : "-", ms(n.p50_ms), ms(n.p99_ms), batch,
      n.metrics_urls.length > 1 ? `${n.metrics_urls[0]} (+${n.metrics_urls.length - 1})` : n.metrics_urls[0] ?? "-",
    ]);
  }
  const lines = [head, "", ...table(rows)];
  const http = s.nodes.filter((n) => n.http_url);
  if (http.length) lines.push("", ...http.map((n) => `${n.node} serves HTTP at ${n.http_url} (its request metrics: ${n.metrics_urls[0] ?? "-"})`));
  for (const n of s.nodes) {
    if (!n.batch?.provider_fallbacks.length) continue;
    lines.push("", `${n.node} runs on ${n.batch.execution_provider}; providers tried first:`, ...n.batch.provider_fallbacks.map((f) => `  ${f.provider}: ${f.reason}`));
  }
  const failing = s.nodes.flatMap((n) => n.endpoints.filter((e) => e.last_error).map((e) => `${n.node}.${e.name}: ${e.last_error}`));
  if (failing.length) lines.push("", "last errors:", ...failing.map((f) => `  ${f}`));
  if (s.control.replicas || s.control.pid) {
    lines.push("", `control: servegraph up${s.control.pid ? ` (pid ${s.control.pid}, started ${s.control.started_at ?? "?"})` : ` (${CONTROL_SERVICE})`}`);
  }
  return lines.join("\n") + "\n";
}

/** `--watch` takes an optional number of seconds: `--watch`, `--watch 5`, `--watch=5`. */
function splitWatch(argv: string[]): { args: string[]; watchS: number | undefined } {
  const args: string[] = [];
  let watchS: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--watch" || a === "-w") {
      const next = argv[i + 1];
      if (next !== undefined && /^\d+(\.\d+)?$/.test(next)) { watchS = Number(next); i++; } else watchS = DEFAULT_WATCH_S;
    } else if (a.startsWith("--watch=")) {
      watchS = Number(a.slice("--watch=".length));
    } else args.push(a);
  }
  return { args, watchS };
}

export async function run(argv: string[]): Promise<number> {
  const { args, watchS } = splitWatch(argv);
  let values: { json?: boolean; nats?: string; graph?: string; help?: boolean };
  try {
    ({ values } = parseArgs({ args, options: { json: { type: "boolean" }, nats: { type: "string" }, graph: { type: "string" }, help: { type: "boolean", short: "h" } } }));
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\nusage: servegraph status [--watch [seconds]] [--json] [--nats url]\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write("usage: servegraph status [--watch [seconds]] [--json] [--nats url]\n");
    return 0;
  }
  if (watchS !== undefined && !(watchS >= 0.2 && watchS <= 3600)) {
    process.stderr.write("--watch takes a number of seconds within 0.2..3600\n");
    return 2;
  }
  const natsUrl = resolveNatsUrl(values.nats);
  // The nodes `servegraph up` started, so a node with no replica left still shows (as DOWN).
  const state = readState();
  const ours = state && state.natsUrl === natsUrl ? state : undefined;
  useOpsCredentials(natsUrl, state);
  const expected = ours?.nodes ?? [];
  const collect = async (): Promise<GraphStatus> => {
    const s = await collectStatus(nc, natsUrl, expected);
    if (ours) Object.assign(s.control, { pid: ours.pid, started_at: ours.startedAt });
    return s;
  };

  let nc: NatsConnection;
  try {
    // Fails at once when nothing listens; under --watch it then reconnects for as long as it runs.
    nc = await connectNats({ servers: natsUrl, name: "servegraph-status", timeoutMs: 3000, waitOnFirstConnect: false });
  } catch (err) {
    const msg = `cannot reach NATS at ${natsUrl} (${err instanceof Error ? err.message : String(err)}): start the graph with \`servegraph up\`, or set NATS_URL`;
    if (values.json) process.stdout.write(JSON.stringify({ ok: false, error: { code: "UNAVAILABLE", message: msg } }) + "\n");
    else process.stderr.write(msg + "\n");
    return 1;
  }
  try {
    if (watchS === undefined) {
      const s = await collect();
      process.stdout.write(values.json ? JSON.stringify(s) + "\n" : formatStatus(s));
      return s.nodes.some((n) => n.replicas > 0) ? 0 : 1;
    }
    // Watch: redraw in place until Ctrl-C (JSON: one line per refresh).
    let stop!: () => void;
    const stopped = new Promise<void>((r) => { stop = r; });
    const onSignal = (): void => stop();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      for (let done = false; !done;) {
        const s = await collect();
        if (values.json) process.stdout.write(JSON.stringify(s) + "\n");
        else process.stdout.write(`\x1b[H\x1b[2J${formatStatus(s)}\n(every ${watchS} s; Ctrl-C stops)\n`);
        let t: NodeJS.Timeout | undefined;
        done = await Promise.race([stopped.then(() => true), new Promise<boolean>((r) => { t = setTimeout(() => r(false), watchS * 1000); })]);
        clearTimeout(t);
      }
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
    return 0;
  } finally {
    await nc.close().catch(() => {});
  }
}
