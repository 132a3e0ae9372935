/**
 * Every endpoint of the reference graphs, defined once (a node of one's own defines its endpoints the same way, in a
 * file of its own beside this one, listed in subjects/registry.ts): its name (the last subject token), what its request and
 * reply carry (a zod schema of JSON, a binary tensor of fixed dtype and shape, or raw bytes with typed headers),
 * the error codes it may answer with, and whether a caller may safely send it twice.
 *
 * `runtime/` serves and calls endpoints through these definitions (`service.serve(def, ...)`,
 * `client.call(def, ...)`), so a handler receives parsed, checked input and a caller gets a typed reply; the
 * ingress and direct NATS callers are checked by the same code. The wire format is the contract:
 *  - json:   UTF-8 JSON body (an empty body reads as `undefined`, e.g. for endpoints that take no input);
 *  - tensor: raw little-endian bytes, `Graph-Dtype` and `Graph-Shape` headers (never JSON); an endpoint may accept
 *            several dtypes (infer's `run`: uint8 pixels or float32 normalised values), the header says which;
 *  - bytes:  the body as it is (e.g. an image), with the endpoint's headers.
 *
 * The subject of an endpoint is `<prefix>.<node>.<endpoint>`: the node name comes from graph.config.ts, since one
 * service module may serve several nodes (variant-a and variant-b).
 */
import { z } from "zod";
import { GraphError, isErrorCode, type ErrorCode } from "./errors.ts";
import { Headers } from "./headers.ts";
import { isToken } from "./names.ts";
import {
  GreetReply,
  GreetRequest,
  GreeterEndpoints,
  InferInfo,
  Labels,
  MAX_TOP_K,
  Predictions,
  ProcessReply,
  ProcessRequest,
  VariantReply,
  VariantRequest,
} from "./schemas.ts";
import { TensorDtype, checkTensor, formatShape, parseShape } from "./tensor-codec.ts";

// --- payload kinds --------------------------------------------------------------------------------------

export interface JsonPayload<S extends z.ZodType = z.ZodType> {
  readonly kind: "json";
  readonly schema: S;
}

export interface TensorPayload {
  readonly kind: "tensor";
  /** The element types accepted (at least one). A value sent without a `dtype` is of the first. */
  readonly dtypes: readonly TensorDtype[];
  /** Dimensions; `null` is a dimension of any size (e.g. a model's output width). */
  readonly shape: readonly (number | null)[];
}

export interface BytesPayload<H extends z.ZodType = z.ZodType> {
  readonly kind: "bytes";
  /** Schema of the headers the endpoint reads (by header name), parsed from their string values. */
  readonly headers: H;
  /** The code (and message) an empty body is refused with. */
  readonly empty: { readonly code: ErrorCode; readonly message: string };
}

export type Payload = JsonPayload | TensorPayload | BytesPayload;

/** A tensor as it travels: bytes (checked, not copied), its shape and element type. */
export interface Tensor {
  readonly data: Uint8Array;
  readonly shape: readonly number[];
  readonly dtype: TensorDtype;
}

/** A tensor to send: `dtype` may be left out when it is the payload's first (e.g. its only) dtype. */
export interface TensorInput {
  readonly data: Uint8Array;
  readonly shape: readonly number[];
  readonly dtype?: TensorDtype;
}

/** A raw body with its typed headers. */
export interface Bytes<H> {
  readonly data: Uint8Array;
  readonly headers: H;
}

/** A zod schema's type on the sending side ("in": defaults not applied yet) or the receiving side ("out"). */
type SchemaSide<S extends z.ZodType, Side> = Side extends "in" ? z.input<S> : z.output<S>;
type PayloadValue<P, Side extends "in" | "out"> =
  P extends JsonPayload<infer S>
    ? SchemaSide<S, Side>
    : P extends TensorPayload
      ? Side extends "in"
        ? TensorInput
        : Tensor
      : P extends BytesPayload<infer H>
        ? Bytes<SchemaSide<H, Side>>
        : never;

/** The value a handler receives (decoded) or a caller gets back for a payload. */
export type ValueOf<P> = PayloadValue<P, "out">;
/** What a caller passes to encode a payload (json: the schema's input type; bytes: the headers' input type). */
export type InputOf<P> = PayloadValue<P, "in">;

export interface EndpointDef<Req extends Payload = Payload, Rep extends Payload = Payload> {
  /** The service module that serves it (a folder under services/). */
  readonly service: string;
  /** The last subject token. */
  readonly name: string;
  readonly description: string;
  readonly request: Req;
  readonly reply: Rep;
  /** Codes this endpoint may answer with (besides the ones any hop may: UNAVAILABLE, OVERLOADED, DEADLINE_EXCEEDED, INTERNAL). */
  readonly errors: readonly ErrorCode[];
  /** Safe to send twice: a retry on another replica cannot change the outcome. */
  readonly idempotent: boolean;
  /**
   * Requests are grouped into batches by the serving node (`ctx.serveBatch`, or a batcher of its own like infer's):
   * the node's `batching` knobs in graph.config.ts apply to it, and `check` refuses `batching` on a node that serves
   * no batched endpoint.
   */
  readonly batched?: boolean;
  /**
   * A request the endpoint accepts and a reply it may give: the contract test round-trips them through a real
   * nats-server the day the definition is written, and the ingress's OpenAPI document shows them.
   */
  readonly example?: { readonly request: InputOf<Req>; readonly reply: InputOf<Rep> };
}

/**
 * Defines an endpoint of a node: its service folder, its name (the last subject token), its request and reply
 * payloads ({@link json}, {@link tensor}, {@link bytes}), the codes it may answer with and whether it is safe to send
 * twice. Checked here, so that a bad definition fails where it is written, not at the first request.
 */
export function endpoint<Req extends Payload, Rep extends Payload>(def: EndpointDef<Req, Rep>): EndpointDef<Req, Rep> {
  if (!isToken(def.service))
    throw new TypeError(
      `endpoint ${def.name}: service must be a service folder's name (a subject token), got ${JSON.stringify(def.service)}`,
    );
  if (!isToken(def.name))
    throw new TypeError(
      `endpoint of ${def.service}: name must be a subject token [A-Za-z0-9_-], got ${JSON.stringify(def.name)}`,
    );
  for (const c of def.errors)
    if (!isErrorCode(c))
      throw new TypeError(
        `endpoint ${def.service}.${def.name}: ${JSON.stringify(c)} is not a code of the error table (subjects/errors.ts)`,
      );
  for (const p of [def.request, def.reply]) {
    if (p.kind === "tensor" && p.dtypes.length === 0)
      throw new TypeError(`endpoint ${def.service}.${def.name}: a tensor payload accepts at least one dtype`);
  }
  if (def.example) {
    for (const [side, p, v] of [
      ["request", def.request, def.example.request],
      ["reply", def.reply, def.example.reply],
    ] as const) {
      try {
        encodePayload(p, v as never, "BAD_REQUEST");
      } catch (err) {
        throw new TypeError(
          `endpoint ${def.service}.${def.name}: its example ${side} does not fit its own ${side} payload: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
    }
  }
  return Object.freeze(def);
}

/** A JSON payload checked by a zod schema. */
export const json = <S extends z.ZodType>(schema: S): JsonPayload<S> => ({ kind: "json", schema });
/** A raw tensor payload: the dtypes accepted (the first is the default) and its shape (`null`: any size). */
export const tensor = (dtypes: readonly TensorDtype[], shape: readonly (number | null)[]): TensorPayload => ({
  kind: "tensor",
  dtypes,
  shape,
});
/** Raw bytes (an image, a document) with the headers the endpoint reads, and how an empty body is refused. */
export const bytes = <H extends z.ZodType>(
  headers: H,
  empty: { code: ErrorCode; message: string },
): BytesPayload<H> => ({ kind: "bytes", headers, empty });
/** Endpoints that take no input accept an empty body or `{}`. */
export const NoInput = json(z.strictObject({}).optional());

// --- classification -----------------------------------------------------------------------------------------

/** `top_k`: a plain decimal integer within 1..MAX_TOP_K (no `0x10`, `1e3`, `+5`), as a query value or header. */
export const TopK = z
  .union([
    z.number(),
    z
      .string()
      .regex(/^[0-9]{1,4}$/, "must be a decimal integer")
      .transform(Number),
  ])
  .pipe(z.number().int().min(1).max(MAX_TOP_K));
export const DEFAULT_TOP_K = 5;

/** The media types the classify endpoint accepts; anything else is UNSUPPORTED_MEDIA_TYPE. */
export const IMAGE_MEDIA_TYPE = /^(image\/[\w.+-]+|application\/octet-stream)(;.*)?$/i;

/** The one image a model gets: RGB, CHW, 224x224, with the batch dimension. */
export const IMAGE_TENSOR_SHAPE = [1, 3, 224, 224] as const;

const ClassifyHeaders = z.object({
  [Headers.TopK]: TopK.default(DEFAULT_TOP_K),
  [Headers.ContentType]: z.string().max(256).regex(IMAGE_MEDIA_TYPE, "is not an image media type").optional(),
});

export const Classify = endpoint({
  service: "preprocess",
  name: "classify",
  description: `Image bytes in (${Headers.ContentType} image/* or application/octet-stream, ${Headers.TopK} 1..${MAX_TOP_K}, default ${DEFAULT_TOP_K}); top-k labelled scores out.`,
  request: bytes(ClassifyHeaders, { code: "INVALID_IMAGE", message: "empty image" }),
  reply: json(Predictions),
  errors: ["BAD_REQUEST", "INVALID_IMAGE", "UNSUPPORTED_MEDIA_TYPE", "PAYLOAD_TOO_LARGE", "QUEUE_FULL", "MODEL_ERROR"],
  idempotent: true,
});

/**
 * One image in, its row of logits out. The image is either uint8 RGB pixels, CHW (what preprocess sends: a quarter
 * of the bytes; infer normalises them with subjects/image-normalization.ts, bit-identical to the reference), or
 * float32 values already normalised that way (direct callers with their own normalisation).
 */
export const InferRun = endpoint({
  service: "infer",
  name: "run",
  description:
    "One image tensor in, 1x3x224x224 CHW: uint8 RGB pixels (infer normalises them with the ImageNet mean/std) or float32 already normalised; its row of logits out (float32).",
  request: tensor([TensorDtype.float32, TensorDtype.uint8], IMAGE_TENSOR_SHAPE),
  reply: tensor([TensorDtype.float32], [null]),
  errors: ["BAD_REQUEST", "QUEUE_FULL", "MODEL_ERROR"],
  idempotent: true,
  batched: true,
});

export const InferLabels = endpoint({
  service: "infer",
  name: "labels",
  description: "The model's class labels; index = logit row.",
  request: NoInput,
  reply: json(Labels),
  errors: [],
  idempotent: true,
});

export const InferInfoEndpoint = endpoint({
  service: "infer",
  name: "info",
  description: "The loaded model, its execution provider and batching knobs.",
  request: NoInput,
  reply: json(InferInfo),
  errors: [],
  idempotent: true,
});

// --- two-node chain -------------------------------------------------------------------------------------------

export const Greet = endpoint({
  service: "greeter",
  name: "greet",
  description: "A greeting for `name`.",
  request: json(GreetRequest),
  reply: json(GreetReply),
  errors: ["BAD_REQUEST"],
  idempotent: true,
});

export const Greeting = endpoint({
  service: "greeter-proxy",
  name: "greeting",
  description: "Calls greeter over NATS and returns its greeting.",
  request: json(GreetRequest),
  reply: json(GreetReply),
  errors: ["BAD_REQUEST"],
  idempotent: true,
});

export const GreeterEndpointsEndpoint = endpoint({
  service: "greeter-proxy",
  name: "endpoints",
  description: "The greeter subject as found in-module (pattern A) and as injected (pattern B).",
  request: NoInput,
  reply: json(GreeterEndpoints),
  errors: [],
  idempotent: true,
});

// --- A/B routing ----------------------------------------------------------------------------------------------

export const AbProcess = endpoint({
  service: "ab-router",
  name: "process",
  description: "Picks variant A or B for `user_key` and forwards the message to it.",
  request: json(ProcessRequest),
  reply: json(ProcessReply),
  errors: ["BAD_REQUEST"],
  idempotent: true,
});

export const VariantProcess = endpoint({
  service: "variant",
  name: "process",
  description: "Processes a message the way this variant does.",
  request: json(VariantRequest),
  reply: json(VariantReply),
  errors: ["BAD_REQUEST"],
  idempotent: true,
});

/** The reference graphs' endpoints; every endpoint of the project (these and the user's) is subjects/registry.ts. */
export const REFERENCE_ENDPOINTS = [
  Classify,
  InferRun,
  InferLabels,
  InferInfoEndpoint,
  Greet,
  Greeting,
  GreeterEndpointsEndpoint,
  AbProcess,
  VariantProcess,
] as const;

// --- codec ------------------------------------------------------------------------------------------------------

/** Reads a header; `undefined` when absent (nats.js returns "" for a missing header). */
export type HeaderReader = (name: string) => string | undefined;

export interface Encoded {
  readonly data: Uint8Array;
  readonly headers: Record<string, string>;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function issuesMessage(err: z.ZodError, where: string): string {
  return err.issues.map((i) => `${[where, ...i.path].filter((p) => p !== "").join(".")}: ${i.message}`).join("; ");
}

/** The payload's shape as text, `n` for a dimension of any size. */
const shapePattern = (p: TensorPayload): string => p.shape.map((d) => d ?? "n").join(",");

/** The header names a bytes payload reads. */
const headerNames = (p: BytesPayload): string[] => Object.keys((p.headers as unknown as z.ZodObject).shape ?? {});

function tensorShape(p: TensorPayload, shape: readonly number[]): boolean {
  return shape.length === p.shape.length && p.shape.every((d, i) => d === null || d === shape[i]);
}

/**
 * Decodes and checks a payload. `fail` is the code for a payload that does not match: BAD_REQUEST for a
 * request (the caller's fault), CONTRACT_VIOLATION for a reply (the callee's).
 */
export function decodePayload<P extends Payload>(
  p: P,
  data: Uint8Array,
  header: HeaderReader,
  fail: "BAD_REQUEST" | "CONTRACT_VIOLATION",
): ValueOf<P> {
  switch (p.kind) {
    case "json": {
      let raw: unknown;
      if (data.length > 0) {
        try {
          raw = JSON.parse(dec.decode(data));
        } catch {
          throw new GraphError(
            fail,
            fail === "BAD_REQUEST" ? "request body is not valid JSON" : "reply body is not JSON",
          );
        }
      }
      const r = p.schema.safeParse(raw);
      if (!r.success)
        throw new GraphError(fail, issuesMessage(r.error, fail === "BAD_REQUEST" ? "" : "reply"), {
          details: r.error.issues,
        });
      return r.data as ValueOf<P>;
    }
    case "tensor": {
      const shape = parseShape(header(Headers.Shape), fail);
      if (!tensorShape(p, shape)) {
        throw new GraphError(fail, `expected a tensor of shape ${shapePattern(p)}, got ${formatShape(shape)}`);
      }
      const dtype = checkTensor(data, header(Headers.Dtype), p.dtypes, shape, fail);
      return { data, shape, dtype } as ValueOf<P>;
    }
    case "bytes": {
      const raw: Record<string, string> = {};
      for (const k of headerNames(p)) {
        const v = header(k);
        if (v !== undefined) raw[k] = v;
      }
      const r = p.headers.safeParse(raw);
      if (!r.success) {
        const media = r.error.issues.find((i) => i.path[0] === Headers.ContentType);
        if (media)
          throw new GraphError(
            "UNSUPPORTED_MEDIA_TYPE",
            `${Headers.ContentType} ${JSON.stringify(raw[Headers.ContentType]?.slice(0, 64))} is not accepted`,
          );
        throw new GraphError(fail, issuesMessage(r.error, ""), { details: r.error.issues });
      }
      if (data.length === 0) throw new GraphError(p.empty.code, p.empty.message);
      return { data, headers: r.data } as ValueOf<P>;
    }
  }
}

/** Encodes a payload after checking it against the definition (a caller's bad input never leaves the process). */
export function encodePayload<P extends Payload>(
  p: P,
  value: InputOf<P>,
  fail: "BAD_REQUEST" | "CONTRACT_VIOLATION",
): Encoded {
  switch (p.kind) {
    case "json": {
      const r = p.schema.safeParse(value);
      if (!r.success) throw new GraphError(fail, issuesMessage(r.error, ""), { details: r.error.issues });
      // The input is sent (not the parsed output) so that defaults are applied once, by the receiver.
      return { data: value === undefined ? new Uint8Array(0) : enc.encode(JSON.stringify(value)), headers: {} };
    }
    case "tensor": {
      const t = value as TensorInput;
      if (!tensorShape(p, t.shape))
        throw new GraphError(fail, `tensor shape ${formatShape(t.shape)} does not match ${shapePattern(p)}`);
      const dtype = checkTensor(t.data, t.dtype ?? p.dtypes[0], p.dtypes, t.shape, fail);
      return { data: t.data, headers: { [Headers.Dtype]: dtype, [Headers.Shape]: formatShape(t.shape) } };
    }
    case "bytes": {
      const b = value as Bytes<Record<string, unknown>>;
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(b.headers ?? {})) if (v !== undefined) headers[k] = String(v);
      // Checked exactly as the receiver will check it.
      decodePayload(p, b.data, (k) => headers[k], fail);
      return { data: b.data, headers };
    }
  }
}

/** The payload's description for $SRV.INFO endpoint metadata. */
export function describePayload(p: Payload): string {
  switch (p.kind) {
    case "json":
      return "json";
    case "tensor":
      return `tensor ${p.dtypes.join("|")} ${shapePattern(p)}`;
    case "bytes":
      return `bytes; headers ${headerNames(p).join(", ")}`;
  }
}
