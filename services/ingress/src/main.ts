/**
 * ingress: the HTTP way in. Serves the routes whose target node is part of the running graph
 * (SG_ACTIVE_NODES, set by `servegraph up`; all routes when unset). On SIGTERM Fastify closes first
 * (new requests get 503, in-flight ones finish), then the NATS connection drains.
 */
import { NodeConfigError, countReplicas, isConnected, runNode } from "../../../runtime/index.ts";
import { buildApp, type IngressRoutes } from "./app.ts";
import Params from "./params.ts";

await runNode(async (ctx) => {
  const active = ctx.launch.activeNodes;
  const route = (subject: string | undefined) => {
    if (subject === undefined) return undefined;
    const node = subject.slice(ctx.graph.subjectPrefix.length + 1).split(".")[0]!;
    if (active && !active.has(node)) return undefined;
    const target = ctx.graph.nodes[node];
    return { subject, node, timeoutMs: target?.timeoutMs ?? ctx.node.timeoutMs };
  };
  const routes: IngressRoutes = {};
  const p = ctx.params;
  for (const [k, subject] of [["greeting", p.GREETING_SUBJECT], ["classify", p.CLASSIFY_SUBJECT], ["labels", p.LABELS_SUBJECT], ["process", p.PROCESS_SUBJECT]] as const) {
    const r = route(subject);
    if (r) routes[k] = r;
  }
  let apiKey: string | undefined;
  if (ctx.node.requiresAuth) {
    apiKey = ctx.secret("API_KEY");
    if (!apiKey) throw new NodeConfigError("requiresAuth is set but the API_KEY secret is empty (set SERVEGRAPH_API_KEY or /run/secrets/servegraph-api-key)");
  }
  const app = await buildApp({
    ...(apiKey ? { apiKey } : {}),
    client: ctx.client,
    routes,
    countReplicas: (node) => countReplicas(ctx.nc, node, 150),
    isConnected: () => isConnected(ctx.nc),
    timeouts: {
      headersTimeoutMs: p.HEADERS_TIMEOUT_MS,
      requestTimeoutMs: p.REQUEST_TIMEOUT_MS,
      connectionTimeoutMs: p.CONNECTION_TIMEOUT_MS,
      keepAliveTimeoutMs: p.KEEP_ALIVE_TIMEOUT_MS,
    },
    maxBodyBytes: p.MAX_BODY_BYTES,
    imageFetchTimeoutMs: p.IMAGE_FETCH_TIMEOUT_MS,
    allowPrivateImageUrls: p.ALLOW_PRIVATE_IMAGE_URLS,
    log: ctx.log,
  });
  const port = ctx.launch.httpPort ?? ctx.node.http?.port ?? 8080;
  const host = ctx.launch.httpHost ?? ctx.node.http?.host ?? "127.0.0.1";
  const address = await app.listen({ port, host });
  ctx.metadata.http_url = address;
  ctx.metadata.metrics_url = `${address}/metrics`;
  ctx.log.info("listening", { url: address, routes: Object.keys(routes).join(",") });
  ctx.beforeStop(() => app.close());
}, { params: Params, metricsServer: false });
