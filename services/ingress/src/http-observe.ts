/**
 * What the ingress records of each HTTP request: one SERVER span (`GET /greeting/:name`, child of an incoming
 * `traceparent`), active while the route handler runs so its NATS client spans are its children; the HTTP
 * in-flight gauge; and `sg_http_request_duration_seconds` by route, method and status.
 *
 * The context is entered by wrapping each route handler (onRoute): a context entered in an onRequest hook
 * would not survive Fastify's body parsing.
 *
 * A request cut off while its body was read (a timeout, a framing error) was answered on the raw socket
 * (http-server.ts); its span and duration get that answer's status instead of "aborted".
 *
 * Not @fastify/otel: it makes INTERNAL spans per hook and handler and leaves the SERVER span to
 * @opentelemetry/instrumentation-http, which monkey-patches node:http; the two would add dependencies and a span
 * per hook where this is one SERVER span per request with the HTTP semantic-convention attributes.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { context, type Context, type Span } from "@opentelemetry/api";
import client from "prom-client";
import { SECONDS_BUCKETS, endHttpServerSpan, metrics, registry, startHttpServerSpan } from "../../../runtime/index.ts";
import { httpErrorToGraphError } from "./http-errors.ts";
import { rawAnswerOf } from "./http-server.ts";

const httpDuration = new client.Histogram({
  name: "sg_http_request_duration_seconds",
  help: "HTTP requests at the ingress by route, method and status.",
  labelNames: ["route", "method", "status"] as const,
  buckets: SECONDS_BUCKETS,
  registers: [registry],
});

/** Routes that get no span: scrapes, probes and the docs UI would drown the real traffic. */
const UNTRACED = /^\/(metrics|healthz|docs)(\/|$)/;

export function observeHttp(app: FastifyInstance): void {
  const live = new WeakMap<
    FastifyRequest,
    { span: Span; ctx: Context; errorCode: string | undefined; startMs: number }
  >();
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
      method: req.method,
      route,
      path: q < 0 ? req.url : req.url.slice(0, q),
      scheme: req.protocol,
      headers: req.headers,
      userAgent: req.headers["user-agent"],
    });
    live.set(req, { span, ctx, errorCode: undefined, startMs: performance.now() });
  });
  app.addHook("onError", async (req, _reply, err) => {
    const t = live.get(req);
    if (t) t.errorCode = httpErrorToGraphError(err).code;
  });
  // Runs once per request: on the response, or on a client abort when no response will come.
  const finish = (req: FastifyRequest, statusCode: number | undefined, errorCode?: string): void => {
    const t = live.get(req);
    if (!t) return;
    live.delete(req);
    metrics.httpInFlight.dec();
    endHttpServerSpan(t.span, statusCode, statusCode === undefined ? "aborted" : (errorCode ?? t.errorCode));
  };
  app.addHook("onResponse", async (req, reply) => {
    httpDuration
      .labels(req.routeOptions.url ?? "unmatched", req.method, String(reply.statusCode))
      .observe(reply.elapsedTime / 1000);
    finish(req, reply.statusCode);
  });
  app.addHook("onRequestAbort", async (req) => {
    const raw = rawAnswerOf(req.raw.socket);
    const t = live.get(req);
    if (raw && t)
      httpDuration
        .labels(req.routeOptions.url ?? "unmatched", req.method, String(raw.status))
        .observe((performance.now() - t.startMs) / 1000);
    finish(req, raw?.status, raw?.code);
  });
}
