/**
 * Prometheus metrics of one process (prom-client). Every process serves them at /metrics: the ingress on its
 * HTTP port, nodes on their own small metrics port (advertised in $SRV.INFO metadata as `metrics_url`).
 *
 * Names follow Prometheus's conventions, and `promtool check metrics` is the judge: base units in the name
 * (durations are `_seconds` histograms observed in seconds, while the code measures in ms), `_total` only on
 * counters. prom-client's default metrics are kept except its `nodejs_active_{handles,requests,resources}`
 * collectors, whose `_total` gauges break the second rule and cannot be renamed: their counts are exported here as
 * `sg_nodejs_active_handles`, `sg_nodejs_active_requests` and `sg_nodejs_active_resources`.
 */
import { createServer, type Server } from "node:http";
import client from "prom-client";

export const registry = new client.Registry();

/**
 * Latency buckets in seconds, from sub-millisecond NATS hops (0.25 ms) to long inference waits (30 s). Observe
 * `ms / 1000`.
 */
export const SECONDS_BUCKETS = [
  0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
  1, 2, 5, 10, 30,
];

export const metrics = {
  serverDuration: new client.Histogram({
    name: "sg_server_request_duration_seconds",
    help: "Time to handle one request on the callee side, by endpoint and outcome code (OK or an error code).",
    labelNames: ["node", "endpoint", "code"] as const,
    buckets: SECONDS_BUCKETS,
    registers: [registry],
  }),
  clientDuration: new client.Histogram({
    name: "sg_client_request_duration_seconds",
    help: "Time of one NATS request on the caller side, per edge (caller node -> subject) and outcome code.",
    labelNames: ["caller", "subject", "code"] as const,
    buckets: SECONDS_BUCKETS,
    registers: [registry],
  }),
  retries: new client.Counter({
    name: "sg_client_retries_total",
    help: "Requests sent again after their replica stopped answering, per edge, by reason and by the outcome of the retry (OK or an error code).",
    labelNames: ["caller", "subject", "reason", "outcome"] as const,
    registers: [registry],
  }),
  errors: new client.Counter({
    name: "sg_request_errors_total",
    help: "Error replies by node, endpoint and error code.",
    labelNames: ["node", "endpoint", "code"] as const,
    registers: [registry],
  }),
  inFlight: new client.Gauge({
    name: "sg_requests_in_flight",
    help: "Requests being handled by this replica.",
    labelNames: ["node"] as const,
    registers: [registry],
  }),
  replicas: new client.Gauge({
    name: "sg_replicas",
    help: "1 per running replica process, labelled with its node: sum by (node) over all targets counts replicas.",
    labelNames: ["node"] as const,
    registers: [registry],
  }),
  edgeReplicas: new client.Gauge({
    name: "sg_edge_replicas",
    help: "Replicas of each downstream node answering $SRV.PING, as seen by this process at scrape time (the ingress: its routes' nodes).",
    labelNames: ["target"] as const,
    registers: [registry],
    async collect() {
      if (!replicaSource) return;
      try {
        for (const [target, n] of Object.entries(await replicaSource())) this.labels(target).set(n);
      } catch {
        // discovery failed: keep the last values rather than fail the scrape
      }
    },
  }),
  httpInFlight: new client.Gauge({
    name: "sg_http_requests_in_flight",
    help: "HTTP requests being handled by this ingress replica (not counting /metrics, /healthz and /docs).",
    registers: [registry],
  }),
};

let replicaSource: (() => Promise<Record<string, number>>) | undefined;

/** Counts replicas of other nodes at scrape time (the ingress: its edges), reported as sg_edge_replicas{target}. */
export function observeReplicas(source: () => Promise<Record<string, number>>): void {
  replicaSource = source;
}

const PREFIX = "sg_";

/**
 * prom-client's collectors that each register a `nodejs_active_<x>` gauge by type and a `nodejs_active_<x>_total`
 * gauge (lib/metrics/process{Handles,Requests,Resources}.js): a `_total` gauge fails promtool, and the names cannot
 * be changed, so both are removed after collectDefaultMetrics (which registers every collector in one call).
 */
const DROPPED_DEFAULTS = ["handles", "requests", "resources"].flatMap((x) => [
  `${PREFIX}nodejs_active_${x}`,
  `${PREFIX}nodejs_active_${x}_total`,
]);

/** Node's undocumented counters, as prom-client reads them; each may be missing from a Node version. */
const nodeProcess = process as unknown as { _getActiveHandles?: () => unknown[]; _getActiveRequests?: () => unknown[] };

/** The counts of the dropped `_total` gauges, under names without `_total`, read at scrape time. */
function registerActiveGauges(): void {
  const gauges: [string, string, (() => number) | undefined][] = [
    [
      "handles",
      "Active libuv handles (sockets, timers, servers...) in this process.",
      nodeProcess._getActiveHandles && (() => nodeProcess._getActiveHandles!().length),
    ],
    [
      "requests",
      "Active libuv requests (file system, DNS...) in this process.",
      nodeProcess._getActiveRequests && (() => nodeProcess._getActiveRequests!().length),
    ],
    [
      "resources",
      "Active resources keeping the event loop alive in this process.",
      typeof process.getActiveResourcesInfo === "function" ? () => process.getActiveResourcesInfo().length : undefined,
    ],
  ];
  for (const [what, help, count] of gauges) {
    if (!count) continue;
    new client.Gauge({
      name: `${PREFIX}nodejs_active_${what}`,
      help,
      registers: [registry],
      collect() {
        this.set(count());
      },
    });
  }
}

let defaultsOn = false;
export function enableDefaultMetrics(labels: Record<string, string>): void {
  if (defaultsOn) return;
  defaultsOn = true;
  registry.setDefaultLabels(labels);
  client.collectDefaultMetrics({ register: registry, prefix: PREFIX }); // sg_process_cpu_seconds_total, sg_nodejs_heap_size_used_bytes...
  for (const name of DROPPED_DEFAULTS) registry.removeSingleMetric(name);
  registerActiveGauges();
}

export async function metricsText(): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}

/** Serves GET /metrics on host:port (port 0 picks a free one). Resolves with the URL. */
export async function startMetricsServer(port: number, host = "127.0.0.1"): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    if (req.method === "GET" && (req.url === "/metrics" || req.url?.startsWith("/metrics?"))) {
      metricsText().then(
        ({ contentType, body }) => {
          res.writeHead(200, { "content-type": contentType });
          res.end(body);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
    } else {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: "NOT_FOUND", message: "only GET /metrics here" }));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const addr = server.address();
  const p = typeof addr === "object" && addr ? addr.port : port;
  server.unref();
  return { url: `http://${host}:${p}/metrics`, server };
}
