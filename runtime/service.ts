/**
 * A node's NATS face: endpoints served in the node's queue group behind a wrapper that
 *  - answers every failure, sync or async, with ADR-32 error headers (nats.js only catches synchronous throws),
 *  - refuses work past the replica's in-flight cap (OVERLOADED) and past the caller's deadline (DEADLINE_EXCEEDED),
 *  - traces (server span from the caller's context) and measures every request,
 * plus ADR-32 discovery ($SRV.PING/INFO/STATS) so `nats micro ls` and `servegraph status` see every replica.
 * stop() drains intake first, waits for in-flight handlers, then leaves the connection to the caller: `nc.drain()`
 * alone does not wait for async handlers, so their replies would be dropped.
 *
 * Hand-written rather than `@nats-io/services`: that package is a stale prerelease on npm (it pins an older
 * nats-core than transport-node and fails to type-check against it), and this wrapper needs the drain order
 * above, the in-flight cap and our own stats data (p50/p99, in flight, batch fill) that `servegraph status` reads.
 * The request muxer in client.ts is kept for a similar reason (see its header).
 */
import { randomUUID } from "node:crypto";
import {
  headers as natsHeaders,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node";
import type { Span } from "@opentelemetry/api";
import type { z } from "zod";
import {
  describePayload,
  decodePayload,
  encodePayload,
  type EndpointDef,
  type InputOf,
  type ValueOf,
} from "../subjects/endpoints.ts";
import { GraphError } from "../subjects/errors.ts";
import type { StatsData } from "../subjects/stats.ts";
import { createLatencyWindow, RECENT_SAMPLES, type LatencyWindow } from "./latency-window.ts";
import { createHeartbeatPump, deadlineOf } from "./heartbeats.ts";
import { Discovery } from "../subjects/names.ts";
import { toBody, toHeaders } from "./errors-wire.ts";
import type { Logger } from "./log.ts";
import { metrics } from "./metrics.ts";
import { currentTraceId, withServerSpan } from "./tracing.ts";

const kBinary = Symbol("servegraph.binaryReply");

export interface BinaryReply {
  readonly [kBinary]: true;
  readonly data: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
}

/** A non-JSON reply: raw bytes plus headers (e.g. a tensor with Graph-Dtype / Graph-Shape). */
export function binaryReply(data: Uint8Array, headers: Record<string, string> = {}): BinaryReply {
  return { [kBinary]: true, data, headers };
}

function isBinaryReply(x: unknown): x is BinaryReply {
  return typeof x === "object" && x !== null && (x as Record<symbol, unknown>)[kBinary] === true;
}

export interface IncomingRequest {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
  /** Header value or undefined (nats.js returns "" for a missing header). */
  header(name: string): string | undefined;
  /** Adds a header to this request's reply when it succeeds (e.g. `Server-Timing`); error replies carry only the error headers. */
  setReplyHeader(name: string, value: string): void;
  /** Parses the body as JSON (an empty body reads as `undefined`) and validates it; failures are BAD_REQUEST with the zod issues as details. */
  json<S extends z.ZodType>(schema: S): z.output<S>;
  /** Absolute deadline (epoch ms) from the caller, or now + the node's timeout. */
  readonly deadlineEpochMs: number;
  /** Aborts when the deadline passes or the replica is force-stopped. */
  readonly signal: AbortSignal;
  readonly span: Span;
}

export type Handler = (req: IncomingRequest) => unknown | Promise<unknown>;

export interface EndpointOptions {
  subject: string;
  handler: Handler;
  metadata?: Record<string, string>;
}

/** A handler of a defined endpoint: parsed, checked input in; the reply as its definition types it. */
export type EndpointHandler<D extends EndpointDef> = (
  input: ValueOf<D["request"]>,
  req: IncomingRequest,
) => InputOf<D["reply"]> | Promise<InputOf<D["reply"]>>;

export interface ServiceOptions {
  /** Node name: NATS micro service name and queue group. */
  name: string;
  version?: string;
  description?: string;
  id?: string;
  maxInFlight: number;
  /** Deadline for requests that arrive without a Graph-Deadline header. */
  defaultTimeoutMs: number;
  metadata?: Record<string, string>;
  /** Extra per-service stats merged into every endpoint's `data` in $SRV.STATS (e.g. batch fill). */
  /** Figures of this replica in every endpoint's $SRV.STATS data, beside in_flight (subjects/stats.ts). */
  statsData?: () => StatsData;
  log: Logger;
}

interface EndpointState {
  name: string;
  subject: string;
  metadata: Record<string, string>;
  sub: Subscription;
  numRequests: number;
  numErrors: number;
  lastError: string;
  processingNs: number;
  /** Its recent durations: the p50/p99 of $SRV.STATS. */
  latency: LatencyWindow;
  /** prom-client child for the common outcome, resolved once (observes seconds). */
  okDuration: { observe(v: number): void };
}

export interface Service {
  readonly id: string;
  readonly name: string;
  /** A raw endpoint: the handler parses the request itself; the reply is JSON or a {@link binaryReply}. */
  addEndpoint(name: string, opts: EndpointOptions): void;
  /**
   * Serves a defined endpoint at `subject`: the request is decoded and checked against `def.request` before the
   * handler runs (BAD_REQUEST, UNSUPPORTED_MEDIA_TYPE... from the definition), and the handler's reply is checked
   * against `def.reply` (CONTRACT_VIOLATION, logged, if the handler breaks its own contract).
   */
  serve<D extends EndpointDef>(def: D, subject: string, handler: EndpointHandler<D>): void;
  /** Starts answering $SRV.PING/INFO/STATS: call once the endpoints are ready, since discovery means "ready". */
  announce(): void;
  inFlight(): number;
  /** Stop intake (drain endpoint subscriptions), wait for in-flight handlers (bounded), stop discovery. */
  stop(opts?: { maxWaitMs?: number }): Promise<void>;
}

export { RECENT_SAMPLES };
const enc = new TextEncoder();
const noHeaders = (): undefined => undefined;

/** A success reply's headers: those of `setReplyHeader`, then a binary reply's own (which win); none when neither. */
function successHeaders(
  set: Record<string, string> | undefined,
  own: Record<string, string> | undefined,
): MsgHdrs | undefined {
  if (!set && !own) return undefined;
  const h = natsHeaders();
  for (const from of [set, own]) if (from) for (const k in from) h.set(k, from[k]!);
  return h;
}

export function createService(nc: NatsConnection, opts: ServiceOptions): Service {
  const id = opts.id ?? randomUUID().replace(/-/g, "").slice(0, 22);
  const version = opts.version ?? "0.1.0";
  const started = new Date().toISOString();
  const endpoints: EndpointState[] = [];
  const discoverySubs: Subscription[] = [];
  let inflight = 0;
  let stopping = false;
  let idleWaiters: (() => void)[] = [];
  const log = opts.log;
  const inflightGauge = metrics.inFlight.labels(opts.name);

  const respondError = (msg: Msg, err: unknown, ep: EndpointState, elapsedMs: number): void => {
    const ge = GraphError.from(err);
    if (ge.code === "INTERNAL" || ge.code === "CONTRACT_VIOLATION") {
      log.error("handler failed", {
        subject: msg.subject,
        code: ge.code,
        error: err instanceof Error ? (err.stack ?? err.message) : String(err),
        trace_id: currentTraceId(),
      });
    }
    ep.numErrors++;
    ep.lastError = `${ge.status}:${ge.message}`;
    metrics.errors.labels(opts.name, ep.name, ge.code).inc();
    metrics.serverDuration.labels(opts.name, ep.name, ge.code).observe(elapsedMs / 1000);
    try {
      msg.respond(toBody(ge), { headers: toHeaders(ge) });
    } catch (e) {
      log.warn("could not send error reply", { subject: msg.subject, error: e });
    }
  };

  const respond = (
    msg: Msg,
    value: unknown,
    ep: EndpointState,
    elapsedMs: number,
    extra: Record<string, string> | undefined,
  ): void => {
    try {
      const binary = isBinaryReply(value);
      const headers = successHeaders(extra, binary ? value.headers : undefined);
      msg.respond(
        binary ? value.data : value === undefined ? new Uint8Array(0) : enc.encode(JSON.stringify(value)),
        headers && { headers },
      );
      ep.okDuration.observe(elapsedMs / 1000);
    } catch (e) {
      // e.g. the reply exceeds max_payload: tell the caller instead of leaving it to time out
      respondError(
        msg,
        new GraphError("PAYLOAD_TOO_LARGE", "reply exceeds the NATS max_payload", { cause: e }),
        ep,
        elapsedMs,
      );
    }
  };

  // Heartbeats to callers that asked for them, one timer for every request in flight (runtime/heartbeats.ts).
  const heartbeats = createHeartbeatPump(nc);

  const done = (): void => {
    inflight--;
    inflightGauge.set(inflight);
    if (inflight === 0 && idleWaiters.length) {
      const w = idleWaiters;
      idleWaiters = [];
      for (const f of w) f();
    }
  };

  const handle = (ep: EndpointState, handler: Handler, msg: Msg): void => {
    if (!msg.reply) return; // a publish, not a request: nothing to answer
    const t0 = performance.now();
    ep.numRequests++;
    // While draining, messages already delivered to this replica are still handled: they were accepted.
    if (inflight >= opts.maxInFlight) {
      return respondError(
        msg,
        new GraphError("OVERLOADED", `${opts.name} replica is at its cap of ${opts.maxInFlight} requests in flight`, {
          details: { maxInFlight: opts.maxInFlight },
        }),
        ep,
        0,
      );
    }
    const h = msg.headers;
    const now = Date.now();
    // The caller's deadline, clamped to this node's timeout: a far-future (or malformed) one cannot hold a
    // request forever or overflow a timer.
    const deadlineEpochMs = deadlineOf(h, now, opts.defaultTimeoutMs);
    if (deadlineEpochMs - now <= 0)
      return respondError(
        msg,
        new GraphError("DEADLINE_EXCEEDED", "deadline passed before the request was handled"),
        ep,
        0,
      );

    inflight++;
    inflightGauge.set(inflight);
    const beat = heartbeats.start(h);
    // The signal and its deadline timer are made on first use: most handlers finish without looking.
    let ac: AbortController | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const signal = (): AbortSignal => {
      if (!ac) {
        const c = (ac = new AbortController());
        const abort = (): void => c.abort(new GraphError("DEADLINE_EXCEEDED", "deadline exceeded"));
        const left = deadlineEpochMs - Date.now();
        if (left <= 0) abort();
        else (timer = setTimeout(abort, left)).unref();
      }
      return ac.signal;
    };
    let replyHeaders: Record<string, string> | undefined;
    withServerSpan(msg.subject, opts.name, h, msg.data.length, async (span) => {
      const req: IncomingRequest = {
        subject: msg.subject,
        data: msg.data,
        headers: h,
        header: (name) => h?.get(name) || undefined,
        setReplyHeader: (name, value) => void ((replyHeaders ??= {})[name] = value),
        // The same JSON decoding and check as a defined endpoint's (subjects/endpoints.ts).
        json: (schema) => decodePayload({ kind: "json", schema }, msg.data, noHeaders, "BAD_REQUEST"),
        deadlineEpochMs,
        get signal() {
          return signal();
        },
        span,
      };
      return await handler(req);
    })
      .then(
        (value) => respond(msg, value, ep, performance.now() - t0, replyHeaders),
        (err) => respondError(msg, err, ep, performance.now() - t0),
      )
      .finally(() => {
        heartbeats.stop(beat);
        if (timer) clearTimeout(timer);
        const ms = performance.now() - t0;
        ep.processingNs += Math.round(ms * 1e6);
        ep.latency.record(ms);
        done();
      });
  };

  const endpointInfo = (ep: EndpointState) => ({
    name: ep.name,
    subject: ep.subject,
    queue_group: opts.name,
    metadata: ep.metadata,
  });

  /** `shared`: the per-replica figures (in-flight, statsData), read once per $SRV.STATS answer and repeated in every endpoint. */
  const statsOf = (ep: EndpointState, shared: Record<string, unknown>) => {
    return {
      ...endpointInfo(ep),
      num_requests: ep.numRequests,
      num_errors: ep.numErrors,
      last_error: ep.lastError,
      processing_time: ep.processingNs,
      average_processing_time: ep.numRequests ? Math.round(ep.processingNs / ep.numRequests) : 0,
      data: { ...ep.latency.percentiles(), ...shared },
    };
  };

  const base = () => ({ name: opts.name, id, version, metadata: opts.metadata ?? {} });
  const discovery: Record<"ping" | "info" | "stats", () => unknown> = {
    ping: () => ({ type: "io.nats.micro.v1.ping_response", ...base() }),
    info: () => ({
      type: "io.nats.micro.v1.info_response",
      ...base(),
      description: opts.description ?? "",
      endpoints: endpoints.map(endpointInfo),
    }),
    stats: () => {
      const shared = { in_flight: inflight, max_in_flight: opts.maxInFlight, ...opts.statsData?.() };
      return {
        type: "io.nats.micro.v1.stats_response",
        ...base(),
        started,
        endpoints: endpoints.map((ep) => statsOf(ep, shared)),
      };
    },
  };
  const announce = (): void => {
    if (discoverySubs.length) return;
    for (const verb of ["ping", "info", "stats"] as const) {
      for (const subj of [Discovery[verb](), Discovery[verb](opts.name), Discovery[verb](opts.name, id)]) {
        discoverySubs.push(
          nc.subscribe(subj, {
            callback: (err, msg) => {
              if (err || !msg.reply) return;
              try {
                msg.respond(enc.encode(JSON.stringify(discovery[verb]())));
              } catch {
                // connection closing: nothing to answer on
              }
            },
          }),
        );
      }
    }
  };

  return {
    id,
    name: opts.name,
    addEndpoint(name, eo) {
      if (stopping) throw new Error("service is stopped");
      const ep: EndpointState = {
        name,
        subject: eo.subject,
        metadata: eo.metadata ?? {},
        numRequests: 0,
        numErrors: 0,
        lastError: "",
        processingNs: 0,
        latency: createLatencyWindow(),
        okDuration: metrics.serverDuration.labels(opts.name, name, "OK"),
        sub: undefined as unknown as Subscription,
      };
      ep.sub = nc.subscribe(eo.subject, {
        queue: opts.name,
        callback: (err, msg) => (err ? log.warn("subscription error", { error: err }) : handle(ep, eo.handler, msg)),
      });
      endpoints.push(ep);
    },
    serve(def, subject, handler) {
      this.addEndpoint(def.name, {
        subject,
        metadata: {
          request: describePayload(def.request),
          reply: describePayload(def.reply),
          idempotent: String(def.idempotent),
        },
        handler: async (req) => {
          const input = decodePayload(def.request, req.data, req.header, "BAD_REQUEST");
          const out = await handler(input as Parameters<typeof handler>[0], req);
          const e = encodePayload(def.reply, out as InputOf<typeof def.reply>, "CONTRACT_VIOLATION");
          return binaryReply(e.data, e.headers);
        },
      });
    },
    announce,
    inFlight: () => inflight,
    async stop({ maxWaitMs = 30_000 } = {}) {
      if (stopping) return;
      stopping = true;
      await Promise.allSettled(endpoints.map((e) => e.sub.drain()));
      if (inflight > 0) {
        log.info("waiting for requests in flight", { in_flight: inflight });
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, maxWaitMs);
          idleWaiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      for (const s of discoverySubs) s.unsubscribe();
    },
  };
}
