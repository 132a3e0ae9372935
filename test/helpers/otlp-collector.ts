/**
 * An in-process OTLP/HTTP trace receiver on 127.0.0.1:<free port>, for tests. Accepts POST /v1/traces as
 * `http/json` (application/json) and `http/protobuf` (application/x-protobuf), gzip or not, and keeps every
 * span flattened with its resource. Point processes at it with OTEL_EXPORTER_OTLP_ENDPOINT = `endpoint`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { gunzipSync } from "node:zlib";

/** OTLP span kinds (opentelemetry/proto/trace/v1/trace.proto). */
export const OtlpSpanKind = { UNSPECIFIED: 0, INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;
export type OtlpSpanKind = (typeof OtlpSpanKind)[keyof typeof OtlpSpanKind];

export type AttrValue =
  string | number | boolean | bigint | Uint8Array | AttrValue[] | { [k: string]: AttrValue } | null;

export interface CollectedLink {
  traceId: string;
  spanId: string;
  attributes: Record<string, AttrValue>;
}

export interface CollectedSpan {
  traceId: string;
  spanId: string;
  /** undefined for a root span. */
  parentSpanId: string | undefined;
  name: string;
  kind: number;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: Record<string, AttrValue>;
  links: CollectedLink[];
  status: { code: number; message: string };
  resource: Record<string, AttrValue>;
  /** resource `service.name`. */
  service: string;
  scope: string;
  /** How it arrived. */
  encoding: "json" | "protobuf";
}

export interface OtlpCollector {
  /** Base URL for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces). */
  readonly endpoint: string;
  spans(): CollectedSpan[];
  /** Resolves with all spans once `pred` holds for them; checked on every export, rejects after `timeoutMs`. */
  waitFor(pred: (spans: CollectedSpan[]) => boolean, timeoutMs: number): Promise<CollectedSpan[]>;
  /** Export requests received, by encoding. */
  exports(): { json: number; protobuf: number; rejected: number };
  clear(): void;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function startOtlpCollector(): Promise<OtlpCollector> {
  let collected: CollectedSpan[] = [];
  const counts = { json: 0, protobuf: 0, rejected: 0 };
  let waiters: (() => void)[] = [];
  const notify = (): void => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    let body = Buffer.concat(chunks);
    if (req.method !== "POST" || req.url?.split("?")[0] !== "/v1/traces") {
      counts.rejected++;
      res.writeHead(404).end();
      return;
    }
    try {
      if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
      const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim();
      if (type === "application/json") {
        collected.push(...fromJson(JSON.parse(body.toString("utf8"))));
        counts.json++;
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      } else if (type === "application/x-protobuf") {
        collected.push(...fromProtobuf(body));
        counts.protobuf++;
        res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
      } else {
        counts.rejected++;
        res.writeHead(415).end();
        return;
      }
    } catch (err) {
      counts.rejected++;
      res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ message: String(err) }));
      return;
    }
    notify();
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;

  const close = async (): Promise<void> => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans: () => [...collected],
    exports: () => ({ ...counts }),
    clear: () => {
      collected = [];
    },
    waitFor: (pred, timeoutMs) =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          if (!pred(collected)) return false;
          clearTimeout(timer);
          resolve([...collected]);
          return true;
        };
        const timer = setTimeout(() => {
          waiters = waiters.filter((w) => w !== onExport);
          const names = collected.map((s) => `${s.service}:${s.name}`);
          reject(
            new Error(
              `OTLP collector: condition not met after ${timeoutMs} ms; ${collected.length} spans: ${names.join(", ")}`,
            ),
          );
        }, timeoutMs);
        const onExport = (): void => {
          if (!check()) waiters.push(onExport);
        };
        if (!check()) waiters.push(onExport);
      }),
    close,
    [Symbol.asyncDispose]: close,
  };
}

// ---- OTLP/JSON -------------------------------------------------------------------------------------------

type Json = Record<string, unknown>;
const arr = (x: unknown): Json[] => (Array.isArray(x) ? (x as Json[]) : []);

function jsonAny(v: unknown): AttrValue {
  const o = (v ?? {}) as Json;
  if ("stringValue" in o) return String(o.stringValue);
  if ("boolValue" in o) return Boolean(o.boolValue);
  if ("intValue" in o) return Number(o.intValue);
  if ("doubleValue" in o) return Number(o.doubleValue);
  if ("arrayValue" in o) return arr((o.arrayValue as Json | undefined)?.values).map(jsonAny);
  if ("kvlistValue" in o) return jsonAttrs((o.kvlistValue as Json | undefined)?.values);
  if ("bytesValue" in o) return Buffer.from(String(o.bytesValue), "base64");
  return null;
}

function jsonAttrs(list: unknown): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const kv of arr(list)) out[String(kv.key)] = jsonAny(kv.value);
  return out;
}

/** OTLP/JSON ids are hex strings (the JS exporter also sends hex); accept base64 from other senders. */
function jsonId(v: unknown, bytes: number): string {
  const s = typeof v === "string" ? v : "";
  if (s === "") return "";
  if (new RegExp(`^[0-9a-fA-F]{${bytes * 2}}$`).test(s)) return s.toLowerCase();
  return Buffer.from(s, "base64").toString("hex");
}

function fromJson(req: unknown): CollectedSpan[] {
  const out: CollectedSpan[] = [];
  for (const rs of arr((req as Json).resourceSpans)) {
    const resource = jsonAttrs((rs.resource as Json | undefined)?.attributes);
    for (const ss of arr(rs.scopeSpans)) {
      const scope = String((ss.scope as Json | undefined)?.name ?? "");
      for (const s of arr(ss.spans)) {
        const parent = jsonId(s.parentSpanId, 8);
        const status = (s.status ?? {}) as Json;
        out.push({
          traceId: jsonId(s.traceId, 16),
          spanId: jsonId(s.spanId, 8),
          parentSpanId: parent === "" ? undefined : parent,
          name: String(s.name),
          kind: Number(s.kind ?? 0),
          startTimeUnixNano: BigInt(String(s.startTimeUnixNano ?? 0)),
          endTimeUnixNano: BigInt(String(s.endTimeUnixNano ?? 0)),
          attributes: jsonAttrs(s.attributes),
          links: arr(s.links).map((l) => ({
            traceId: jsonId(l.traceId, 16),
            spanId: jsonId(l.spanId, 8),
            attributes: jsonAttrs(l.attributes),
          })),
          status: { code: Number(status.code ?? 0), message: String(status.message ?? "") },
          resource,
          service: String(resource["service.name"] ?? ""),
          scope,
          encoding: "json",
        });
      }
    }
  }
  return out;
}

// ---- OTLP/protobuf: a minimal wire-format reader for the trace request messages ------------------------

interface Field {
  no: number;
  wire: number;
  varint: bigint;
  bytes: Uint8Array;
}

function* fields(buf: Uint8Array): Generator<Field> {
  let i = 0;
  const varint = (): bigint => {
    let r = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (i >= buf.length) throw new Error("truncated varint");
      const b = buf[i++]!;
      r |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return r;
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const no = key >>> 3;
    const wire = key & 7;
    if (wire === 0) yield { no, wire, varint: varint(), bytes: new Uint8Array(0) };
    else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      if (i + n > buf.length) throw new Error("truncated fixed field");
      yield { no, wire, varint: 0n, bytes: buf.subarray(i, i + n) };
      i += n;
    } else if (wire === 2) {
      const n = Number(varint());
      if (i + n > buf.length) throw new Error("truncated length-delimited field");
      yield { no, wire, varint: 0n, bytes: buf.subarray(i, i + n) };
      i += n;
    } else {
      throw new Error(`unsupported wire type ${wire}`);
    }
  }
}

const utf8 = new TextDecoder();
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const fixed64 = (b: Uint8Array): bigint => Buffer.from(b).readBigUInt64LE(0);

function pbAny(buf: Uint8Array): AttrValue {
  for (const f of fields(buf)) {
    switch (f.no) {
      case 1:
        return utf8.decode(f.bytes);
      case 2:
        return f.varint !== 0n;
      case 3:
        return Number(BigInt.asIntN(64, f.varint));
      case 4:
        return Buffer.from(f.bytes).readDoubleLE(0);
      case 5:
        return [...fields(f.bytes)].filter((x) => x.no === 1).map((x) => pbAny(x.bytes));
      case 6:
        return pbAttrs([...fields(f.bytes)].filter((x) => x.no === 1).map((x) => x.bytes));
      case 7:
        return Uint8Array.from(f.bytes);
    }
  }
  return null;
}

function pbAttrs(kvs: Uint8Array[]): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const kv of kvs) {
    let key = "";
    let value: AttrValue = null;
    for (const f of fields(kv)) {
      if (f.no === 1) key = utf8.decode(f.bytes);
      else if (f.no === 2) value = pbAny(f.bytes);
    }
    out[key] = value;
  }
  return out;
}

function pbSpan(buf: Uint8Array, resource: Record<string, AttrValue>, scope: string): CollectedSpan {
  const s: CollectedSpan = {
    traceId: "",
    spanId: "",
    parentSpanId: undefined,
    name: "",
    kind: 0,
    startTimeUnixNano: 0n,
    endTimeUnixNano: 0n,
    attributes: {},
    links: [],
    status: { code: 0, message: "" },
    resource,
    service: String(resource["service.name"] ?? ""),
    scope,
    encoding: "protobuf",
  };
  const attrs: Uint8Array[] = [];
  for (const f of fields(buf)) {
    switch (f.no) {
      case 1:
        s.traceId = hex(f.bytes);
        break;
      case 2:
        s.spanId = hex(f.bytes);
        break;
      case 4:
        if (f.bytes.length) s.parentSpanId = hex(f.bytes);
        break;
      case 5:
        s.name = utf8.decode(f.bytes);
        break;
      case 6:
        s.kind = Number(f.varint);
        break;
      case 7:
        s.startTimeUnixNano = fixed64(f.bytes);
        break;
      case 8:
        s.endTimeUnixNano = fixed64(f.bytes);
        break;
      case 9:
        attrs.push(f.bytes);
        break;
      case 13: {
        const link: CollectedLink = { traceId: "", spanId: "", attributes: {} };
        const la: Uint8Array[] = [];
        for (const lf of fields(f.bytes)) {
          if (lf.no === 1) link.traceId = hex(lf.bytes);
          else if (lf.no === 2) link.spanId = hex(lf.bytes);
          else if (lf.no === 4) la.push(lf.bytes);
        }
        link.attributes = pbAttrs(la);
        s.links.push(link);
        break;
      }
      case 15:
        for (const sf of fields(f.bytes)) {
          if (sf.no === 2) s.status.message = utf8.decode(sf.bytes);
          else if (sf.no === 3) s.status.code = Number(sf.varint);
        }
        break;
    }
  }
  s.attributes = pbAttrs(attrs);
  return s;
}

function fromProtobuf(buf: Uint8Array): CollectedSpan[] {
  const out: CollectedSpan[] = [];
  for (const rs of fields(buf)) {
    if (rs.no !== 1) continue;
    let resource: Record<string, AttrValue> = {};
    const scopeSpans: Uint8Array[] = [];
    for (const f of fields(rs.bytes)) {
      if (f.no === 1) resource = pbAttrs([...fields(f.bytes)].filter((x) => x.no === 1).map((x) => x.bytes));
      else if (f.no === 2) scopeSpans.push(f.bytes);
    }
    for (const ss of scopeSpans) {
      let scope = "";
      const spans: Uint8Array[] = [];
      for (const f of fields(ss)) {
        if (f.no === 1)
          for (const sf of fields(f.bytes)) {
            if (sf.no === 1) scope = utf8.decode(sf.bytes);
          }
        else if (f.no === 2) spans.push(f.bytes);
      }
      for (const sp of spans) out.push(pbSpan(sp, resource, scope));
    }
  }
  return out;
}
