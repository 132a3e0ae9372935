/**
 * The ingress's HTTP server below Fastify: how long it waits on clients, and answers in the table's shape
 * (`{code, message}`, subjects/errors.ts) for what never becomes a Fastify request.
 *
 * Timeouts (service parameters, see params.ts), all about receiving; a route's own time is bounded by its
 * deadline, never by these:
 *  - `headersTimeoutMs` (Node's headersTimeout): from a request's first byte to the end of its headers;
 *  - `requestTimeoutMs` (Node's requestTimeout): to the end of its body. Node checks both every
 *    `connectionsCheckingInterval` (here a tenth of the smaller, within 10..1000 ms, so a cut comes at most that
 *    late) and reports them as `clientError` ERR_HTTP_REQUEST_TIMEOUT: 408 REQUEST_TIMEOUT;
 *  - `connectionTimeoutMs` (Fastify's connectionTimeout, socket inactivity): a client silent while its request
 *    is received gets 408; one that stops reading its answer is closed; a connection whose request is complete
 *    and whose route is waiting on the graph is left alone;
 *  - `keepAliveTimeoutMs`: an idle connection between requests is closed, with no answer (there is no request).
 *
 * Raw answers: with no usable Fastify reply (the parser refused the bytes, or a timeout fired while the body
 * was being read) the answer is written on the socket, `HTTP/1.1 <status>` + JSON + `Connection: close`, only
 * when no byte of a response went out yet; then the socket is destroyed, as Node's own default handler does.
 * {@link rawAnswerOf} tells the HTTP observation which request was answered that way.
 *
 * Node's other answers without a body are replaced too: a missing Host (HTTP/1.1) is refused by
 * {@link guardRequests}, an unknown `Expect` is ignored (RFC 9110 10.1.1 allows it) instead of a bare 417, and
 * CONNECT gets 405 instead of a closed connection.
 */
import { STATUS_CODES, maxHeaderSize, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyHttpOptions, FastifyInstance } from "fastify";
import { GraphError } from "../../../subjects/index.ts";
import { TIMEOUT_DEFAULTS } from "./params.ts";

export interface IngressTimeouts {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  connectionTimeoutMs: number;
  keepAliveTimeoutMs: number;
}

export const DEFAULT_TIMEOUTS: Readonly<IngressTimeouts> = Object.freeze({
  headersTimeoutMs: TIMEOUT_DEFAULTS.HEADERS_TIMEOUT_MS,
  requestTimeoutMs: TIMEOUT_DEFAULTS.REQUEST_TIMEOUT_MS,
  connectionTimeoutMs: TIMEOUT_DEFAULTS.CONNECTION_TIMEOUT_MS,
  keepAliveTimeoutMs: TIMEOUT_DEFAULTS.KEEP_ALIVE_TIMEOUT_MS,
});

/** How often Node looks for requests past their headers or request timeout. */
export function checkingIntervalMs(t: IngressTimeouts): number {
  return Math.min(1000, Math.max(10, Math.floor(Math.min(t.headersTimeoutMs, t.requestTimeoutMs) / 10)));
}

/** A server socket as Node's HTTP server uses it: `_httpMessage` is the response that owns it now, if any. */
type HttpSocket = Duplex & { _httpMessage?: ServerResponse | null };

const answered = new WeakMap<object, GraphError>();

/** The error a request's connection was answered with on the raw socket (then closed), if it was. */
export function rawAnswerOf(socket: object | null | undefined): GraphError | undefined {
  return socket ? answered.get(socket) : undefined;
}

/** Writes `ge` as a whole HTTP response on the socket when nothing of a response was written yet, then destroys it. */
export function answerRaw(socket: Duplex, ge: GraphError, headers: Record<string, string> = {}): void {
  const res = (socket as HttpSocket)._httpMessage;
  if (!answered.has(socket) && socket.writable && !res?.headersSent) {
    answered.set(socket, ge);
    const body = JSON.stringify(ge.toJSON());
    const extra = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
    socket.write(
      `HTTP/1.1 ${ge.status} ${STATUS_CODES[ge.status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/** The code of a `clientError`: Node's HTTP parser errors (llhttp `HPE_*`) and its request timeouts. */
export function clientErrorToGraphError(
  err: Error & { code?: string },
  socket: Duplex,
  t: IngressTimeouts,
): GraphError {
  switch (err.code) {
    case "ERR_HTTP_REQUEST_TIMEOUT":
      // A response object exists once the headers were parsed: then it is the whole request that was too slow.
      return (socket as HttpSocket)._httpMessage
        ? new GraphError("REQUEST_TIMEOUT", `the request was not received in full within ${t.requestTimeoutMs} ms`)
        : new GraphError("REQUEST_TIMEOUT", `the request headers were not received within ${t.headersTimeoutMs} ms`);
    case "HPE_HEADER_OVERFLOW":
      return new GraphError("HEADERS_TOO_LARGE", `the request line and headers exceed ${maxHeaderSize} bytes`);
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return new GraphError("PAYLOAD_TOO_LARGE", "chunk extensions are too large");
    default: {
      const reason = err.message.replace(/^Parse Error:\s*/, "");
      return new GraphError("BAD_REQUEST", `malformed HTTP request: ${reason}`, {
        details: { parser: err.code ?? "unknown" },
      });
    }
  }
}

/** Fastify server options for these timeouts, with our answers to client errors and to shutdown. */
export function serverOptions(
  t: IngressTimeouts,
): Pick<
  FastifyHttpOptions<Server>,
  "connectionTimeout" | "requestTimeout" | "keepAliveTimeout" | "http" | "clientErrorHandler" | "return503OnClosing"
> {
  return {
    connectionTimeout: t.connectionTimeoutMs,
    requestTimeout: t.requestTimeoutMs,
    keepAliveTimeout: t.keepAliveTimeoutMs,
    http: {
      // requestTimeout here as well, so that Node checks headersTimeout <= requestTimeout.
      requestTimeout: t.requestTimeoutMs,
      headersTimeout: t.headersTimeoutMs,
      keepAliveTimeout: t.keepAliveTimeoutMs,
      connectionsCheckingInterval: checkingIntervalMs(t),
      // Node would answer a missing Host with an empty 400; guardRequests answers it with a body.
      requireHostHeader: false,
    },
    clientErrorHandler(err, socket) {
      // A reset connection, or one already answered (the parser may report more errors on it): nothing to say.
      if (err.code === "ECONNRESET" || socket.destroyed || answered.has(socket)) {
        socket.destroy();
        return;
      }
      answerRaw(socket, clientErrorToGraphError(err, socket, t));
    },
    // Fastify's 503 during shutdown has a body of its own; guardRequests answers UNAVAILABLE instead.
    return503OnClosing: false,
  };
}

/** Listeners on the node:http server for what Node would otherwise answer itself (see the header). */
export function guardServer(app: FastifyInstance, t: IngressTimeouts): void {
  const server = app.server;
  server.on("timeout", (socket: HttpSocket) => {
    const res = socket._httpMessage;
    if (res && !res.headersSent && res.req.complete) return; // the route is at work; its deadline bounds it
    if (res && !res.headersSent)
      answerRaw(socket, new GraphError("REQUEST_TIMEOUT", `no byte of the request for ${t.connectionTimeoutMs} ms`));
    else socket.destroy();
  });
  server.on("checkExpectation", (req: IncomingMessage, res: ServerResponse) => server.emit("request", req, res));
  server.on("connect", (_req: IncomingMessage, socket: Duplex) => {
    answerRaw(socket, new GraphError("METHOD_NOT_ALLOWED", "CONNECT is not served: the ingress is not a proxy"), {
      Allow: "",
    });
  });
}

/** onRequest checks before any route: shutdown (503 UNAVAILABLE, connection closed) and HTTP/1.1's required Host. */
export function guardRequests(app: FastifyInstance): void {
  let closing = false;
  app.addHook("preClose", async () => {
    closing = true;
  });
  app.addHook("onRequest", async (req, reply) => {
    if (closing) {
      void reply.header("connection", "close");
      throw new GraphError("UNAVAILABLE", "the ingress is shutting down");
    }
    if (req.raw.httpVersion === "1.1" && req.headers.host === undefined)
      throw new GraphError("BAD_REQUEST", "missing Host header (required by HTTP/1.1)");
  });
}
