/** Parameters of the ingress node (graph.config.ts `nodes.ingress.parameters`); its routes are the node's `routes`. */
import { defineParams, param } from "../../../runtime/params.ts";

/**
 * How long the ingress waits on a client; what runs out answers 408 REQUEST_TIMEOUT (JSON) where a response
 * can still be written, then closes the connection. Receiving only: the time a route takes to answer is
 * bounded by its deadline, never by these.
 */
export const TIMEOUT_DEFAULTS = {
  /** Slowloris guard: headers are a few hundred bytes, so 10 s allows for any real client (Node's default is 60 s). */
  HEADERS_TIMEOUT_MS: 10_000,
  /** Headers plus body: an 8 MiB image (MAX_BODY_BYTES) at 300 KB/s still fits. */
  REQUEST_TIMEOUT_MS: 30_000,
  /** A stalled client (no byte in 10 s while it sends, or while it should read the answer). */
  CONNECTION_TIMEOUT_MS: 10_000,
  /** Idle keep-alive connections: Fastify's default, above the 60 s idle timeout of common load balancers, so they close first. */
  KEEP_ALIVE_TIMEOUT_MS: 72_000,
} as const;

const ms = (description: string) => param.number(description, { int: true, min: 1, max: 3_600_000 });

export default defineParams({
  MAX_BODY_BYTES: param
    .number("Largest request body, and largest image fetched from a URL, in bytes.", { int: true, min: 1 })
    .default(8 * 1024 * 1024),
  IMAGE_FETCH_TIMEOUT_MS: param.number("Time allowed to fetch an image URL.", { int: true, min: 1 }).default(10_000),
  ALLOW_PRIVATE_IMAGE_URLS: param
    .bool("Allow image URLs that resolve to private, loopback or link-local addresses (local testing only).")
    .default(false),
  HEADERS_TIMEOUT_MS: ms(
    "Time to receive a request's headers, from its first byte (Node's headersTimeout); at most REQUEST_TIMEOUT_MS.",
  ).default(TIMEOUT_DEFAULTS.HEADERS_TIMEOUT_MS),
  REQUEST_TIMEOUT_MS: ms("Time to receive a whole request, headers and body (Node's requestTimeout).").default(
    TIMEOUT_DEFAULTS.REQUEST_TIMEOUT_MS,
  ),
  CONNECTION_TIMEOUT_MS: ms(
    "Longest silence of a connection while a request is received or its answer written (Fastify's connectionTimeout); a route waiting on the graph is not cut by it.",
  ).default(TIMEOUT_DEFAULTS.CONNECTION_TIMEOUT_MS),
  KEEP_ALIVE_TIMEOUT_MS: ms("How long an idle keep-alive connection stays open between requests.").default(
    TIMEOUT_DEFAULTS.KEEP_ALIVE_TIMEOUT_MS,
  ),
}).superRefine((p, ctx) => {
  // Node refuses a server whose headers timeout exceeds its request timeout.
  if (p.HEADERS_TIMEOUT_MS > p.REQUEST_TIMEOUT_MS) {
    ctx.addIssue({
      code: "custom",
      path: ["HEADERS_TIMEOUT_MS"],
      message: `must be at most REQUEST_TIMEOUT_MS (${p.REQUEST_TIMEOUT_MS})`,
    });
  }
});
