/**
 * The dashboard's live figures (pure: no NATS, no clock): one frame per discovery reading (runtime/graph-status.ts,
 * the numbers `servegraph status` shows), with rates from two successive readings.
 *
 * Rates: discovery reports counters since each replica started. Requests per second sum the increase of every
 * replica seen in both readings (a replica that just started or stopped adds nothing to that interval: its
 * counter's start is unknown); errors per second are the node's increase, 0 when it went down (a replica left).
 * Never negative, 0 for the first reading.
 *
 * The autoscaler of `servegraph up` answers on `sg.ops.autoscaler` (subjects/names.ts OPS_AUTOSCALER_SUBJECT) with
 * an AutoscalerSnapshot (subjects/ops.ts); {@link autoscalerOf} checks it against that definition.
 */
import type { GraphStatus, NodeStatus } from "../../../../runtime/index.ts";
import { AutoscalerSnapshot, type AutoscaleDecision, type AutoscaleNodeSnapshot } from "../../../../subjects/ops.ts";

/** One discovery reading and when it was taken (ms, any monotonic clock). */
export interface Reading {
  atMs: number;
  nodes: readonly Pick<NodeStatus, "node" | "errors" | "replica_list">[];
}

export interface NodeRates {
  requests_per_s: number;
  errors_per_s: number;
}

export function ratesOf(prev: Reading | undefined, cur: Reading): Map<string, NodeRates> {
  const out = new Map<string, NodeRates>();
  const dt = prev ? (cur.atMs - prev.atMs) / 1000 : 0;
  const before = new Map(prev?.nodes.map((n) => [n.node, n]) ?? []);
  for (const n of cur.nodes) {
    const p = before.get(n.node);
    if (!p || dt <= 0) {
      out.set(n.node, { requests_per_s: 0, errors_per_s: 0 });
      continue;
    }
    const was = new Map(p.replica_list.map((r) => [r.id, r.requests]));
    let requests = 0;
    for (const r of n.replica_list) {
      const w = was.get(r.id);
      if (w !== undefined && r.requests > w) requests += r.requests - w;
    }
    out.set(n.node, { requests_per_s: requests / dt, errors_per_s: Math.max(0, n.errors - p.errors) / dt });
  }
  return out;
}

/** What `servegraph up`'s autoscaler says of one node. */
export interface AutoscaleView {
  /** The metric's value per replica it aims at. */
  target: number | null;
  /** The metric's last value (a total over the replicas; batchFill: 0..1). */
  value: number | null;
  /** The count the last tick wanted. */
  desired: number | null;
  /** "auto", "pinned at N" (`servegraph scale`), "at zero" (the activator holds requests) or "waking". */
  mode: string | null;
  /** The last change of the count: `from -> to (by): reason`. */
  decision: string | null;
  /** When it was decided (ISO). */
  decided_at: string | null;
}

/** A node as the page shows it. */
export interface LiveNode {
  node: string;
  replicas: number;
  hosts: Record<string, number>;
  replica_list: { id: string; host: string; in_flight: number }[];
  in_flight: number;
  requests: number;
  errors: number;
  requests_per_s: number;
  errors_per_s: number;
  p50_ms: number | null;
  p99_ms: number | null;
  last_error: string | null;
  batch: {
    execution_provider: string;
    adapter: string;
    batch_fill: number;
    avg_batch_size: number;
    max_batch_size: number;
    queue_depth: number;
  } | null;
  /** A router's decisions by variant (ab-router), counted where they are made: the A/B split. */
  ab_decisions: Record<string, number> | null;
  autoscaler: AutoscaleView | null;
}

export interface LiveFrame {
  at: string;
  nodes: LiveNode[];
  /** Why this reading has no figures (discovery failed); the page keeps the last ones and says so. */
  error: string | null;
}

export function frameOf(
  status: GraphStatus,
  rates: Map<string, NodeRates>,
  autoscaler: Map<string, AutoscaleView> | null,
): LiveFrame {
  return {
    at: status.at,
    error: null,
    nodes: status.nodes.map((n) => {
      const r = rates.get(n.node) ?? { requests_per_s: 0, errors_per_s: 0 };
      const b = n.batch;
      return {
        node: n.node,
        replicas: n.replicas,
        hosts: n.hosts,
        replica_list: n.replica_list.map(({ id, host, in_flight }) => ({ id, host, in_flight })),
        in_flight: n.in_flight,
        requests: n.requests,
        errors: n.errors,
        ...r,
        p50_ms: n.p50_ms,
        p99_ms: n.p99_ms,
        last_error: n.endpoints.map((e) => e.last_error).find((e) => e) ?? null,
        batch: b
          ? {
              execution_provider: b.execution_provider,
              adapter: b.adapter,
              batch_fill: b.batch_fill,
              avg_batch_size: b.avg_batch_size,
              max_batch_size: b.max_batch_size,
              queue_depth: b.queue_depth,
            }
          : null,
        ab_decisions: n.ab_decisions,
        autoscaler: autoscaler?.get(n.node) ?? null,
      };
    }),
  };
}

const MAX_TEXT = 200;

function decisionOf(d: AutoscaleDecision | null): { decision: string | null; decided_at: string | null } {
  if (!d) return { decision: null, decided_at: null };
  return { decision: `${d.from} -> ${d.to} (${d.by}): ${d.reason}`.slice(0, MAX_TEXT), decided_at: d.at.slice(0, 40) };
}

function modeOf(e: AutoscaleNodeSnapshot): string {
  if (e.pinned !== null) return `pinned at ${e.pinned}`;
  if (e.activator === "armed") return "at zero";
  if (e.activator === "waking") return "waking";
  return "auto";
}

/**
 * Per node, from an autoscaler answer (subjects/ops.ts AutoscalerSnapshot, the one definition `up` answers with).
 * An answer that is not one gives an empty map: the page shows no autoscaler figures rather than wrong ones.
 */
export function autoscalerOf(reply: unknown): Map<string, AutoscaleView> {
  const out = new Map<string, AutoscaleView>();
  const snapshot = AutoscalerSnapshot.safeParse(reply);
  if (!snapshot.success) return out;
  for (const e of snapshot.data.nodes) {
    out.set(e.node, {
      target: e.target,
      value: e.value,
      desired: e.desired,
      mode: modeOf(e),
      ...decisionOf(e.last_decision),
    });
  }
  return out;
}

/** The HTTP requests one ingress replica answered (its own counters: discovery has no NATS endpoint of it). */
export interface HttpFigures {
  requests: number;
  errors: number;
  p50_ms: number | null;
  p99_ms: number | null;
  last_error: string | null;
}

/**
 * The status with the HTTP figures of this replica (`replicaId` of `node`) as that node's `http` endpoint, so that
 * the HTTP node shows requests/s, errors/s and latency like any other. Other replicas of the HTTP node (several
 * ingress replicas behind a load balancer) add nothing: their counters are theirs.
 */
export function withHttpFigures(
  status: GraphStatus,
  self: { node: string; replicaId: string },
  http: HttpFigures,
): GraphStatus {
  return {
    ...status,
    nodes: status.nodes.map((n) => {
      if (n.node !== self.node) return n;
      const endpoints = [
        ...n.endpoints,
        {
          name: "http",
          subject: "HTTP",
          requests: http.requests,
          errors: http.errors,
          p50_ms: http.p50_ms,
          p99_ms: http.p99_ms,
          last_error: http.last_error,
        },
      ];
      return {
        ...n,
        endpoints,
        requests: n.requests + http.requests,
        errors: n.errors + http.errors,
        p50_ms: n.p50_ms ?? http.p50_ms,
        p99_ms: n.p99_ms === null ? http.p99_ms : http.p99_ms === null ? n.p99_ms : Math.max(n.p99_ms, http.p99_ms),
        replica_list: n.replica_list.map((r) =>
          r.id === self.replicaId ? { ...r, requests: r.requests + http.requests } : r,
        ),
      };
    }),
  };
}
