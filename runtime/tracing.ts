/**
 * W3C trace context through NATS headers, and the client/server span helpers the kit wraps every request in.
 * Uses only @opentelemetry/api: without an SDK started (runtime/telemetry.ts) every call is a cheap no-op.
 */
import {
  context, propagation, trace, SpanKind, SpanStatusCode, ROOT_CONTEXT,
  type Context, type Link, type Span, type TextMapGetter, type TextMapSetter,
} from "@opentelemetry/api";
import type { MsgHdrs } from "@nats-io/transport-node";
import { GraphError } from "../subjects/errors.ts";
import {
  ATTR_ERROR_TYPE, ATTR_MESSAGING_CONSUMER_GROUP_NAME, ATTR_MESSAGING_DESTINATION_NAME, ATTR_MESSAGING_MESSAGE_BODY_SIZE,
  ATTR_MESSAGING_OPERATION_NAME, ATTR_MESSAGING_OPERATION_TYPE, ATTR_MESSAGING_SYSTEM, ATTR_MESSAGING_SYSTEM_NAME, MESSAGING_SYSTEM_NATS,
} from "./semconv.ts";

export const tracer = trace.getTracer("servegraph", "0.1.0");

export const natsHeaderSetter: TextMapSetter<MsgHdrs> = { set: (h, k, v) => h.set(k, v) };
export const natsHeaderGetter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (h) => (h ? [...h.keys()] : []),
  // MsgHdrs.get returns "" for a missing key; OTel expects undefined. Lookup is case-insensitive in nats.js.
  get: (h, k) => (h ? h.get(k) || undefined : undefined),
};

export function injectContext(h: MsgHdrs, ctx: Context = context.active()): void {
  propagation.inject(ctx, h, natsHeaderSetter);
}

export function extractContext(h: MsgHdrs | undefined): Context {
  return propagation.extract(ROOT_CONTEXT, h, natsHeaderGetter);
}

function messagingAttrs(op: "send" | "process", subject: string, bytes: number, queue?: string): Record<string, string | number> {
  const a: Record<string, string | number> = {
    [ATTR_MESSAGING_SYSTEM_NAME]: MESSAGING_SYSTEM_NATS,
    [ATTR_MESSAGING_SYSTEM]: MESSAGING_SYSTEM_NATS,
    [ATTR_MESSAGING_OPERATION_TYPE]: op,
    [ATTR_MESSAGING_OPERATION_NAME]: op === "send" ? "request" : "process",
    [ATTR_MESSAGING_DESTINATION_NAME]: subject,
    [ATTR_MESSAGING_MESSAGE_BODY_SIZE]: bytes,
  };
  if (queue) a[ATTR_MESSAGING_CONSUMER_GROUP_NAME] = queue;
  return a;
}

/** Marks a span failed the way the house style says: 5xx/unknown -> ERROR, 4xx -> UNSET (benign). */
export function recordSpanError(span: Span, err: unknown): void {
  const ge = GraphError.from(err);
  span.setAttribute(ATTR_ERROR_TYPE, ge.code);
  if (ge.status >= 500) {
    span.recordException(err instanceof Error ? err : ge);
    span.setStatus({ code: SpanStatusCode.ERROR, message: ge.message });
  }
}

/** A CLIENT span around a NATS request; `fn` gets the context to inject into the outgoing headers. */
export async function withClientSpan<T>(subject: string, bytes: number, fn: (ctx: Context) => Promise<T>): Promise<T> {
  const span = tracer.startSpan(`send ${subject}`, { kind: SpanKind.CLIENT, attributes: messagingAttrs("send", subject, bytes) });
  const ctx = trace.setSpan(context.active(), span);
  try {
    return await context.with(ctx, () => fn(ctx));
  } catch (err) {
    recordSpanError(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** A SERVER span for a handled request, child of the caller's context from the headers. */
export async function withServerSpan<T>(
  subject: string, queue: string, headers: MsgHdrs | undefined, bytes: number, fn: (span: Span) => Promise<T>, links?: Link[],
): Promise<T> {
  const parent = extractContext(headers);
  const span = tracer.startSpan(
    `process ${subject}`,
    { kind: SpanKind.SERVER, attributes: messagingAttrs("process", subject, bytes, queue), ...(links ? { links } : {}) },
    parent,
  );
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (err) {
    recordSpanError(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** An INTERNAL span (decode, preprocess, inference...) under the active context. */
export async function withSpan<T>(name: string, attrs: Record<string, string | number | boolean>, fn: (span: Span) => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, { kind: SpanKind.INTERNAL, attributes: attrs }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      recordSpanError(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

export function currentTraceId(): string | undefined {
  const sc = trace.getSpanContext(context.active());
  return sc && trace.isSpanContextValid(sc) ? sc.traceId : undefined;
}
