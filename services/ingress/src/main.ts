/**
 * ingress: the HTTP way in. Serves the routes graph.config.ts declares for it (`routes`) whose target node is part
 * of the running graph (SG_ACTIVE_NODES, set by `servegraph up`; all routes when unset), and /dashboard, the live page of those nodes
 * (discovery of all of them, and the autoscaler of a `servegraph up` when it answers on sg.ops.autoscaler).
 * On SIGTERM Fastify closes first (new requests get 503, in-flight ones finish, dashboard streams end), then the
 * NATS connection drains.
 */
import { NodeConfigError, collectStatus, countReplicas, isConnected, runNode } from "../../../runtime/index.ts";
import { OPS_AUTOSCALER_SUBJECT, OpsAutoscaler } from "../../../subjects/index.ts";
import { buildApp, ingressRoutesOf } from "./app.ts";
import { topologyOf } from "./dashboard/index.ts";
import Params from "./params.ts";

/** How long the dashboard waits for discovery answers, and for the autoscaler's, per reading (one a second). */
const DISCOVERY_WINDOW_MS = 250;
const AUTOSCALER_TIMEOUT_MS = 500;
const AUTOSCALER_RETRY_MS = 30_000;

await runNode(
  async (ctx) => {
    const active = ctx.launch.activeNodes;
    // The routes graph.config.ts declares for this node, of the nodes that run (a route of a graph not started is not served).
    const routes = ingressRoutesOf(ctx.graph, ctx.node, active);
    const p = ctx.params;
    let apiKey: string | undefined;
    if (ctx.node.requiresAuth) {
      apiKey = ctx.secret("API_KEY");
      if (!apiKey)
        throw new NodeConfigError(
          "requiresAuth is set but the API_KEY secret is empty (set SERVEGRAPH_API_KEY or /run/secrets/servegraph-api-key)",
        );
    }
    const nodes = [...(active ?? Object.keys(ctx.graph.nodes))].filter((n) => ctx.graph.nodes[n] !== undefined);
    const topology = topologyOf(ctx.graph, {
      nodes,
      self: { node: ctx.node.name, routes: routes.map((r) => ({ label: r.key, node: r.node })) },
    });
    const natsUrl = ctx.nc.getServer();
    // `servegraph up`'s autoscaler, when an up with one runs this graph. No responder, an error reply (an up without
    // it) or a timeout (no permission, in a cluster): none, asked again only after AUTOSCALER_RETRY_MS.
    let autoscalerRetryAt = 0;
    const readAutoscaler = async (): Promise<unknown> => {
      if (Date.now() < autoscalerRetryAt) return undefined;
      try {
        return await ctx.client.call(OpsAutoscaler, OPS_AUTOSCALER_SUBJECT, {}, { timeoutMs: AUTOSCALER_TIMEOUT_MS });
      } catch {
        // none
      }
      autoscalerRetryAt = Date.now() + AUTOSCALER_RETRY_MS;
      return undefined;
    };
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
      dashboard: {
        topology,
        readStatus: () => collectStatus(ctx.nc, natsUrl, nodes, DISCOVERY_WINDOW_MS),
        readAutoscaler,
        self: { node: ctx.node.name, replicaId: ctx.replicaId },
        log: ctx.log,
      },
    });
    const port = ctx.launch.httpPort ?? ctx.node.http?.port ?? 8080;
    const host = ctx.launch.httpHost ?? ctx.node.http?.host ?? "127.0.0.1";
    const address = await app.listen({ port, host });
    ctx.metadata.http_url = address;
    ctx.metadata.metrics_url = `${address}/metrics`;
    ctx.log.info("listening", { url: address, routes: routes.map((r) => r.key).join(", ") });
    ctx.beforeStop(() => app.close());
  },
  { params: Params, metricsServer: false },
);
