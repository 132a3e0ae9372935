/**
 * The live state of a running graph, from ADR-32 discovery ($SRV.INFO and $SRV.STATS, one answer per replica):
 * per node its replicas (with the host each runs on), in-flight, requests, errors, p50/p99 latency and batch
 * figures. One reading for everyone who shows or acts on it: `servegraph status`, the autoscaler of `servegraph up`
 * and the ingress's /dashboard.
 *
 * Aggregation over replicas: in-flight, requests, errors and queue depth add up; p50 is the mean of the
 * replicas' p50 weighted by their recent sample counts; p99 is the largest replica p99 (an upper bound: the
 * percentiles of a union cannot be computed from the parts); batch fill and average batch size are
 * weighted by each replica's recent batch count.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { Discovery } from "../subjects/names.ts";
import { readStatsData, type StatsData } from "../subjects/stats.ts";
import { gather } from "./discovery.ts";
import { RECENT_SAMPLES } from "./service.ts";

/** The discovery name of the control service of `servegraph up` (reported apart from the nodes). */
export const CONTROL_SERVICE = "servegraph-ops";

export interface InfoReply {
  name: string;
  id: string;
  version?: string;
  metadata?: Record<string, string>;
  endpoints?: { name: string; subject: string }[];
}

export interface StatsEndpoint {
  name: string;
  subject: string;
  num_requests: number;
  num_errors: number;
  last_error?: string;
  data?: Record<string, unknown> | null;
}

export interface StatsReply {
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
  /** What a GPU provider runs on ("software: lavapipe (...)", "hardware: /dev/nvidia0"), per distinct answer; "" on the CPU. */
  adapter: string;
  /** Providers tried before the one in use, and why each did not start (`auto`), per distinct answer. */
  provider_fallbacks: { provider: string; reason: string }[];
}

/** One replica as discovery sees it. */
export interface ReplicaStatus {
  /** The supervisor's replica id (metadata `replica`), else the discovery id. */
  id: string;
  /** The host it runs on (metadata `host`: SG_HOST of its launcher, else the machine's hostname). */
  host: string;
  in_flight: number;
  requests: number;
}

export interface NodeStatus {
  node: string;
  replicas: number;
  /** Each replica with its host, sorted by host then id. */
  replica_list: ReplicaStatus[];
  /** Replicas per host. */
  hosts: Record<string, number>;
  in_flight: number;
  requests: number;
  errors: number;
  p50_ms: number | null;
  p99_ms: number | null;
  endpoints: EndpointStatus[];
  batch: BatchStatus | null;
  /** A router's decisions by variant, summed over its replicas (ab-router: the A/B split); null for other nodes. */
  ab_decisions: Record<string, number> | null;
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
  for (const [v, n] of pairs) {
    s += v * n;
    w += n;
  }
  return w > 0 ? s / w : null;
}

/** Builds the status from the discovery answers of every replica (pure: exported for tests). */
export function summarize(
  infos: InfoReply[],
  stats: StatsReply[],
  expectedNodes: readonly string[] = [],
): Omit<GraphStatus, "nats" | "at"> {
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
    const replicaList: ReplicaStatus[] = [];
    const hosts: Record<string, number> = {};
    let httpUrl: string | null = null;
    for (const id of ids) {
      const md = info.get(id)?.metadata ?? st.get(id)?.metadata ?? {};
      const host = md.host || "?";
      hosts[host] = (hosts[host] ?? 0) + 1;
      const eps = st.get(id)?.endpoints ?? [];
      replicaList.push({
        id: md.replica ?? id,
        host,
        in_flight: num(readStatsData(eps[0]?.data).in_flight),
        requests: eps.reduce((a, e) => a + num(e.num_requests), 0),
      });
      if (md.metrics_url) metricsUrls.push(md.metrics_url);
      if (md.http_url) httpUrl ??= md.http_url;
      if (md.graph) graphs.add(md.graph);
    }
    const eps = new Map<
      string,
      {
        subject: string;
        requests: number;
        errors: number;
        p50: [number, number][];
        p99: number | null;
        lastError: string | null;
      }
    >();
    const batchRows: { data: StatsData }[] = [];
    let abDecisions: Record<string, number> | null = null;
    for (const s of st.values()) {
      const list = s.endpoints ?? [];
      // the batch figures are per replica, repeated in every endpoint's data: count them once
      const first = readStatsData(list[0]?.data);
      if (first.batch_fill !== undefined) batchRows.push({ data: first });
      if (first.ab_decisions) {
        abDecisions ??= {};
        for (const [k, v] of Object.entries(first.ab_decisions)) abDecisions[k] = (abDecisions[k] ?? 0) + v;
      }
      for (const ep of list) {
        let e = eps.get(ep.name);
        if (!e)
          eps.set(ep.name, (e = { subject: ep.subject, requests: 0, errors: 0, p50: [], p99: null, lastError: null }));
        e.requests += num(ep.num_requests);
        e.errors += num(ep.num_errors);
        if (ep.last_error) e.lastError = ep.last_error;
        const samples = Math.min(num(ep.num_requests), RECENT_SAMPLES);
        const d = readStatsData(ep.data);
        if (samples > 0) {
          e.p50.push([num(d.p50_ms), samples]);
          e.p99 = Math.max(e.p99 ?? 0, num(d.p99_ms));
        }
      }
    }
    const endpoints: EndpointStatus[] = [...eps].map(([name, e]) => ({
      name,
      subject: e.subject,
      requests: e.requests,
      errors: e.errors,
      p50_ms: weighted(e.p50),
      p99_ms: e.p99,
      last_error: e.lastError,
    }));
    const p99s = [...eps.values()].map((e) => e.p99).filter((x): x is number => x !== null);
    let batch: BatchStatus | null = null;
    if (batchRows.length) {
      // Each replica's averages are over its recent batches: weighted by how many.
      const w = (d: StatsData): number => num(d.recent_batches ?? d.batches);
      batch = {
        batches: batchRows.reduce((a, r) => a + num(r.data.batches), 0),
        avg_batch_size: weighted(batchRows.map((r) => [num(r.data.avg_batch_size), w(r.data)])) ?? 0,
        max_batch_size: Math.max(...batchRows.map((r) => num(r.data.max_batch_size))),
        batch_fill: weighted(batchRows.map((r) => [num(r.data.batch_fill), w(r.data)])) ?? 0,
        queue_depth: batchRows.reduce((a, r) => a + num(r.data.queue_depth), 0),
        execution_provider: [...new Set(batchRows.map((r) => r.data.execution_provider ?? "-"))].join(","),
        adapter: [...new Set(batchRows.map((r) => r.data.adapter).filter((a): a is string => !!a))].join("; "),
        provider_fallbacks: fallbacksOf(batchRows.map((r) => r.data.provider_fallbacks)),
      };
    }
    nodes.push({
      node,
      replicas: ids.length,
      in_flight: replicaList.reduce((a, r) => a + r.in_flight, 0),
      replica_list: replicaList.sort((a, b) => a.host.localeCompare(b.host) || a.id.localeCompare(b.id)),
      hosts: Object.fromEntries(Object.entries(hosts).sort(([a], [b]) => a.localeCompare(b))),
      requests: endpoints.reduce((a, e) => a + e.requests, 0),
      errors: endpoints.reduce((a, e) => a + e.errors, 0),
      p50_ms: weighted([...eps.values()].flatMap((e) => e.p50)),
      p99_ms: p99s.length ? Math.max(...p99s) : null,
      endpoints,
      batch,
      ab_decisions: abDecisions,
      metrics_urls: metricsUrls,
      http_url: httpUrl,
    });
  }
  // HTTP nodes first (the way in), then by name
  nodes.sort((a, b) => Number(b.http_url !== null) - Number(a.http_url !== null) || a.node.localeCompare(b.node));
  const controlGraph = control
    ? ([...control.info.values()].map((i) => i.metadata?.graph).find(Boolean) ?? null)
    : null;
  return {
    graph: graphs.size ? [...graphs].join(",") : controlGraph,
    nodes,
    control: {
      replicas: control ? new Set([...control.info.keys(), ...control.stats.keys()]).size : 0,
      graph: controlGraph,
    },
  };
}

export async function collectStatus(
  nc: NatsConnection,
  natsUrl: string,
  expectedNodes: readonly string[] = [],
  windowMs = 250,
): Promise<GraphStatus> {
  const [infos, stats] = await Promise.all([
    gather<InfoReply>(nc, Discovery.info(), windowMs),
    gather<StatsReply>(nc, Discovery.stats(), windowMs),
  ]);
  return { nats: natsUrl, at: new Date().toISOString(), ...summarize(infos, stats, expectedNodes) };
}

/** The distinct {provider, reason} pairs the replicas report (they usually all agree). */
function fallbacksOf(values: unknown[]): { provider: string; reason: string }[] {
  const out = new Map<string, { provider: string; reason: string }>();
  for (const v of values) {
    if (!Array.isArray(v)) continue;
    for (const f of v as unknown[]) {
      const { provider, reason } = (f ?? {}) as { provider?: unknown; reason?: unknown };
      if (typeof provider === "string" && typeof reason === "string")
        out.set(`${provider}\0${reason}`, { provider, reason });
    }
  }
  return [...out.values()];
}
