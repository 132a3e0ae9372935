/**
 * Every error a request that reached Fastify can get, as one code of the table (subjects/errors.ts) and one
 * body, `{code, message, details?}`, with that code's status: Fastify's own errors (router, content-type and
 * body parsing, validation), its framework errors (bad URL encoding, over-long path parameters, answered through
 * `frameworkErrors` instead of Fastify's hard-coded bodies), 404 versus 405, and the per-route error responses
 * of the OpenAPI document. What never reaches Fastify (HTTP parser errors, timeouts) is in http-server.ts.
 */
import type { FastifyError, FastifyReply, FastifyRequest, RouteOptions } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { z } from "zod";
import { ErrorCodes, GraphError, codeForStatus, type EndpointDef, type ErrorCode } from "../../../subjects/index.ts";

/** Longest route parameter (one path segment) the router accepts; longer is URI_TOO_LONG. */
export const MAX_PARAM_LENGTH = 2048;

/**
 * The GraphError of anything a route, a hook or Fastify threw. Codes are explicit for every `FST_ERR_*` a
 * request can trigger; anything else maps by its status through {@link codeForStatus}, and an unknown 5xx
 * becomes INTERNAL with a generic message (the cause is logged, never sent).
 */
export function httpErrorToGraphError(err: unknown): GraphError {
  if (err instanceof GraphError) return err;
  if (hasZodFastifySchemaValidationErrors(err)) {
    const issues = err.validation.map((v) => ({ path: v.instancePath, message: v.message }));
    return new GraphError(
      "BAD_REQUEST",
      `${err.validationContext ?? "request"}${issues[0]?.path ?? ""}: ${issues[0]?.message ?? "invalid"}`,
      { details: issues },
    );
  }
  const fe = (typeof err === "object" && err !== null ? err : {}) as Partial<FastifyError>;
  switch (fe.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new GraphError("PAYLOAD_TOO_LARGE", "request body is too large");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new GraphError(
        "UNSUPPORTED_MEDIA_TYPE",
        "unsupported Content-Type; send application/json or an image (image/*, application/octet-stream)",
      );
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new GraphError("BAD_REQUEST", "empty JSON body");
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return new GraphError("BAD_REQUEST", "request body is not valid JSON");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new GraphError("BAD_REQUEST", "request body size did not match Content-Length");
    case "FST_ERR_BAD_URL":
      return new GraphError("BAD_REQUEST", "the URL path is not valid percent-encoded UTF-8");
    case "FST_ERR_MAX_PARAM_LENGTH":
      return new GraphError("URI_TOO_LONG", `a path segment is longer than ${MAX_PARAM_LENGTH} characters`);
    case "FST_ERR_NOT_FOUND":
      return new GraphError("NOT_FOUND", "not found");
    case "FST_ERR_VALIDATION":
      return new GraphError("BAD_REQUEST", fe.message ?? "invalid request");
  }
  const code = codeForStatus(typeof fe.statusCode === "number" ? fe.statusCode : 500);
  return code === "INTERNAL"
    ? new GraphError("INTERNAL", "internal error", { cause: err })
    : new GraphError(code, fe.message || code);
}

/** The one way an error leaves: the table's status, JSON `{code, message, details?}` (a string, so no response schema re-checks it). */
export function sendError(reply: FastifyReply, ge: GraphError): FastifyReply {
  if (ge.code === "UNAUTHENTICATED") void reply.header("www-authenticate", "Bearer");
  return reply
    .status(ge.status)
    .header("content-type", "application/json; charset=utf-8")
    .send(JSON.stringify(ge.toJSON()));
}

/**
 * Fastify's `frameworkErrors`: the router's errors before any route or hook runs (FST_ERR_BAD_URL for
 * `/greeting/%FF`, FST_ERR_MAX_PARAM_LENGTH), which Fastify would otherwise answer with bodies of its own.
 */
export function frameworkErrors(err: FastifyError, _req: FastifyRequest, reply: FastifyReply): void {
  void sendError(reply, httpErrorToGraphError(err));
}

/**
 * Which methods serve a path, for 405 versus 404: the router cannot tell (a wrong method is "no route"), so
 * every route added is recorded here (onRoute) with its URL as a pattern. Route URLs use `:param` segments and a
 * trailing `*` only (no regex parameters), which is all this pattern handles.
 */
export interface MethodIndex {
  add(route: Pick<RouteOptions, "method" | "url">): void;
  /** Methods of the routes whose pattern matches `path` (no query), sorted; empty when none does. */
  allowed(path: string): string[];
}

export function createMethodIndex(): MethodIndex {
  const routes = new Map<string, { pattern: RegExp; methods: Set<string> }>();
  return {
    add({ method, url }) {
      let r = routes.get(url);
      if (!r) {
        const src = url
          .split("/")
          .map((seg) =>
            seg === "*" ? ".*" : seg.startsWith(":") ? "[^/]+" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"),
          )
          .join("/");
        r = { pattern: new RegExp(`^${src}$`), methods: new Set() };
        routes.set(url, r);
      }
      for (const m of [method].flat()) r.methods.add(m.toUpperCase());
    },
    allowed(path) {
      const out = new Set<string>();
      for (const r of routes.values()) if (r.pattern.test(path)) for (const m of r.methods) out.add(m);
      return [...out].sort();
    },
  };
}

/** Not found: 405 METHOD_NOT_ALLOWED with `Allow` when the path is served for other methods, else 404 NOT_FOUND. */
export function notFound(index: MethodIndex) {
  return (req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const path = req.url.split("?")[0]!;
    const allow = index.allowed(path);
    if (allow.length === 0) return sendError(reply, new GraphError("NOT_FOUND", `no route ${req.method} ${path}`));
    void reply.header("allow", allow.join(", "));
    return sendError(
      reply,
      new GraphError("METHOD_NOT_ALLOWED", `${req.method} is not allowed on ${path}; allowed: ${allow.join(", ")}`),
    );
  };
}

// --- the OpenAPI document ------------------------------------------------------------------------------------

/**
 * Codes any request may get, whatever its route: the HTTP parser's and the validators' BAD_REQUEST, the
 * timeouts, over-long headers, a request arriving during shutdown (UNAVAILABLE), and a bug (INTERNAL).
 */
export const EDGE_CODES: readonly ErrorCode[] = [
  "BAD_REQUEST",
  "REQUEST_TIMEOUT",
  "HEADERS_TOO_LARGE",
  "INTERNAL",
  "UNAVAILABLE",
];
/** Codes of a route with path parameters: a parameter over {@link MAX_PARAM_LENGTH}. */
export const PARAM_CODES: readonly ErrorCode[] = ["URI_TOO_LONG"];
/** Codes of a route that reads a body. */
export const BODY_CODES: readonly ErrorCode[] = ["PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE"];

/** Codes a call through the graph may bring back: the endpoint's own, those any hop may answer, and a reply that breaks the contract. */
export function callCodes(endpoint: Pick<EndpointDef, "errors">): ErrorCode[] {
  return [...endpoint.errors, "UNAVAILABLE", "OVERLOADED", "DEADLINE_EXCEEDED", "INTERNAL", "CONTRACT_VIOLATION"];
}

/** OpenAPI responses for a set of codes: one entry per status, whose `code` is exactly the codes of that status. */
export function errorResponses(codes: Iterable<ErrorCode>): Record<number, z.ZodType> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const c of new Set(codes)) {
    const s = ErrorCodes[c].status;
    byStatus.set(s, [...(byStatus.get(s) ?? []), c]);
  }
  return Object.fromEntries(
    [...byStatus]
      .sort(([a], [b]) => a - b)
      .map(([status, cs]) => [
        status,
        z
          .object({
            code: z.enum(cs as [ErrorCode, ...ErrorCode[]]),
            message: z.string(),
            details: z.unknown().optional(),
          })
          .describe(`${cs.join(" or ")}: see docs/errors.md`),
      ]),
  );
}
