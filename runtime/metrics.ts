/**
 * Prometheus metrics of one process (prom-client). Every process serves them at /metrics: the ingress on its
 * HTTP port, nodes on their own small metrics port (advertised in $SRV.INFO metadata as `metrics_url`).
 */
import { createServer, type Server } from "node:http";
import client from "prom-client";

export const registry = new client.Registry();

/** Latency buckets in milliseconds, from sub-millisecond NATS hops to long inference waits. */
export const MS_BUCKETS = [0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000, 5000, 10000, 30000];

export const metrics = {
  serverDuration: new client.Histogram({
    name: "sg_server_request_duration_ms",
    help: "Time to handle one request on the callee side, by endpoint and outcome code (OK or an error code).",
    labelNames: ["node", "endpoint", "code"] as const,
    buckets: MS_BUCKETS,
    registers: [registry],
  }),
  clientDuration: new client.Histogram({
    name: "sg_client_request_duration_ms",
    help: "Time of one NATS request on the caller side, per edge (caller node -> subject) and outcome code.",
    labelNames: ["caller", "subject", "code"] as const,
    buckets: MS_BUCKETS,
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

let defaultsOn = false;
export function enableDefaultMetrics(labels: Record<string, string>): void {
  if (defaultsOn) return;
  defaultsOn = true;
  registry.setDefaultLabels(labels);
  client.collectDefaultMetrics({ register: registry, prefix: "sg_" }); // sg_process_cpu_seconds_total, sg_nodejs_heap_size_used_bytes...
}

export async function metricsText(): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}

/** Serves GET /metrics on host:port (port 0 picks a free one). Resolves with the URL. */
export async function startMetricsServer(port: number, host = "127.0.0.1"): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    if (req.method === "GET" && (req.url === "/metrics" || req.url?.startsWith("/metrics?"))) {
      metricsText().then(
        ({ contentType, body }) => { res.writeHead(200, { "content-type": contentType }); res.end(body); },
        () => { res.writeHead(500); res.end(); },
      );
    } else {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: "NOT_FOUND", message: "only GET /metrics here" }));
    }
  });
  await new Promise<void>((resolve, reject) => { server.once("error", reject); server.listen(port, host, resolve); });
  const addr = server.address();
  const p = typeof addr === "object" && addr ? addr.port : port;
  server.unref();
  return { url: `http://${host}:${p}/metrics`, server };
}
