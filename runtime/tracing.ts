/**
 * W3C trace context through NATS headers, and the span helpers the kit wraps every request in.
 * Uses only @opentelemetry/api: without an SDK started (runtime/telemetry.ts) every call is a cheap no-op,
 * and attributes are only built for spans that record.
 *
 * Span shapes (messaging semantic conventions 1.45, request/reply flavour):
 *  - caller:  `send <subject>`    kind CLIENT, messaging.operation.type=send, parent = the active context;
 *             its context goes into the request's `traceparent`/`tracestate` headers.
 *  - callee:  `process <subject>` kind SERVER, messaging.operation.type=process, parent = the headers' context,
 *             messaging.consumer.group.name = the queue group; active while the handler runs.
 *  - HTTP:    `<METHOD> <route>`   kind SERVER at the ingress (HTTP semantic conventions).
 *  - batches: `process <subject> (batch)` kind CONSUMER on ROOT_CONTEXT, one link per member request
 *             (and from each member back to it), messaging.batch.message_count = number of members.
 * Failures: 5xx / unknown -> status ERROR + exception event; 4xx -> status UNSET; both set error.type to the code.
 */
import {
  context,
  propagation,
  trace,
  SpanKind,
  SpanStatusCode,
  ROOT_CONTEXT,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanContext,
  type TextMapGetter,
  type TextMapSetter,
} from "@opentelemetry/api";
import { Match, type MsgHdrs } from "@nats-io/transport-node";
import { GraphError } from "../subjects/errors.ts";
import {
  ATTR_ERROR_TYPE,
  ATTR_MESSAGING_BATCH_MESSAGE_COUNT,
  ATTR_MESSAGING_CONSUMER_GROUP_NAME,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_MESSAGE_BODY_SIZE,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM,
  ATTR_MESSAGING_SYSTEM_NAME,
  MESSAGING_SYSTEM_NATS,
} from "./semconv.ts";

export const tracer = trace.getTracer("servegraph", "0.1.0");

export const natsHeaderSetter: TextMapSetter<MsgHdrs> = { set: (h, k, v) => h.set(k, v) };
export const natsHeaderGetter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (h) => (h ? [...h.keys()] : []),
  // MsgHdrs.get matches the name exactly by default, and returns "" for a missing one (OTel expects undefined).
  // Header names are case-insensitive (W3C trace context, HTTP): a `Traceparent` from another client must match.
  get: (h, k) => (h ? h.get(k, Match.IgnoreCase) || undefined : undefined),
};

export function injectContext(h: MsgHdrs, ctx: Context = context.active()): void {
  propagation.inject(ctx, h, natsHeaderSetter);
}

export function extractContext(h: MsgHdrs | undefined): Context {
  return propagation.extract(ROOT_CONTEXT, h, natsHeaderGetter);
}

function messagingAttrs(op: "send" | "process", subject: string, bytes: number, queue?: string): Attributes {
  const a: Attributes = {
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
  if (!span.isRecording()) return;
  const ge = GraphError.from(err);
  span.setAttribute(ATTR_ERROR_TYPE, ge.code);
  if (ge.status >= 500) {
    span.recordException(err instanceof Error ? err : ge);
    span.setStatus({ code: SpanStatusCode.ERROR, message: ge.message });
  }
}

/** A CLIENT span around a NATS request; `fn` gets the context to inject into the outgoing headers. */
export async function withClientSpan<T>(
  subject: string,
  bytes: number,
  fn: (ctx: Context, span: Span) => Promise<T>,
): Promise<T> {
  const active = context.active();
  const span = tracer.startSpan(`send ${subject}`, { kind: SpanKind.CLIENT }, active);
  if (span.isRecording()) span.setAttributes(messagingAttrs("send", subject, bytes));
  const ctx = trace.setSpan(active, span);
  try {
    return await context.with(ctx, fn, undefined, ctx, span);
  } catch (err) {
    recordSpanError(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** A SERVER span for a handled request, child of the caller's context from the headers. */
export async function withServerSpan<T>(
  subject: string,
  queue: string,
  headers: MsgHdrs | undefined,
  bytes: number,
  fn: (span: Span) => Promise<T>,
  links?: Link[],
): Promise<T> {
  const parent = extractContext(headers);
  const span = tracer.startSpan(`process ${subject}`, { kind: SpanKind.SERVER, ...(links ? { links } : {}) }, parent);
  if (span.isRecording()) span.setAttributes(messagingAttrs("process", subject, bytes, queue));
  try {
    return await context.with(trace.setSpan(parent, span), fn, undefined, span);
  } catch (err) {
    recordSpanError(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** An INTERNAL span (decode, preprocess, inference...) under the active context. */
export async function withSpan<T>(name: string, attrs: Attributes, fn: (span: Span) => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, { kind: SpanKind.INTERNAL }, async (span) => {
    if (span.isRecording()) span.setAttributes(attrs);
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

/**
 * The span of one batched operation (e.g. a model forward pass): its own trace (ROOT_CONTEXT), one link per
 * member request (those without a valid span context are not linked: only possible when the members were not
 * traced), messaging.batch.message_count = the number of members. The caller ends it.
 */
export function startBatchSpan(name: string, members: readonly (SpanContext | undefined)[], attrs: Attributes): Span {
  const links: Link[] = [];
  for (const sc of members) if (sc && trace.isSpanContextValid(sc)) links.push({ context: sc });
  const span = tracer.startSpan(name, { kind: SpanKind.CONSUMER, links }, ROOT_CONTEXT);
  if (span.isRecording()) span.setAttributes({ ...attrs, [ATTR_MESSAGING_BATCH_MESSAGE_COUNT]: members.length });
  return span;
}

export interface HttpServerSpanInfo {
  method: string;
  /** Route template (`/greeting/:name`), undefined when no route matched. */
  route: string | undefined;
  path: string;
  scheme: string;
  /** Incoming HTTP headers; a valid `traceparent` among them makes the span its child. */
  headers: Record<string, string | string[] | undefined>;
  userAgent?: string | undefined;
}

/** Starts the SERVER span of an HTTP request; returns it with the context handlers must run in. */
export function startHttpServerSpan(info: HttpServerSpanInfo): { span: Span; ctx: Context } {
  const parent = propagation.extract(ROOT_CONTEXT, info.headers);
  const span = tracer.startSpan(
    info.route ? `${info.method} ${info.route}` : info.method,
    { kind: SpanKind.SERVER },
    parent,
  );
  if (span.isRecording()) {
    span.setAttributes({
      "http.request.method": info.method,
      "url.path": info.path,
      "url.scheme": info.scheme,
      ...(info.route ? { "http.route": info.route } : {}),
      ...(info.userAgent ? { "user_agent.original": info.userAgent } : {}),
    });
  }
  return { span, ctx: trace.setSpan(parent, span) };
}

/**
 * Ends an HTTP SERVER span: http.response.status_code, error.type (the GraphError code when known) from 400 on,
 * ERROR status from 500 on (4xx stay UNSET on a server span). `statusCode` undefined: no response was sent.
 */
export function endHttpServerSpan(span: Span, statusCode: number | undefined, errorCode?: string): void {
  if (span.isRecording()) {
    if (statusCode !== undefined) span.setAttribute("http.response.status_code", statusCode);
    if (statusCode === undefined || statusCode >= 400)
      span.setAttribute(ATTR_ERROR_TYPE, errorCode ?? String(statusCode));
    if (statusCode !== undefined && statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  }
  span.end();
}

export function currentTraceId(): string | undefined {
  const sc = trace.getSpanContext(context.active());
  return sc && trace.isSpanContextValid(sc) ? sc.traceId : undefined;
}
