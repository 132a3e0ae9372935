/**
 * Monitoring of a deployed graph, from the metrics every replica exports (runtime/metrics.ts, the batcher, the
 * ingress) and the graph's own numbers:
 *
 *   - Prometheus alert rules (`prometheusRules`): a node with no replica, the ratio of server-side (5xx) errors,
 *     a node's p99 over its share of its `timeout`, a batch queue near its `maxQueueSize`. Written as a rules file
 *     (prometheus-rules.yaml, `promtool check rules` reads it) and as a PrometheusRule for the Prometheus operator.
 *   - A Grafana dashboard (`grafanaDashboard`): request rate, p50/p90/p99, errors by code, replicas, in flight,
 *     batch size and queue wait per node, and rate and p99 per edge (caller -> subject); a `$node` variable; the
 *     datasource is the `${DS_PROMETHEUS}` input, chosen at import, so the JSON imports into any Grafana.
 *
 * Every expression names the metrics as exported; the per-node ones are written out per node of the closure, so
 * a node that has no replica at all (and exports nothing) still alerts.
 */
import { ErrorCodes } from "../../subjects/index.ts";
import type { ResolvedGraph } from "../../runtime/index.ts";
import type { K8sMetadata, Manifest } from "./kubernetes.ts";

/** A node alerts when its p99 passes this share of its `timeout`: its callers are about to see DEADLINE_EXCEEDED. */
export const P99_TIMEOUT_SHARE = 0.5;
/** Error replies with a 5xx status over this share of a node's requests, for {@link ERROR_RATIO_FOR}. */
export const ERROR_RATIO_THRESHOLD = 0.05;
const ERROR_RATIO_FOR = "5m";
/** A batch queue fuller than this share of its limit (QUEUE_FULL comes next). */
export const QUEUE_FILL_THRESHOLD = 0.8;

/** The error codes that are the node's fault (5xx), from the one error table. */
const SERVER_ERROR_CODES = Object.entries(ErrorCodes)
  .filter(([, e]) => e.status >= 500)
  .map(([c]) => c)
  .sort();

const seconds = (ms: number): string => String(Number((ms / 1000).toFixed(3)));

export interface AlertRule {
  alert: string;
  expr: string;
  for: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface RuleGroups {
  groups: { name: string; rules: AlertRule[] }[];
}

/** The alert rules of the closure `nodes`, one group per graph file. */
export function prometheusRules(graph: ResolvedGraph, nodes: readonly string[]): RuleGroups {
  const rules: AlertRule[] = [];
  const part = { graph: graph.name };
  for (const n of nodes) {
    const node = graph.nodes[n]!;
    if (node.replicas.min > 0) {
      rules.push({
        alert: "ServegraphNodeNoReplica",
        expr: `(sum(sg_replicas{node="${n}"}) or vector(0)) < 1`,
        for: "2m",
        labels: { severity: "critical", node: n, ...part },
        annotations: {
          summary: `Node ${n} has no running replica`,
          description: `Requests to ${n} fail with UNAVAILABLE (no responders); graph.config.ts asks for at least ${node.replicas.min}.`,
        },
      });
    }
    const p99S = seconds(node.timeoutMs * P99_TIMEOUT_SHARE);
    rules.push({
      alert: "ServegraphNodeSlowP99",
      expr: `histogram_quantile(0.99, sum by (le) (rate(sg_server_request_duration_seconds_bucket{node="${n}"}[5m]))) > ${p99S}`,
      for: "10m",
      labels: { severity: "warning", node: n, ...part },
      annotations: {
        summary: `Node ${n}: p99 above ${p99S} s`,
        description: `p99 of ${n} is {{ $value | humanizeDuration }}, over ${P99_TIMEOUT_SHARE * 100} % of its ${seconds(node.timeoutMs)} s timeout: callers are close to DEADLINE_EXCEEDED.`,
      },
    });
    if (node.batching) {
      rules.push({
        alert: "ServegraphBatchQueueNearFull",
        expr: `max(sg_batch_queue_depth{node="${n}"} / sg_batch_queue_limit{node="${n}"}) > ${QUEUE_FILL_THRESHOLD}`,
        for: "2m",
        labels: { severity: "warning", node: n, ...part },
        annotations: {
          summary: `Node ${n}: batch queue over ${QUEUE_FILL_THRESHOLD * 100} % of maxQueueSize`,
          description: `A replica of ${n} holds {{ $value | humanizePercentage }} of its batch queue (maxQueueSize ${node.batching.maxQueueSize}); past it requests get QUEUE_FULL.`,
        },
      });
    }
  }
  const sel = `node=~"${nodes.join("|")}"`;
  rules.push({
    alert: "ServegraphErrorRatio",
    expr:
      `sum by (node) (rate(sg_request_errors_total{${sel},code=~"${SERVER_ERROR_CODES.join("|")}"}[5m]))` +
      ` / sum by (node) (rate(sg_server_request_duration_seconds_count{${sel}}[5m])) > ${ERROR_RATIO_THRESHOLD}`,
    for: ERROR_RATIO_FOR,
    labels: { severity: "warning", ...part },
    annotations: {
      summary: "Node {{ $labels.node }}: server errors above " + `${ERROR_RATIO_THRESHOLD * 100} %`,
      description: `{{ $value | humanizePercentage }} of the requests to {{ $labels.node }} end in a 5xx code (${SERVER_ERROR_CODES.join(", ")}).`,
    },
  });
  return { groups: [{ name: `servegraph-${graph.name}`, rules }] };
}

/** The PrometheusRule (Prometheus operator) of the same rules, in monitoring.yaml. */
export function monitoringManifests(
  graph: ResolvedGraph,
  nodes: readonly string[],
  meta: (name: string, component: string) => K8sMetadata,
): Manifest[] {
  return [
    {
      file: "monitoring.yaml",
      comments: [
        "Alert rules of the graph, for the Prometheus operator (a plain rules file is prometheus-rules.yaml under --out).",
        "Label it as your Prometheus's ruleSelector asks (e.g. release: <helm release>). Needs the operator's CRDs.",
        "Prometheus finds the replicas by their prometheus.io/scrape annotations.",
      ],
      object: {
        apiVersion: "monitoring.coreos.com/v1",
        kind: "PrometheusRule",
        metadata: meta(`${graph.name}-alerts`, "monitoring"),
        spec: prometheusRules(graph, nodes),
      },
    },
  ];
}

// --- Grafana --------------------------------------------------------------------------------------------

const DS = { type: "prometheus", uid: "${DS_PROMETHEUS}" };

interface PanelSpec {
  title: string;
  unit: string;
  targets: { expr: string; legend: string }[];
  description?: string;
}

function row(title: string, id: number, y: number): Record<string, unknown> {
  return { type: "row", title, id, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] };
}

function panel(p: PanelSpec, id: number, x: number, y: number): Record<string, unknown> {
  return {
    type: "timeseries",
    id,
    title: p.title,
    ...(p.description ? { description: p.description } : {}),
    datasource: DS,
    gridPos: { h: 8, w: 12, x, y },
    fieldConfig: { defaults: { unit: p.unit }, overrides: [] },
    options: {
      legend: { displayMode: "table", placement: "bottom", calcs: ["mean", "max"] },
      tooltip: { mode: "multi", sort: "desc" },
    },
    targets: p.targets.map((t, i) => ({
      datasource: DS,
      refId: String.fromCharCode(65 + i),
      expr: t.expr,
      legendFormat: t.legend,
    })),
  };
}

const quantiles = (metric: string, by: string, filter: string, legend: string): { expr: string; legend: string }[] =>
  [0.5, 0.9, 0.99].map((q) => ({
    expr: `histogram_quantile(${q}, sum by (le, ${by}) (rate(${metric}_bucket${filter ? `{${filter}}` : ""}[$__rate_interval])))`,
    legend: `${legend} p${Math.round(q * 100)}`,
  }));

/** The Grafana dashboard of the graph (import JSON: `__inputs` asks for the Prometheus datasource). */
export function grafanaDashboard(graph: ResolvedGraph, nodes: readonly string[]): Record<string, unknown> {
  const f = 'node=~"$node"';
  const sections: [string, PanelSpec[]][] = [
    [
      "Per node",
      [
        {
          title: "Request rate",
          unit: "reqps",
          targets: [
            {
              expr: `sum by (node, endpoint) (rate(sg_server_request_duration_seconds_count{${f}}[$__rate_interval]))`,
              legend: "{{node}} {{endpoint}}",
            },
          ],
        },
        {
          title: "Latency p50 / p90 / p99",
          unit: "s",
          targets: quantiles("sg_server_request_duration_seconds", "node", f, "{{node}}"),
        },
        {
          title: "Errors by code",
          unit: "reqps",
          targets: [
            {
              expr: `sum by (node, code) (rate(sg_request_errors_total{${f}}[$__rate_interval]))`,
              legend: "{{node}} {{code}}",
            },
          ],
        },
        {
          title: "Replicas",
          unit: "short",
          targets: [{ expr: `sum by (node) (sg_replicas{${f}})`, legend: "{{node}}" }],
        },
        {
          title: "Requests in flight",
          unit: "short",
          targets: [{ expr: `sum by (node) (sg_requests_in_flight{${f}})`, legend: "{{node}}" }],
        },
      ],
    ],
    [
      "Batching",
      [
        {
          title: "Batch size p50 / p90 / p99",
          unit: "short",
          targets: quantiles("sg_batch_size", "node", f, "{{node}}"),
        },
        {
          title: "Batch queue wait p50 / p90 / p99",
          unit: "s",
          targets: quantiles("sg_batch_queue_wait_seconds", "node", f, "{{node}}"),
        },
        {
          title: "Batch queue depth / limit",
          unit: "short",
          targets: [
            { expr: `sum by (node) (sg_batch_queue_depth{${f}})`, legend: "{{node}} depth" },
            { expr: `sum by (node) (sg_batch_queue_limit{${f}})`, legend: "{{node}} limit" },
          ],
        },
        {
          title: "Batch fill",
          unit: "percentunit",
          targets: [{ expr: `avg by (node) (sg_batch_fill_ratio{${f}})`, legend: "{{node}}" }],
        },
        {
          title: "Model compute p99",
          unit: "s",
          targets: [
            {
              expr: `histogram_quantile(0.99, sum by (le, node, execution_provider) (rate(sg_model_compute_seconds_bucket{${f}}[$__rate_interval])))`,
              legend: "{{node}} {{execution_provider}}",
            },
          ],
        },
      ],
    ],
    [
      "Per edge (caller -> subject)",
      [
        {
          title: "Edge request rate by code",
          unit: "reqps",
          targets: [
            {
              expr: `sum by (caller, subject, code) (rate(sg_client_request_duration_seconds_count{caller=~"$node"}[$__rate_interval]))`,
              legend: "{{caller}} -> {{subject}} {{code}}",
            },
          ],
        },
        {
          title: "Edge latency p50 / p90 / p99",
          unit: "s",
          targets: quantiles(
            "sg_client_request_duration_seconds",
            "caller, subject",
            'caller=~"$node"',
            "{{caller}} -> {{subject}}",
          ),
        },
        {
          title: "HTTP latency p50 / p90 / p99 (ingress)",
          unit: "s",
          targets: quantiles("sg_http_request_duration_seconds", "route", "", "{{route}}"),
        },
      ],
    ],
  ];
  const panels: Record<string, unknown>[] = [];
  let id = 1;
  let y = 0;
  for (const [title, specs] of sections) {
    panels.push(row(title, id++, y++));
    specs.forEach((p, i) => {
      panels.push(panel(p, id++, (i % 2) * 12, y + Math.floor(i / 2) * 8));
    });
    y += Math.ceil(specs.length / 2) * 8;
  }
  return {
    __inputs: [
      {
        name: "DS_PROMETHEUS",
        label: "Prometheus",
        description: "The Prometheus that scrapes the graph's replicas",
        type: "datasource",
        pluginId: "prometheus",
        pluginName: "Prometheus",
      },
    ],
    __requires: [
      { type: "grafana", id: "grafana", name: "Grafana", version: "10.0.0" },
      { type: "datasource", id: "prometheus", name: "Prometheus", version: "1.0.0" },
      { type: "panel", id: "timeseries", name: "Time series", version: "" },
    ],
    uid: `servegraph-${graph.name}`.slice(0, 40),
    title: `servegraph: ${graph.name}`,
    description: `Nodes ${nodes.join(", ")}: written by servegraph manifests from graph.config.ts.`,
    tags: ["servegraph"],
    editable: true,
    schemaVersion: 39,
    version: 1,
    time: { from: "now-1h", to: "now" },
    refresh: "30s",
    templating: {
      list: [
        {
          name: "node",
          label: "node",
          type: "query",
          datasource: DS,
          query: { query: "label_values(sg_replicas, node)", refId: "node" },
          definition: "label_values(sg_replicas, node)",
          refresh: 2,
          multi: true,
          includeAll: true,
          allValue: ".*",
          current: { selected: true, text: ["All"], value: ["$__all"] },
          sort: 1,
        },
      ],
    },
    annotations: { list: [] },
    panels,
  };
}
