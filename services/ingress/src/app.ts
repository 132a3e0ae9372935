/**
 * The HTTP face of the graph: Fastify 5 routes mapped to NATS requests, zod schemas for validation and
 * OpenAPI (browsable at /docs), and one error shape for every failure: `{ code, message, details? }` with
 * the status from the error table. buildApp() does not listen: tests drive it with inject().
 */
import { createHash, timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyRequest } from "fastify";
import { context, type Context, type Span } from "@opentelemetry/api";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { jsonSchemaTransform, serializerCompiler, validatorCompiler, type ZodTypeProvider } from "fastify-type-provider-zod";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { z } from "zod";
import client from "prom-client";
import {
  AbProcess, Classify, DEFAULT_TOP_K, ErrorCodes, GraphError, Greeting, Headers, InferLabels, MAX_MESSAGE_LENGTH, MAX_NAME_LENGTH, MAX_USER_KEY_LENGTH,
  TopK, codeForStatus, type ErrorCode,
} from "../../../subjects/index.ts";
import {
  MS_BUCKETS, endHttpServerSpan, metrics, metricsText, observeReplicas, registry, startHttpServerSpan, type Client, type Logger,
} from "../../../runtime/index.ts";
import { fetchImage } from "./fetch-image.ts";

/** Target subjects of the ingress's routes; a route whose subject is undefined is not served. */
export interface IngressRoutes {
  greeting?: { subject: string; node: string; timeoutMs: number };
  classify?: { subject: string; node: string; timeoutMs: number };
  labels?: { subject: string; node: string; timeoutMs: number };
  process?: { subject: string; node: string; timeoutMs: number };
}

export interface IngressDeps {
  client: Client;
  routes: IngressRoutes;
  /** Number of replicas answering $SRV.PING for a node (0 when none). */
  countReplicas: (node: string) => Promise<number>;
  maxBodyBytes: number;
  imageFetchTimeoutMs: number;
  allowPrivateImageUrls: boolean;
  log?: Logger;
  version?: string;
  /** When set (requiresAuth), every route but health, metrics and docs needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
}

const OPEN_ROUTES = /^\/(healthz|readyz|metrics)(\?|$)|^\/docs(\/|\?|$)/;

/** Constant-time comparison of a presented bearer token with the key (digests have equal length). */
function bearerMatches(header: string | undefined, key: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? "");
  if (!m) return false;
  const a = createHash("sha256").update(m[1]!.trim()).digest();
  const b = createHash("sha256").update(key).digest();
  return timingSafeEqual(a, b);
}

const ErrorReply = z
  .object({ code: z.enum(Object.keys(ErrorCodes) as [ErrorCode, ...ErrorCode[]]), message: z.string(), details: z.unknown().optional() })
  .describe("Every error: `code` is one of docs/errors.md.");
/** Every status the error table can produce, for the OpenAPI document. */
const errorResponses = Object.fromEntries([...new Set(Object.values(ErrorCodes).map((c) => c.status))].map((s) => [s, ErrorReply]));

const IMAGE_CONTENT_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif", "image/avif", "image/tiff", "image/*", "application/octet-stream"];

const httpDuration = new client.Histogram({
  name: "sg_http_request_duration_ms",
  help: "HTTP requests at the ingress by route, method and status.",
  labelNames: ["route", "method", "status"] as const,
  buckets: MS_BUCKETS,
  registers: [registry],
});

const DRAIN_CAP_BYTES = 64 * 1024 * 1024;
const DRAIN_TIMEOUT_MS = 5000;

function drainRequest(raw: NodeJS.ReadableStream & { complete: boolean; destroy(): void }, capBytes: number, timeoutMs: number): Promise<void> {
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

function fastifyToGraphError(err: FastifyError): GraphError {
  if (err instanceof GraphError) return err;
  if (hasZodFastifySchemaValidationErrors(err)) {
    const issues = err.validation.map((v) => ({ path: v.instancePath, message: v.message }));
    return new GraphError("BAD_REQUEST", `${err.validationContext ?? "request"}${issues[0]?.path ?? ""}: ${issues[0]?.message ?? "invalid"}`, { details: issues });
  }
  switch (err.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE": return new GraphError("PAYLOAD_TOO_LARGE", "request body is too large");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE": return new GraphError("UNSUPPORTED_MEDIA_TYPE", "unsupported Content-Type; send application/json or an image (image/*, application/octet-stream)");
    case "FST_ERR_CTP_EMPTY_JSON_BODY": return new GraphError("BAD_REQUEST", "empty JSON body");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH": return new GraphError("BAD_REQUEST", "invalid Content-Length");
  }
  // Anything else Fastify raises maps by its status through the one table.
  const code = codeForStatus(err.statusCode ?? 500);
  return code === "INTERNAL" ? new GraphError("INTERNAL", "internal error", { cause: err }) : new GraphError(code, err.message);
}

/** Routes that get no span: scrapes, probes and the docs UI would drown the real traffic. */
const UNTRACED = /^\/(metrics|healthz|docs)(\/|$)/;

/**
 * One HTTP SERVER span per request (`GET /greeting/:name`, child of an incoming `traceparent`), active while
 * the route handler runs, so the handler's NATS client spans are its children; plus the HTTP in-flight gauge.
 * The context is entered by wrapping each route handler (onRoute): a context entered in an onRequest hook
 * would not survive Fastify's body parsing.
 *
 * Not @fastify/otel: it makes INTERNAL spans per hook and handler and leaves the SERVER span to
 * @opentelemetry/instrumentation-http, which monkey-patches node:http; the two would add dependencies and a span
 * per hook where this is one SERVER span per request with the HTTP semantic-convention attributes.
 */
function observeHttp(app: FastifyInstance): void {
  const live = new WeakMap<FastifyRequest, { span: Span; ctx: Context; errorCode: string | undefined }>();
  app.addHook("onRoute", (route) => {
    if (UNTRACED.test(route.url)) return;
    const handler = route.handler;
    route.handler = function (this: FastifyInstance, req, reply) {
      const ctx = live.get(req)?.ctx;
      return ctx ? context.with(ctx, handler, this, req, reply) : handler.call(this, req, reply);
    };
  });
  app.addHook("onRequest", async (req) => {
    const route = req.routeOptions.url;
    if (route !== undefined && UNTRACED.test(route)) return;
    metrics.httpInFlight.inc();
    const q = req.url.indexOf("?");
    const { span, ctx } = startHttpServerSpan({
      method: req.method, route, path: q < 0 ? req.url : req.url.slice(0, q), scheme: req.protocol, headers: req.headers, userAgent: req.headers["user-agent"],
    });
    live.set(req, { span, ctx, errorCode: undefined });
  });
  app.addHook("onError", async (req, _reply, err) => {
    const t = live.get(req);
    if (t) t.errorCode = fastifyToGraphError(err).code;
  });
  // Runs once per request: on the response, or on a client abort when no response will come.
  const finish = (req: FastifyRequest, statusCode: number | undefined): void => {
    const t = live.get(req);
    if (!t) return;
    live.delete(req);
    metrics.httpInFlight.dec();
    endHttpServerSpan(t.span, statusCode, statusCode === undefined ? "aborted" : t.errorCode);
  };
  app.addHook("onResponse", async (req, reply) => finish(req, reply.statusCode));
  app.addHook("onRequestAbort", async (req) => finish(req, undefined));
}

export async function buildApp(deps: IngressDeps): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    bodyLimit: deps.maxBodyBytes,
    return503OnClosing: true,
    forceCloseConnections: "idle",
    routerOptions: { maxParamLength: 2048 },
  }).withTypeProvider<ZodTypeProvider>();
  observeHttp(app);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_req, body, done) => {
    if (body === "") return done(new GraphError("BAD_REQUEST", "empty JSON body") as unknown as FastifyError, undefined);
    try {
      done(null, JSON.parse(body as string));
    } catch {
      done(new GraphError("BAD_REQUEST", "request body is not valid JSON") as unknown as FastifyError, undefined);
    }
  });
  app.addContentTypeParser(IMAGE_CONTENT_TYPES, { parseAs: "buffer" }, (_req, body, done) => done(null, body));
  app.addContentTypeParser(/^image\//, { parseAs: "buffer" }, (_req, body, done) => done(null, body));

  await app.register(swagger, {
    openapi: {
      info: { title: "servegraph ingress", description: "HTTP way into the serving graph. Every error is `{code, message, details?}`; codes are listed in docs/errors.md.", version: deps.version ?? "0.1.0" },
    },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });

  app.setErrorHandler(async (err: FastifyError, req, reply) => {
    const ge = fastifyToGraphError(err);
    if (ge.code === "UNAUTHENTICATED") void reply.header("www-authenticate", "Bearer");
    if (ge.code === "PAYLOAD_TOO_LARGE" && !req.raw.complete) {
      // Read and discard the rest of the upload (bounded) so the client sees the 413, not a reset socket.
      await drainRequest(req.raw, DRAIN_CAP_BYTES, DRAIN_TIMEOUT_MS);
      void reply.header("connection", "close");
    }
    if (ge.status >= 500 && ge.code === "INTERNAL") deps.log?.error("request failed", { route: req.routeOptions.url, error: err.stack ?? err.message });
    void reply.status(ge.status).header("content-type", "application/json; charset=utf-8").send(JSON.stringify(ge.toJSON()));
  });
  app.setNotFoundHandler((req, reply) => {
    const ge = new GraphError("NOT_FOUND", `no route ${req.method} ${req.url.split("?")[0]}`);
    void reply.status(ge.status).send(ge.toJSON());
  });
  app.addHook("onResponse", async (req, reply) => {
    httpDuration.labels(req.routeOptions.url ?? "unmatched", req.method, String(reply.statusCode)).observe(reply.elapsedTime);
  });

  const apiKey = deps.apiKey;
  if (apiKey) {
    // onRequest runs before the body is read: an unauthenticated upload is refused without buffering it.
    app.addHook("onRequest", async (req) => {
      if (OPEN_ROUTES.test(req.url) || bearerMatches(req.headers.authorization, apiKey)) return;
      throw new GraphError("UNAUTHENTICATED", "missing or invalid Authorization: Bearer <key>");
    });
  }

  const edges = Object.values(deps.routes).filter((r): r is NonNullable<typeof r> => r !== undefined);
  const edgeNodes = [...new Set(edges.map((e) => e.node))];
  observeReplicas(async () => Object.fromEntries(await Promise.all(edgeNodes.map(async (n) => [n, await deps.countReplicas(n).catch(() => 0)] as const))));

  app.get("/healthz", { schema: { hide: true } }, async () => ({ status: "ok" }));
  app.get("/readyz", { schema: { description: "Ready when every downstream node of the ingress has at least one replica.", response: { 200: z.object({ status: z.literal("ready"), replicas: z.record(z.string(), z.number()) }), 503: ErrorReply } } },
    async (_req, reply) => {
      const nodes = [...new Set(edges.map((e) => e.node))];
      const counts = await Promise.all(nodes.map(async (n) => [n, await deps.countReplicas(n).catch(() => 0)] as const));
      const replicas = Object.fromEntries(counts);
      const missing = counts.filter(([, c]) => c === 0).map(([n]) => n);
      if (missing.length) {
        return reply.status(503).send({ code: "UNAVAILABLE", message: `no replica of ${missing.join(", ")}`, details: { replicas } });
      }
      return { status: "ready" as const, replicas };
    });
  app.get("/metrics", { schema: { hide: true } }, async (_req, reply) => {
    const { contentType, body } = await metricsText();
    return reply.header("content-type", contentType).send(body);
  });

  const deadline = (timeoutMs: number): number => Date.now() + timeoutMs;

  const greeting = deps.routes.greeting;
  if (greeting) {
    app.get("/greeting/:name", {
      schema: {
        description: "Two-node chain: ingress -> greeter-proxy -> greeter.",
        params: z.object({ name: z.string().min(1).max(MAX_NAME_LENGTH) }),
        response: { 200: Greeting.reply.schema, ...errorResponses },
      },
    }, async (req) => deps.client.call(Greeting, greeting.subject, { name: req.params.name }, { deadlineEpochMs: deadline(greeting.timeoutMs) }));
  }

  const classify = deps.routes.classify;
  if (classify) {
    // The endpoint's definition checks the image (empty, media type, top_k) before it leaves the ingress.
    const classifyBytes = (data: Uint8Array, topK: number, contentType: string | undefined) =>
      deps.client.call(Classify, classify.subject, { data, headers: { [Headers.TopK]: topK, [Headers.ContentType]: contentType } }, { deadlineEpochMs: deadline(classify.timeoutMs) });
    app.post("/classify", {
      schema: {
        description: "Classify an image: JSON `{image_url, top_k}` (the URL is fetched by the ingress: http(s) to public addresses only), or the raw image as the body (image/*, application/octet-stream) with `?top_k=`.",
        querystring: z.object({ top_k: TopK.default(DEFAULT_TOP_K) }),
        // Buffer first: zod tries the options in order, and a strictObject check of a Buffer visits every
        // byte as a key (~30 ms of CPU per 100 KB image). The JSON errors are the same either way.
        body: z.union([
          z.instanceof(Buffer).describe("raw image bytes"),
          z.strictObject({ image_url: z.string().min(1).max(4096), top_k: TopK.default(DEFAULT_TOP_K) }),
        ]).optional(),
        response: { 200: Classify.reply.schema, ...errorResponses },
      },
    }, async (req) => {
      const body = req.body;
      if (body === undefined || body === null) throw new GraphError("BAD_REQUEST", "send JSON {image_url, top_k} or an image body");
      if (Buffer.isBuffer(body)) return classifyBytes(body, req.query.top_k, req.headers["content-type"]);
      const { image_url, top_k } = body as { image_url: string; top_k: number };
      const img = await fetchImage(image_url, {
        maxBytes: deps.maxBodyBytes, timeoutMs: deps.imageFetchTimeoutMs, allowPrivateAddresses: deps.allowPrivateImageUrls,
      });
      return classifyBytes(img.bytes, top_k, img.contentType);
    });
  }

  const labels = deps.routes.labels;
  if (labels) {
    app.get("/labels", { schema: { description: "The model's class labels, index = output row.", response: { 200: InferLabels.reply.schema, ...errorResponses } } },
      async () => deps.client.call(InferLabels, labels.subject, undefined, { deadlineEpochMs: deadline(labels.timeoutMs) }));
  }

  const ab = deps.routes.process;
  if (ab) {
    app.get("/process/:message", {
      schema: {
        description: "A/B routing: the router picks variant A or B for `user_key` (Statsig gate) and forwards the message.",
        params: z.object({ message: z.string().max(MAX_MESSAGE_LENGTH) }),
        querystring: z.object({ user_key: z.string().min(1, "user_key is required").max(MAX_USER_KEY_LENGTH) }),
        response: { 200: AbProcess.reply.schema, ...errorResponses },
      },
    }, async (req) => deps.client.call(AbProcess, ab.subject, { message: req.params.message, user_key: req.query.user_key }, { deadlineEpochMs: deadline(ab.timeoutMs) }));
  }

  return app;
}
