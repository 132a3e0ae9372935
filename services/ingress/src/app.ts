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
import { jsonSchemaTransform, serializerCompiler, validatorCompiler, type ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import {
  AbProcess, Classify, DEFAULT_TOP_K, GraphError, Greeting, Headers, InferLabels, MAX_MESSAGE_LENGTH, MAX_NAME_LENGTH, MAX_USER_KEY_LENGTH,
  TopK, type ErrorCode,
} from "../../../subjects/index.ts";
import { metricsText, observeReplicas, type Client, type Logger } from "../../../runtime/index.ts";
import { registerDashboard, type DashboardDeps } from "./dashboard/index.ts";
import { fetchImage } from "./fetch-image.ts";
import {
  BODY_CODES, EDGE_CODES, MAX_PARAM_LENGTH, PARAM_CODES, callCodes, createMethodIndex, errorResponses, frameworkErrors, notFound, sendError, toGraphError,
} from "./http-errors.ts";
import { observeHttp } from "./http-observe.ts";
import { DEFAULT_TIMEOUTS, guardRequests, guardServer, serverOptions, type IngressTimeouts } from "./http-server.ts";
import { serverTimingOf } from "./server-timing.ts";

export type { DashboardDeps, IngressTimeouts };

/** Target subjects of the ingress's routes; a route whose subject is undefined is not served. */
export interface IngressRoutes {
  greeting?: { subject: string; node: string; timeoutMs: number };
  classify?: { subject: string; node: string; timeoutMs: number };
  labels?: { subject: string; node: string; timeoutMs: number };
  process?: { subject: string; node: string; timeoutMs: number };
}

/** Each route as the dashboard labels the ingress's edges. */
export const ROUTE_LABELS: Readonly<Record<keyof IngressRoutes, string>> = Object.freeze({
  greeting: "GET /greeting/:name",
  classify: "POST /classify",
  labels: "GET /labels",
  process: "GET /process/:message",
});

export interface IngressDeps {
  client: Client;
  routes: IngressRoutes;
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
const FETCH_CODES: readonly ErrorCode[] = ["BAD_REQUEST", "URL_NOT_ALLOWED", "UPSTREAM_FETCH_FAILED", "DEADLINE_EXCEEDED", "PAYLOAD_TOO_LARGE"];

const IMAGE_CONTENT_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif", "image/avif", "image/tiff", "image/*", "application/octet-stream"];

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
      info: { title: "servegraph ingress", description: "HTTP way into the serving graph. Every error is `{code, message, details?}` with the status of its code (docs/errors.md); each operation lists the statuses it can answer. Any path may also answer 404 NOT_FOUND, or 405 METHOD_NOT_ALLOWED with `Allow` for a method it does not serve.", version: deps.version ?? "0.1.0" },
    },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });

  app.setErrorHandler(async (err: FastifyError, req, reply) => {
    const ge = toGraphError(err);
    if (ge.code === "PAYLOAD_TOO_LARGE" && !req.raw.complete) {
      // Read and discard the rest of the upload (bounded) so the client sees the 413, not a reset socket.
      await drainRequest(req.raw, DRAIN_CAP_BYTES, DRAIN_TIMEOUT_MS);
      void reply.header("connection", "close");
    }
    if (ge.code === "INTERNAL") deps.log?.error("request failed", { route: req.routeOptions.url, error: err.stack ?? err.message });
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

  const edges = Object.values(deps.routes).filter((r): r is NonNullable<typeof r> => r !== undefined);
  const edgeNodes = [...new Set(edges.map((e) => e.node))];
  /** Replicas of each downstream node (0 when the count fails). */
  const replicaCounts = () => Promise.all(edgeNodes.map(async (n) => [n, await deps.countReplicas(n).catch(() => 0)] as const));
  observeReplicas(async () => Object.fromEntries(await replicaCounts()));

  /** Error responses of a route in the OpenAPI document: what any request may get, plus `codes`. */
  const errors = (open: boolean, ...codes: (readonly ErrorCode[])[]) =>
    errorResponses([...EDGE_CODES, ...(apiKey && !open ? ["UNAUTHENTICATED" as const] : []), ...codes.flat()]);

  app.get("/healthz", {
    schema: {
      description: "Liveness: 200 while the ingress process runs and serves HTTP. It checks neither NATS nor the graph (that is /readyz): a broker outage makes the ingress unready, it does not make it restart.",
      response: { 200: z.object({ status: z.literal("ok") }), ...errors(true) },
    },
  }, async () => ({ status: "ok" as const }));
  app.get("/readyz", {
    schema: {
      description: "Readiness: 200 when the ingress's NATS connection is up and every downstream node of the ingress has at least one replica; otherwise 503 UNAVAILABLE.",
      response: { 200: z.object({ status: z.literal("ready"), replicas: z.record(z.string(), z.number()) }), ...errors(true) },
    },
  }, async () => {
    if (!deps.isConnected()) throw new GraphError("UNAVAILABLE", "the ingress is not connected to NATS");
    const counts = await replicaCounts();
    const replicas = Object.fromEntries(counts);
    const missing = counts.filter(([, c]) => c === 0).map(([n]) => n);
    if (missing.length) throw new GraphError("UNAVAILABLE", `no replica of ${missing.join(", ")}`, { details: { replicas } });
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
        response: { 200: Greeting.reply.schema, ...errors(false, PARAM_CODES, callCodes(Greeting)) },
      },
    }, async (req) => deps.client.call(Greeting, greeting.subject, { name: req.params.name }, { deadlineEpochMs: deadline(greeting.timeoutMs) }));
  }

  const classify = deps.routes.classify;
  if (classify) {
    // The endpoint's definition checks the image (empty, media type, top_k) before it leaves the ingress.
    const classifyBytes = async (reply: FastifyReply, data: Uint8Array, topK: number, contentType: string | undefined) => {
      let timing: string | undefined;
      const t0 = performance.now();
      const out = await deps.client.call(Classify, classify.subject, { data, headers: { [Headers.TopK]: topK, [Headers.ContentType]: contentType } }, {
        deadlineEpochMs: deadline(classify.timeoutMs), onReplyHeaders: (h) => void (timing = h(Headers.ServerTiming)),
      });
      void reply.header("server-timing", serverTimingOf(classify.node, reply.elapsedTime, performance.now() - t0, timing));
      return out;
    };
    app.post("/classify", {
      schema: {
        description: "Classify an image: JSON `{image_url, top_k}` (the URL is fetched by the ingress: http(s) to public addresses only), or the raw image as the body (image/*, application/octet-stream) with `?top_k=`. The answer's `Server-Timing` header gives the time per hop in ms (ingress, preprocess, infer as preprocess timed it, total).",
        querystring: z.object({ top_k: TopK.default(DEFAULT_TOP_K) }),
        // Buffer first: zod tries the options in order, and a strictObject check of a Buffer visits every
        // byte as a key (~30 ms of CPU per 100 KB image). The JSON errors are the same either way.
        body: z.union([
          z.instanceof(Buffer).describe("raw image bytes"),
          z.strictObject({ image_url: z.string().min(1).max(4096), top_k: TopK.default(DEFAULT_TOP_K) }),
        ]).optional(),
        response: { 200: Classify.reply.schema, ...errors(false, BODY_CODES, FETCH_CODES, callCodes(Classify)) },
      },
    }, async (req, reply) => {
      const body = req.body;
      if (body === undefined || body === null) throw new GraphError("BAD_REQUEST", "send JSON {image_url, top_k} or an image body");
      if (Buffer.isBuffer(body)) return classifyBytes(reply, body, req.query.top_k, req.headers["content-type"]);
      const { image_url, top_k } = body as { image_url: string; top_k: number };
      const img = await fetchImage(image_url, {
        maxBytes: deps.maxBodyBytes, timeoutMs: deps.imageFetchTimeoutMs, allowPrivateAddresses: deps.allowPrivateImageUrls,
      });
      return classifyBytes(reply, img.bytes, top_k, img.contentType);
    });
  }

  const labels = deps.routes.labels;
  if (labels) {
    app.get("/labels", { schema: { description: "The model's class labels, index = output row.", response: { 200: InferLabels.reply.schema, ...errors(false, callCodes(InferLabels)) } } },
      async () => deps.client.call(InferLabels, labels.subject, undefined, { deadlineEpochMs: deadline(labels.timeoutMs) }));
  }

  const ab = deps.routes.process;
  if (ab) {
    app.get("/process/:message", {
      schema: {
        description: "A/B routing: the router picks variant A or B for `user_key` (Statsig gate) and forwards the message.",
        params: z.object({ message: z.string().max(MAX_MESSAGE_LENGTH) }),
        querystring: z.object({ user_key: z.string().min(1, "user_key is required").max(MAX_USER_KEY_LENGTH) }),
        response: { 200: AbProcess.reply.schema, ...errors(false, PARAM_CODES, callCodes(AbProcess)) },
      },
    }, async (req) => deps.client.call(AbProcess, ab.subject, { message: req.params.message, user_key: req.query.user_key }, { deadlineEpochMs: deadline(ab.timeoutMs) }));
  }

  if (deps.dashboard) registerDashboard(app, deps.dashboard, errors(false));

  return app;
}
