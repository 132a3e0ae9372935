/**
 * GET /dashboard: a live page of the running graph, served whole by the ingress (HTML, CSS and a dependency-free
 * script from ./assets, read once at start-up; no CDN, no build step, nothing fetched from another origin, which
 * the page's Content-Security-Policy also enforces).
 *
 * GET /dashboard/events: Server-Sent Events. `topology` once (topology.ts: nodes, edges, columns), then `status`
 * (live.ts LiveFrame) after each reading of the one shared poller (poller.ts: at most one discovery reading a
 * second for all pages together). A closed connection unsubscribes at once; the server's shutdown ends every
 * stream first (preClose), so that closing the ingress never waits on an open page; a client that stops reading
 * is cut off once {@link MAX_BUFFERED_BYTES} are queued for it.
 *
 * Authentication is that of every other route (app.ts's onRequest hook, when requiresAuth is on).
 */
import { readFileSync } from "node:fs";
import { PassThrough } from "node:stream";
import type { FastifyInstance } from "fastify";
import type { z } from "zod";
import type { GraphStatus, Logger } from "../../../../runtime/index.ts";
import { createHttpCounter } from "./http-counter.ts";
import { withHttpFigures } from "./live.ts";
import { createStatusPoller, POLL_INTERVAL_MS } from "./poller.ts";
import type { Topology } from "./topology.ts";

export interface DashboardDeps {
  topology: Topology;
  /** One discovery reading (runtime collectStatus). */
  readStatus: () => Promise<GraphStatus>;
  /** The autoscaler of `servegraph up`, or undefined when none answers. */
  readAutoscaler?: () => Promise<unknown>;
  intervalMs?: number;
  /** The HTTP node serving the page, and this replica's discovery id: its card shows this replica's HTTP answers. */
  self?: { node: string; replicaId: string };
  log?: Logger;
}

/** Queued bytes at which a client that does not read its stream is disconnected (a frame is a few KB). */
export const MAX_BUFFERED_BYTES = 1024 * 1024;
/** A comment line this often keeps proxies from closing a quiet stream. */
const KEEP_ALIVE_MS = 15_000;

const asset = (name: string): string => readFileSync(new URL(`./assets/${name}`, import.meta.url), "utf8");

/**
 * Same-origin only: scripts, styles, fetches and the event stream; images also from blob: (the preview of a
 * dropped file). No inline script or style.
 */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export function registerDashboard(app: FastifyInstance, deps: DashboardDeps, errors: Record<number, z.ZodType>): void {
  const files = {
    html: asset("dashboard.html"),
    css: asset("dashboard.css"),
    js: asset("dashboard.js"),
    icon: asset("favicon.svg"),
  };
  const http = createHttpCounter();
  app.addHook("onResponse", async (req, reply) => {
    const route = req.routeOptions.url;
    if (route?.startsWith("/dashboard")) return;
    http.record(reply.statusCode, reply.elapsedTime, `${req.method} ${route ?? "unmatched"}`);
  });
  const self = deps.self;
  const poller = createStatusPoller({
    read: self ? async () => withHttpFigures(await deps.readStatus(), self, http.figures()) : deps.readStatus,
    intervalMs: deps.intervalMs ?? POLL_INTERVAL_MS,
    ...(deps.readAutoscaler ? { readAutoscaler: deps.readAutoscaler } : {}),
    ...(deps.log ? { log: deps.log } : {}),
  });
  const open = new Set<() => void>();
  app.addHook("preClose", async () => {
    for (const close of [...open]) close();
    poller.close();
  });

  app.get(
    "/dashboard",
    {
      schema: {
        description:
          "The graph live in a browser (HTML): nodes and edges, replicas by host, in flight, requests/s, p50/p99, errors/s and the last error of each node, batch fill of infer, the A/B split; and panels to try /classify (top-5 and time per hop), /greeting and /process. Served whole by the ingress, same-origin only.",
        produces: ["text/html"],
        response: errors,
      },
    },
    async (_req, reply) =>
      reply
        .header("content-type", "text/html; charset=utf-8")
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("cache-control", "no-cache")
        .send(files.html),
  );
  app.get("/dashboard/dashboard.css", { schema: { hide: true } }, async (_req, reply) =>
    reply
      .header("content-type", "text/css; charset=utf-8")
      .header("x-content-type-options", "nosniff")
      .header("cache-control", "no-cache")
      .send(files.css),
  );
  app.get("/dashboard/dashboard.js", { schema: { hide: true } }, async (_req, reply) =>
    reply
      .header("content-type", "text/javascript; charset=utf-8")
      .header("x-content-type-options", "nosniff")
      .header("cache-control", "no-cache")
      .send(files.js),
  );

  app.get("/dashboard/favicon.svg", { schema: { hide: true } }, async (_req, reply) =>
    reply
      .header("content-type", "image/svg+xml")
      .header("x-content-type-options", "nosniff")
      .header("cache-control", "max-age=86400")
      .send(files.icon),
  );

  app.get(
    "/dashboard/events",
    {
      schema: {
        description: `The dashboard's live feed (text/event-stream): event \`topology\` once (nodes, edges, columns of the graph), then \`status\` about every ${deps.intervalMs ?? POLL_INTERVAL_MS} ms (per node: replicas by host, in flight, requests/s, errors/s, p50/p99, last error, batch figures, the autoscaler's target and last decision when \`servegraph up\` reports them). One discovery reading serves every open stream.`,
        produces: ["text/event-stream"],
        response: errors,
      },
    },
    async (req, reply) => {
      const stream = new PassThrough();
      const send = (event: string, data: unknown): void => {
        if (stream.writableLength > MAX_BUFFERED_BYTES) {
          // The client does not read: ending the stream would queue behind what it never reads; cut the connection.
          close();
          reply.raw.destroy();
          return;
        }
        stream.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      };
      let unsubscribe = (): void => {};
      const keepAlive = setInterval(() => stream.write(": keep-alive\n\n"), KEEP_ALIVE_MS);
      keepAlive.unref();
      let closed = false;
      function close(): void {
        if (closed) return;
        closed = true;
        clearInterval(keepAlive);
        unsubscribe();
        open.delete(close);
        stream.end();
      }
      open.add(close);
      // The response closes (client gone, or answered); Fastify destroys the stream with it; or the client left before.
      reply.raw.once("close", close);
      stream.once("close", close);
      // A stream is quiet between frames by design: the connection's inactivity timeout does not apply to it.
      req.raw.socket?.setTimeout(0);
      send("topology", deps.topology);
      if (reply.raw.destroyed || req.raw.socket?.destroyed) close();
      else unsubscribe = poller.subscribe((frame) => send("status", frame));
      return (
        reply
          .header("content-type", "text/event-stream; charset=utf-8")
          .header("cache-control", "no-store")
          .header("x-accel-buffering", "no")
          // A stream's connection is not reused: its end (client gone, shutdown) closes the socket at once.
          .header("connection", "close")
          .send(stream)
      );
    },
  );
}
