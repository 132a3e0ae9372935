/**
 * The HTTP face of the graph: Fastify 5 routes mapped to NATS requests, zod schemas for validation and
 * OpenAPI (browsable at /docs), and one error shape for every failure: `{ code, message, details? }` with
 * the status from the error table. buildApp() does not listen: tests drive it with inject().
 *
 * Around the routes: http-server.ts (timeouts, the HTTP parser's errors, shutdown), http-errors.ts (Fastify's
 * errors, 404/405, the OpenAPI error responses) and http-observe.ts (spans and metrics). GET /dashboard, the live
 * page of the graph, is dashboard/routes.ts; /classify answers with `Server-Timing` per hop (server-timing.ts).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from "fastify";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import {
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from "fastify-type-provider-zod";
import { z } from "zod";
import { basename } from "node:path";
import { GraphError, Headers, endpointDef, type EndpointDef, type ErrorCode } from "../../../subjects/index.ts";
import {
  metricsText,
  objectShape,
  observeReplicas,
  type Client,
  type Logger,
  type ResolvedGraph,
  type ResolvedNode,
  type RouteBody,
  type RouteMethod,
} from "../../../runtime/index.ts";
import { registerDashboard, type DashboardDeps } from "./dashboard/index.ts";
import { fetchImage } from "./fetch-image.ts";
import {
  BODY_CODES,
  EDGE_CODES,
  MAX_PARAM_LENGTH,
  PARAM_CODES,
  callCodes,
  createMethodIndex,
  errorResponses,
  frameworkErrors,
  notFound,
  sendError,
  httpErrorToGraphError,
} from "./http-errors.ts";
import { observeHttp } from "./http-observe.ts";
import { DEFAULT_TIMEOUTS, guardRequests, guardServer, serverOptions, type IngressTimeouts } from "./http-server.ts";
import { serverTimingOf } from "./server-timing.ts";
import { IMAGE_CONTENT_TYPES } from "./image-body.ts";

export type { DashboardDeps, IngressTimeouts };

/**
 * A route the ingress serves: a route declared in graph.config.ts (its HTTP node's `routes`), with its endpoint's
 * definition (subjects/registry.ts) and its target's deadline. What the ingress holds in code is how each kind of
 * request is built from HTTP, never a route of its own: see {@link registerRoute}.
 */
export interface IngressRoute {
  /** `"GET /greeting/:name"`: the dashboard's label of the edge, and the start-up banner's line. */
  readonly key: string;
  readonly method: RouteMethod;
  readonly path: string;
  readonly params: readonly string[];
  readonly node: string;
  readonly subject: string;
  readonly timeoutMs: number;
  readonly def: EndpointDef;
  readonly body: RouteBody | "none";
  readonly description?: string;
}

/** The routes of a resolved HTTP node whose targets are running (`active`; all when undefined) and defined. */
export function ingressRoutesOf(
  graph: ResolvedGraph,
  node: ResolvedNode,
  active?: ReadonlySet<string>,
): IngressRoute[] {
  const out: IngressRoute[] = [];
  for (const r of node.routes) {
    if (active && !active.has(r.node)) continue;
    const target = graph.nodes[r.node];
    const def = target && endpointDef(basename(target.service), r.endpoint);
    if (!def) continue; // refused by check; nothing to serve it with
    out.push({ ...r, def, timeoutMs: target.timeoutMs });
  }
  return out;
}

/**
 * The query parameter that carries a bytes endpoint's header: `Graph-Top-K` -> `top_k` (the `Graph-` prefix off,
 * lower case, dashes to underscores). Content-Type comes from the HTTP request's own.
 */
export function queryNameOf(header: string): string {
  return header
    .replace(/^Graph-/i, "")
    .toLowerCase()
    .replace(/-/g, "_");
}

export interface IngressDeps {
  client: Client;
  routes: readonly IngressRoute[];
  /** Number of replicas answering $SRV.PING for a node (0 when none). */
  countReplicas: (node: string) => Promise<number>;
  maxBodyBytes: number;
  imageFetchTimeoutMs: number;
  allowPrivateImageUrls: boolean;
  /** Whether the ingress's NATS connection is up right now (runtime `isConnected`): /readyz is 503 while it is not. */
  isConnected: () => boolean;
  /** How long the server waits on clients (params.ts); each one left out has its parameter's default. */
  timeouts?: Partial<IngressTimeouts>;
  log?: Logger;
  version?: string;
  /** When set (requiresAuth), every route but health, metrics and docs needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** When set, GET /dashboard and its event stream are served. */
  dashboard?: DashboardDeps;
}

const OPEN_ROUTES = /^\/(healthz|readyz|metrics)(\?|$)|^\/docs(\/|\?|$)/;

const sha256 = (s: string): Buffer => createHash("sha256").update(s).digest();

/** Constant-time comparison of a presented bearer token with the key's digest (digests have equal length). */
function bearerMatches(header: string | undefined, keyDigest: Buffer): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? "");
  if (!m) return false;
  return timingSafeEqual(sha256(m[1]!.trim()), keyDigest);
}

/** Codes of fetching an `image_url` (fetch-image.ts). */
const FETCH_CODES: readonly ErrorCode[] = [
  "BAD_REQUEST",
  "URL_NOT_ALLOWED",
  "UPSTREAM_FETCH_FAILED",
  "DEADLINE_EXCEEDED",
  "PAYLOAD_TOO_LARGE",
];

const DRAIN_CAP_BYTES = 64 * 1024 * 1024;
const DRAIN_TIMEOUT_MS = 5000;

function drainRequest(
  raw: NodeJS.ReadableStream & { complete: boolean; destroy(): void },
  capBytes: number,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const finish = (): void => {
      clearTimeout(timer);
      raw.removeListener("data", onData);
      raw.removeListener("end", finish);
      raw.removeListener("error", finish);
      resolve();
    };
    const onData = (chunk: Buffer): void => {
      seen += chunk.length;
      if (seen > capBytes) finish();
    };
    const timer = setTimeout(finish, timeoutMs);
    raw.on("data", onData);
    raw.once("end", finish);
    raw.once("error", finish);
    raw.resume();
  });
}

export async function buildApp(deps: IngressDeps): Promise<FastifyInstance> {
  const timeouts: IngressTimeouts = { ...DEFAULT_TIMEOUTS, ...deps.timeouts };
  const app = Fastify({
    logger: false,
    bodyLimit: deps.maxBodyBytes,
    forceCloseConnections: "idle",
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    frameworkErrors,
    ...serverOptions(timeouts),
  }).withTypeProvider<ZodTypeProvider>();
  const methods = createMethodIndex();
  app.addHook("onRoute", (route) => methods.add(route));
  guardServer(app, timeouts);
  observeHttp(app);
  guardRequests(app);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_req, body, done) => {
    if (body === "")
      return done(new GraphError("BAD_REQUEST", "empty JSON body") as unknown as FastifyError, undefined);
    try {
      done(null, JSON.parse(body as string));
    } catch {
      done(new GraphError("BAD_REQUEST", "request body is not valid JSON") as unknown as FastifyError, undefined);
    }
  });
  app.addContentTypeParser([...IMAGE_CONTENT_TYPES], { parseAs: "buffer" }, (_req, body, done) => done(null, body));
  app.addContentTypeParser(/^image\//, { parseAs: "buffer" }, (_req, body, done) => done(null, body));

  await app.register(swagger, {
    openapi: {
      info: {
        title: "servegraph ingress",
        description:
          "HTTP way into the serving graph. Every error is `{code, message, details?}` with the status of its code (docs/errors.md); each operation lists the statuses it can answer. Any path may also answer 404 NOT_FOUND, or 405 METHOD_NOT_ALLOWED with `Allow` for a method it does not serve.",
        version: deps.version ?? "0.1.0",
      },
    },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });

  app.setErrorHandler(async (err: FastifyError, req, reply) => {
    const ge = httpErrorToGraphError(err);
    if (ge.code === "PAYLOAD_TOO_LARGE" && !req.raw.complete) {
      // Read and discard the rest of the upload (bounded) so the client sees the 413, not a reset socket.
      await drainRequest(req.raw, DRAIN_CAP_BYTES, DRAIN_TIMEOUT_MS);
      void reply.header("connection", "close");
    }
    if (ge.code === "INTERNAL")
      deps.log?.error("request failed", { route: req.routeOptions.url, error: err.stack ?? err.message });
    void sendError(reply, ge);
  });
  app.setNotFoundHandler(notFound(methods));

  const apiKey = deps.apiKey;
  if (apiKey) {
    const keyDigest = sha256(apiKey);
    // onRequest runs before the body is read: an unauthenticated upload is refused without buffering it.
    app.addHook("onRequest", async (req) => {
      if (OPEN_ROUTES.test(req.url) || bearerMatches(req.headers.authorization, keyDigest)) return;
      throw new GraphError("UNAUTHENTICATED", "missing or invalid Authorization: Bearer <key>");
    });
  }

  const edgeNodes = [...new Set(deps.routes.map((e) => e.node))];
  /** Replicas of each downstream node (0 when the count fails). */
  const replicaCounts = () =>
    Promise.all(edgeNodes.map(async (n) => [n, await deps.countReplicas(n).catch(() => 0)] as const));
  observeReplicas(async () => Object.fromEntries(await replicaCounts()));

  /** Error responses of a route in the OpenAPI document: what any request may get, plus `codes`. */
  const errors = (open: boolean, ...codes: (readonly ErrorCode[])[]) =>
    errorResponses([...EDGE_CODES, ...(apiKey && !open ? ["UNAUTHENTICATED" as const] : []), ...codes.flat()]);

  app.get(
    "/healthz",
    {
      schema: {
        description:
          "Liveness: 200 while the ingress process runs and serves HTTP. It checks neither NATS nor the graph (that is /readyz): a broker outage makes the ingress unready, it does not make it restart.",
        response: { 200: z.object({ status: z.literal("ok") }), ...errors(true) },
      },
    },
    async () => ({ status: "ok" as const }),
  );
  app.get(
    "/readyz",
    {
      schema: {
        description:
          "Readiness: 200 when the ingress's NATS connection is up and every downstream node of the ingress has at least one replica; otherwise 503 UNAVAILABLE.",
        response: {
          200: z.object({ status: z.literal("ready"), replicas: z.record(z.string(), z.number()) }),
          ...errors(true),
        },
      },
    },
    async () => {
      if (!deps.isConnected()) throw new GraphError("UNAVAILABLE", "the ingress is not connected to NATS");
      const counts = await replicaCounts();
      const replicas = Object.fromEntries(counts);
      const missing = counts.filter(([, c]) => c === 0).map(([n]) => n);
      if (missing.length)
        throw new GraphError("UNAVAILABLE", `no replica of ${missing.join(", ")}`, { details: { replicas } });
      return { status: "ready" as const, replicas };
    },
  );
  app.get("/metrics", { schema: { hide: true } }, async (_req, reply) => {
    const { contentType, body } = await metricsText();
    return reply.header("content-type", contentType).send(body);
  });

  for (const route of deps.routes) registerRoute(app, route, deps, errors);

  if (deps.dashboard) registerDashboard(app, deps.dashboard, errors(false));

  return app;
}

type App = FastifyInstance & { withTypeProvider: FastifyInstance["withTypeProvider"] };
type ErrorsOf = (open: boolean, ...codes: (readonly ErrorCode[])[]) => ReturnType<typeof errorResponses>;

/**
 * Serves one declared route: the endpoint's request is built from the HTTP request by the kind of its payload and
 * the route's `body`, checked by the Fastify schema made from the endpoint's own (so /docs shows exactly what is
 * accepted), sent with the route's deadline, and the reply (JSON) is the answer, with `Server-Timing` per hop.
 *
 * - JSON endpoint: its request object's fields come from the path parameters, then the query string (body
 *   `none`, the default of GET and DELETE) or the JSON body (`json`, the default of POST, PUT and PATCH).
 * - bytes endpoint: the raw body (`raw`) and its headers from the query string (`Graph-Top-K` from `?top_k=`,
 *   {@link queryNameOf}) and Content-Type; `image` also takes JSON `{image_url, <those fields>}` and fetches the URL.
 */
function registerRoute(app: FastifyInstance, route: IngressRoute, deps: IngressDeps, errors: ErrorsOf): void {
  const { def } = route;
  const description = route.description ?? def.description;
  const codes = [
    ...(route.params.length ? PARAM_CODES : []),
    ...(route.body !== "none" ? BODY_CODES : []),
    ...(route.body === "image" ? FETCH_CODES : []),
    ...callCodes(def),
  ];
  const response = { ...(def.reply.kind === "json" ? { 200: def.reply.schema } : {}), ...errors(false, codes) };
  const deadline = (): number => Date.now() + route.timeoutMs;
  const call = async (reply: FastifyReply, input: unknown): Promise<unknown> => {
    let timing: string | undefined;
    const t0 = performance.now();
    const out = await deps.client.call(def, route.subject, input as never, {
      deadlineEpochMs: deadline(),
      onReplyHeaders: (h) => void (timing = h(Headers.ServerTiming)),
    });
    void reply.header("server-timing", serverTimingOf(route.node, reply.elapsedTime, performance.now() - t0, timing));
    return out;
  };
  const typed = (app as App).withTypeProvider<ZodTypeProvider>();

  if (def.request.kind === "json") {
    const shape = objectShape(def.request.schema);
    const params =
      shape && route.params.length
        ? z.strictObject(Object.fromEntries(route.params.map((p) => [p, shape[p]!])))
        : undefined;
    const rest = shape
      ? Object.fromEntries(Object.entries(shape).filter(([k]) => !route.params.includes(k)))
      : undefined;
    const inQuery = route.body === "none" && rest && Object.keys(rest).length > 0;
    const bodySchema = route.body === "json" ? (shape ? z.strictObject(rest!) : def.request.schema) : undefined;
    typed.route({
      method: route.method,
      url: route.path,
      schema: {
        description,
        ...(params ? { params } : {}),
        ...(inQuery ? { querystring: z.object(rest!) } : {}),
        ...(bodySchema ? { body: bodySchema } : {}),
        response,
      },
      handler: async (req, reply) => {
        if (!shape) return call(reply, req.body);
        const fields: Record<string, unknown> = { ...(req.params as object) };
        const from = (route.body === "json" ? req.body : req.query) as Record<string, unknown> | undefined;
        for (const k of Object.keys(rest!)) if (from?.[k] !== undefined) fields[k] = from[k];
        return call(reply, Object.keys(shape).length === 0 ? undefined : fields);
      },
    });
    return;
  }

  if (def.request.kind !== "bytes")
    throw new Error(
      `route ${route.key}: ${def.service}.${def.name} takes ${def.request.kind}, which no HTTP route can build`,
    );
  const headerShape = objectShape(def.request.headers) ?? {};
  const fromQuery = Object.keys(headerShape).filter((h) => h.toLowerCase() !== Headers.ContentType.toLowerCase());
  const query = z.object(Object.fromEntries(fromQuery.map((h) => [queryNameOf(h), headerShape[h]!])));
  const headersOf = (values: Record<string, unknown>, contentType: string | undefined): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const h of fromQuery) if (values[queryNameOf(h)] !== undefined) out[h] = values[queryNameOf(h)];
    if (Headers.ContentType in headerShape) out[Headers.ContentType] = contentType;
    return out;
  };
  // Buffer first: zod tries the options in order, and a strictObject check of a Buffer visits every byte as a key
  // (~30 ms of CPU per 100 KB image). The JSON errors are the same either way.
  const body =
    route.body === "image"
      ? z
          .union([
            z.instanceof(Buffer).describe("raw image bytes"),
            z.strictObject({ image_url: z.string().min(1).max(4096), ...query.shape }),
          ])
          .optional()
      : z.instanceof(Buffer).describe("the raw body").optional();
  typed.route({
    method: route.method,
    url: route.path,
    schema: {
      description:
        route.body === "image"
          ? `${description} Send the raw image as the body (image/*, application/octet-stream) with the query parameters, or JSON \`{image_url, ...}\` with them as fields: the ingress fetches the URL (http(s) to public addresses only).`
          : description,
      querystring: query,
      body,
      response,
    },
    handler: async (req, reply) => {
      const b = req.body;
      if (b === undefined || b === null) {
        throw new GraphError(
          "BAD_REQUEST",
          route.body === "image" ? "send JSON {image_url, ...} or an image body" : "send the request as the body",
        );
      }
      if (Buffer.isBuffer(b))
        return call(reply, {
          data: b,
          headers: headersOf(req.query as Record<string, unknown>, req.headers["content-type"]),
        });
      const { image_url, ...fields } = b as { image_url: string } & Record<string, unknown>;
      const img = await fetchImage(image_url, {
        maxBytes: deps.maxBodyBytes,
        timeoutMs: deps.imageFetchTimeoutMs,
        allowPrivateAddresses: deps.allowPrivateImageUrls,
      });
      return call(reply, { data: img.bytes, headers: headersOf(fields, img.contentType) });
    },
  });
}
