/**
 * Ingress fixtures: a real nats-server with an in-process greeter-proxy replica (its greeting endpoint answers
 * `Hello, <name>!`, after `delayMs` when a test sets it), the dependencies of buildApp() around a NATS connection,
 * and the check of an error answer against the error table. Disposed with `close()` or `await using`.
 */
import assert from "node:assert/strict";
import type { NatsConnection } from "@nats-io/transport-node";
import type { IngressDeps, IngressRoute } from "../../services/ingress/src/app.ts";
import { parseRouteKey, type RouteBody, type RouteMethod } from "../../runtime/config.ts";
import { AbProcess, Classify, Greeting, type EndpointDef } from "../../subjects/endpoints.ts";
import { createClient } from "../../runtime/client.ts";
import { countReplicas } from "../../runtime/discovery.ts";
import { createLogger, type Logger } from "../../runtime/log.ts";
import { connectNats, isConnected } from "../../runtime/nats.ts";
import { createService, type Service } from "../../runtime/service.ts";
import { ErrorCodes, isErrorCode, type ErrorCode } from "../../subjects/errors.ts";
import { GreetRequest } from "../../subjects/schemas.ts";
import { startNats, type LocalNats } from "./graph.ts";

const GREETING_SUBJECT = "sg.v1.greeter-proxy.greeting";

export interface GreeterBroker {
  nats: LocalNats;
  nc: NatsConnection;
  proxy: Service;
  log: Logger;
  /** Every greeting answer waits this long from now on (0: none). */
  delayMs: number;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** nats-server, a connection named `name`, and the greeter-proxy replica on it (`proxyTimeoutMs`: its default timeout). */
export async function startGreeterBroker(name: string, proxyTimeoutMs: number): Promise<GreeterBroker> {
  const nats = await startNats();
  const nc = await connectNats({ name, servers: nats.url });
  const log = createLogger("test", "error");
  const proxy = createService(nc, { name: "greeter-proxy", maxInFlight: 8, defaultTimeoutMs: proxyTimeoutMs, log });
  const close = async (): Promise<void> => {
    await proxy.stop({ maxWaitMs: 100 });
    await nc.close();
    await nats.stop();
  };
  const broker: GreeterBroker = { nats, nc, proxy, log, delayMs: 0, close, [Symbol.asyncDispose]: close };
  proxy.addEndpoint("greeting", {
    subject: GREETING_SUBJECT,
    handler: async (req) => {
      const { name: who } = req.json(GreetRequest);
      if (broker.delayMs) await new Promise((r) => setTimeout(r, broker.delayMs));
      return { message: `Hello, ${who}!`, served_by: "inproc" };
    },
  });
  proxy.announce();
  return broker;
}

/** A route as graph.config.ts would declare it (`key` -> `def` of `node`), with its deadline; `body` as compile picks it. */
export function ingressRoute(
  key: string,
  def: EndpointDef,
  node: string,
  timeoutMs: number,
  body?: RouteBody,
): IngressRoute {
  const r = parseRouteKey(key);
  if (!r) throw new Error(`not a route key: ${key}`);
  const dflt: RouteBody | "none" =
    def.request.kind === "bytes" ? "raw" : r.method === "GET" || r.method === "DELETE" ? "none" : "json";
  return {
    key,
    method: r.method as RouteMethod,
    path: r.path,
    params: r.params,
    node,
    subject: `sg.v1.${node}.${def.name}`,
    timeoutMs,
    def,
    body: body ?? dflt,
  };
}

/** The reference graph's routes (graph.config.ts), with a deadline of `timeoutMs`. */
export const greetingRoute = (timeoutMs: number): IngressRoute =>
  ingressRoute("GET /greeting/:name", Greeting, "greeter-proxy", timeoutMs);
export const classifyRoute = (timeoutMs: number): IngressRoute =>
  ingressRoute("POST /classify", Classify, "preprocess", timeoutMs, "image");
export const processRoute = (timeoutMs: number): IngressRoute =>
  ingressRoute("GET /process/:message", AbProcess, "ab-router", timeoutMs);

/**
 * buildApp()'s dependencies on `nc`: a client (`clientTimeoutMs`, default 1000), replica counts and connection
 * state from it; a 1 KiB body limit and no private image URLs unless `o` says otherwise.
 */
export function ingressDeps(
  on: { nc: NatsConnection; log: Logger },
  o: Partial<IngressDeps> & { routes: readonly IngressRoute[]; clientTimeoutMs?: number },
): IngressDeps {
  const { clientTimeoutMs = 1000, ...rest } = o;
  return {
    client: createClient(on.nc, { caller: "ingress", defaultTimeoutMs: clientTimeoutMs }),
    countReplicas: (n) => countReplicas(on.nc, n, 100),
    isConnected: () => isConnected(on.nc),
    maxBodyBytes: 1024,
    imageFetchTimeoutMs: 1000,
    allowPrivateImageUrls: false,
    log: on.log,
    ...rest,
  };
}

export interface TableErrorBody {
  code: ErrorCode;
  message: string;
  details?: unknown;
}

/**
 * A JSON `{code, message, details?}` answer whose code is `code`, with that code's status in the error table.
 * `statusCode` undefined: no answer at all (the connection closed), which fails.
 */
export function assertTableError(
  res: { statusCode: number | undefined; headers: Record<string, unknown>; body: string },
  code: ErrorCode,
): TableErrorBody {
  assert.ok(res.statusCode !== undefined, `an answer, not a bare close (${code})`);
  assert.match(String(res.headers["content-type"] ?? ""), /^application\/json/);
  const body = JSON.parse(res.body) as { code: unknown; message: unknown; details?: unknown };
  assert.ok(isErrorCode(body.code), `code ${String(body.code)} is in the table`);
  assert.equal(body.code, code, String(body.message));
  assert.equal(res.statusCode, ErrorCodes[body.code].status, `HTTP status of ${code}`);
  assert.equal(typeof body.message, "string");
  return body as TableErrorBody;
}
