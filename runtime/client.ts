/**
 * Typed NATS requests with a deadline. Every failure becomes a GraphError:
 * no responders -> UNAVAILABLE at once; broker unreachable -> UNAVAILABLE at once; timeout -> DEADLINE_EXCEEDED;
 * an error reply -> its code; a reply that fails the endpoint's contract -> CONTRACT_VIOLATION.
 *
 * Retries: an idempotent request (its endpoint's definition says so, or `idempotent: true`) asks the callee for
 * heartbeats; if its replica goes silent (killed, frozen) the attempt is lost after LIVENESS_MS and the request is
 * sent once more, to whichever replica of the queue group the server picks (the dead one no longer holds a
 * subscription), never past the deadline. A non-idempotent request whose replica goes silent fails at once with
 * UNAVAILABLE instead of waiting out its deadline. Retries are counted (`sg_client_retries_total`) and recorded as
 * span events on the request's client span.
 */
import { headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/transport-node";
import type { z } from "zod";
import { decodePayload, encodePayload, type EndpointDef, type InputOf, type ValueOf } from "../subjects/endpoints.ts";
import { GraphError } from "../subjects/errors.ts";
import { Headers } from "../subjects/headers.ts";
import { fromMsg } from "./errors-wire.ts";
import type { Logger } from "./log.ts";
import { metrics } from "./metrics.ts";
import { AttemptLostError, createRequester, natsErrorToGraphError } from "./requester.ts";
import { injectContext, withClientSpan } from "./tracing.ts";

/**
 * An attempt that hears nothing (no reply, no heartbeat) for this long is lost: its replica is gone. Shorter for
 * short deadlines (a third of what is left, at least MIN_LIVENESS_MS), so that a retry still fits.
 */
export const LIVENESS_MS = 2000;
const MIN_LIVENESS_MS = 250;
const livenessFor = (leftMs: number): number =>
  Math.max(MIN_LIVENESS_MS, Math.min(LIVENESS_MS, Math.floor(leftMs / 3)));
/** A retry is sent only if at least this much of the deadline is left. */
const MIN_RETRY_MS = 50;

export interface RequestOptions {
  /** Relative timeout; the effective deadline is the earlier of this and `deadlineEpochMs`. */
  timeoutMs?: number;
  /** Absolute deadline (epoch ms), usually the incoming request's, so a chain never outlives its caller. */
  deadlineEpochMs?: number;
  headers?: Record<string, string>;
  /** Safe to send twice: heartbeats are asked for, and a lost attempt is retried once on another replica. */
  idempotent?: boolean;
  /** Called with the successful reply's headers (e.g. `Server-Timing`), before its body is decoded. */
  onReplyHeaders?: (header: (name: string) => string | undefined) => void;
}

export interface Client {
  /** Raw request: returns the reply message (binary payloads), throws GraphError on any failure. */
  request(subject: string, data: Uint8Array | string, opts?: RequestOptions): Promise<Msg>;
  /** JSON (or raw bytes) in, JSON out, reply validated by `schema` when given. */
  requestJson<S extends z.ZodType>(
    subject: string,
    body: unknown,
    opts: RequestOptions & { schema: S },
  ): Promise<z.output<S>>;
  requestJson(subject: string, body: unknown, opts?: RequestOptions): Promise<unknown>;
  /**
   * Calls a defined endpoint at `subject`: `input` is checked against `def.request` before it is sent (a bad
   * input is BAD_REQUEST here, and never leaves the process), the reply is decoded and checked against
   * `def.reply` (CONTRACT_VIOLATION, logged, when the callee breaks the contract).
   */
  call<D extends EndpointDef>(
    def: D,
    subject: string,
    input: InputOf<D["request"]>,
    opts?: RequestOptions,
  ): Promise<ValueOf<D["reply"]>>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function createClient(
  nc: NatsConnection,
  opts: { caller: string; defaultTimeoutMs: number; log?: Logger },
): Client {
  const send = createRequester(nc, opts.caller);
  // prom-client children resolved once per subject for the common outcome. The histogram is in seconds.
  const okDuration = new Map<string, { observe(v: number): void }>();
  const observe = (subject: string, code: string, ms: number): void => {
    if (code !== "OK") return metrics.clientDuration.labels(opts.caller, subject, code).observe(ms / 1000);
    let h = okDuration.get(subject);
    if (!h) okDuration.set(subject, (h = metrics.clientDuration.labels(opts.caller, subject, "OK")));
    h.observe(ms / 1000);
  };

  const request = async (subject: string, data: Uint8Array | string, ro: RequestOptions = {}): Promise<Msg> => {
    const payload = typeof data === "string" ? enc.encode(data) : data;
    const now = Date.now();
    const deadline = Math.min(ro.deadlineEpochMs ?? Infinity, now + (ro.timeoutMs ?? opts.defaultTimeoutMs));
    const t0 = performance.now();
    let code = "OK";
    try {
      if (deadline - now <= 0) throw new GraphError("DEADLINE_EXCEEDED", `deadline passed before calling ${subject}`);
      return await withClientSpan(subject, payload.length, async (ctx, span) => {
        for (let attempt = 1; ; attempt++) {
          const h = natsHeaders();
          if (ro.headers) for (const [k, v] of Object.entries(ro.headers)) h.set(k, v);
          h.set(Headers.Deadline, String(deadline));
          injectContext(h, ctx);
          try {
            const left = Math.floor(deadline - Date.now());
            const reply = await send(subject, payload, h, {
              timeoutMs: left,
              livenessMs: ro.idempotent === undefined ? undefined : livenessFor(left),
            });
            const ge = fromMsg(reply);
            if (ge) throw ge;
            if (attempt > 1) metrics.retries.labels(opts.caller, subject, "lost", "OK").inc();
            ro.onReplyHeaders?.((k) => reply.headers?.get(k) || undefined);
            return reply;
          } catch (err) {
            const lost = err instanceof AttemptLostError;
            const left = deadline - Date.now();
            if (attempt > 1)
              metrics.retries.labels(opts.caller, subject, "lost", natsErrorToGraphError(err, subject).code).inc();
            if (!lost || !ro.idempotent || attempt > 1 || left < MIN_RETRY_MS) throw err;
            span.addEvent("retry", {
              "sg.retry.reason": "lost",
              "sg.retry.attempt": attempt + 1,
              "sg.retry.deadline_left_ms": Math.round(left),
            });
            opts.log?.warn("replica stopped answering; retrying on another replica", {
              subject,
              deadline_left_ms: Math.round(left),
            });
          }
        }
      });
    } catch (err) {
      const ge = natsErrorToGraphError(err, subject);
      code = ge.code;
      throw ge;
    } finally {
      observe(subject, code, performance.now() - t0);
    }
  };

  const requestJson = async (
    subject: string,
    body: unknown,
    ro: RequestOptions & { schema?: z.ZodType } = {},
  ): Promise<unknown> => {
    // Bytes go as they are (e.g. an image); anything else is sent as JSON.
    const reply = await request(subject, body instanceof Uint8Array ? body : JSON.stringify(body ?? null), ro);
    let value: unknown;
    try {
      value = JSON.parse(dec.decode(reply.data));
    } catch {
      opts.log?.error("reply is not JSON", { subject });
      throw new GraphError("CONTRACT_VIOLATION", `${subject} answered with a body that is not JSON`);
    }
    if (!ro.schema) return value;
    const r = ro.schema.safeParse(value);
    if (!r.success) {
      opts.log?.error("reply violates the subject's schema", { subject, issues: r.error.issues.slice(0, 5) });
      throw new GraphError("CONTRACT_VIOLATION", `${subject} answered with a payload that does not match its schema`);
    }
    return r.data;
  };

  const call = async <D extends EndpointDef>(
    def: D,
    subject: string,
    input: InputOf<D["request"]>,
    ro: RequestOptions = {},
  ): Promise<ValueOf<D["reply"]>> => {
    const e = encodePayload(def.request, input, "BAD_REQUEST");
    const reply = await request(subject, e.data, {
      ...ro,
      idempotent: def.idempotent,
      headers: ro.headers ? { ...ro.headers, ...e.headers } : e.headers,
    });
    try {
      return decodePayload(
        def.reply,
        reply.data,
        (k) => reply.headers?.get(k) || undefined,
        "CONTRACT_VIOLATION",
      ) as ValueOf<D["reply"]>;
    } catch (err) {
      opts.log?.error("reply violates the endpoint's contract", {
        subject,
        error: err instanceof Error ? err.message : String(err),
      });
      throw err;
    }
  };

  return { request, requestJson: requestJson as Client["requestJson"], call };
}
