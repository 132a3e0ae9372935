/**
 * Typed NATS requests with a deadline. Every failure becomes a GraphError:
 * no responders -> UNAVAILABLE at once; timeout -> DEADLINE_EXCEEDED; an error reply -> its code;
 * a reply that fails the response schema -> CONTRACT_VIOLATION.
 */
import { errors, headers as natsHeaders, type Msg, type NatsConnection } from "@nats-io/transport-node";
import type { z } from "zod";
import { GraphError } from "../subjects/errors.ts";
import { Headers } from "../subjects/headers.ts";
import { fromMsg } from "./errors-wire.ts";
import type { Logger } from "./log.ts";
import { metrics } from "./metrics.ts";
import { injectContext, withClientSpan } from "./tracing.ts";

export interface RequestOptions {
  /** Relative timeout; the effective deadline is the earlier of this and `deadlineEpochMs`. */
  timeoutMs?: number;
  /** Absolute deadline (epoch ms), usually the incoming request's, so a chain never outlives its caller. */
  deadlineEpochMs?: number;
  headers?: Record<string, string>;
}

export interface Client {
  /** Raw request: returns the reply message (binary payloads), throws GraphError on any failure. */
  request(subject: string, data: Uint8Array | string, opts?: RequestOptions): Promise<Msg>;
  /** JSON (or raw bytes) in, JSON out, reply validated by `schema` when given. */
  requestJson<S extends z.ZodType>(subject: string, body: unknown, opts: RequestOptions & { schema: S }): Promise<z.output<S>>;
  requestJson(subject: string, body: unknown, opts?: RequestOptions): Promise<unknown>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function toGraphError(err: unknown, subject: string): GraphError {
  if (err instanceof GraphError) return err;
  if (err instanceof errors.RequestError && err.isNoResponders()) {
    return new GraphError("UNAVAILABLE", `no replica of ${subject} is running`, { cause: err });
  }
  if (err instanceof errors.NoRespondersError) return new GraphError("UNAVAILABLE", `no replica of ${subject} is running`, { cause: err });
  if (err instanceof errors.TimeoutError) return new GraphError("DEADLINE_EXCEEDED", `${subject} did not answer before the deadline`, { cause: err });
  if (err instanceof errors.InvalidArgumentError && /max_payload/.test(err.message)) {
    return new GraphError("PAYLOAD_TOO_LARGE", "message exceeds the NATS max_payload", { cause: err });
  }
  if (err instanceof errors.ClosedConnectionError || err instanceof errors.DrainingConnectionError) {
    return new GraphError("UNAVAILABLE", "NATS connection is closing", { cause: err });
  }
  return GraphError.from(err);
}

export function createClient(nc: NatsConnection, opts: { caller: string; defaultTimeoutMs: number; log?: Logger }): Client {
  const request = async (subject: string, data: Uint8Array | string, ro: RequestOptions = {}): Promise<Msg> => {
    const payload = typeof data === "string" ? enc.encode(data) : data;
    const now = Date.now();
    const deadline = Math.min(ro.deadlineEpochMs ?? Infinity, now + (ro.timeoutMs ?? opts.defaultTimeoutMs));
    const remaining = Math.floor(deadline - now);
    const t0 = performance.now();
    let code = "OK";
    try {
      if (remaining <= 0) throw new GraphError("DEADLINE_EXCEEDED", `deadline passed before calling ${subject}`);
      return await withClientSpan(subject, payload.length, async (ctx) => {
        const h = natsHeaders();
        if (ro.headers) for (const [k, v] of Object.entries(ro.headers)) h.set(k, v);
        h.set(Headers.Deadline, String(deadline));
        injectContext(h, ctx);
        let reply: Msg;
        try {
          reply = await nc.request(subject, payload, { timeout: remaining, headers: h });
        } catch (err) {
          throw toGraphError(err, subject);
        }
        const ge = fromMsg(reply);
        if (ge) throw ge;
        return reply;
      });
    } catch (err) {
      const ge = toGraphError(err, subject);
      code = ge.code;
      throw ge;
    } finally {
      metrics.clientDuration.labels(opts.caller, subject, code).observe(performance.now() - t0);
    }
  };

  const requestJson = async (subject: string, body: unknown, ro: RequestOptions & { schema?: z.ZodType } = {}): Promise<unknown> => {
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

  return { request, requestJson: requestJson as Client["requestJson"] };
}
