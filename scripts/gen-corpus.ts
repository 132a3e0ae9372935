/**
 * Generates the bad-input corpus, test/fixtures/corpus/cases.jsonl, from one seed: every run with the same seed
 * (and the same data/images) writes the same file. test/integration/corpus.test.ts sends every case to a running
 * graph and checks the answer.
 *
 *   node --import tsx scripts/gen-corpus.ts [--seed 20261125] [--check]
 *
 * --check writes nothing and exits 1 when the committed file differs from what the seed generates.
 *
 * Every case is a bad input with the outcome the contract gives it (subjects/endpoints.ts, docs/errors.md): the
 * exact code where the input leaves no doubt, a set of codes where it leaves some (random bytes behind a PNG
 * signature may be refused as undecodable or as too many pixels), any 4xx table code where the contract does not
 * say. Bodies are specs (test/fixtures/corpus/format.ts): slices and patches of data/images, seeded random bytes,
 * repeated text; the large ones are built at run time, so the file stays small.
 *
 * Image URLs are only ones the ingress refuses before any connection: unparsable, not http(s), with
 * credentials, or whose host is an IP literal (in any spelling the URL parser accepts) that is not public, or
 * `localhost` (answered by /etc/hosts). {@link refusedWithoutConnection} checks each one and the generator fails
 * on any other, so the corpus never makes the ingress resolve a real name or dial out.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { extname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { isPublicAddress } from "../services/ingress/src/fetch-image.ts";
import { mulberry32 } from "../test/helpers/random.ts";
import {
  CASES_FILE, REPO_ROOT, bodyLength, materialize, type BodySpec, type CorpusCase, type Expect, type HttpCase, type NatsCase,
} from "../test/fixtures/corpus/format.ts";

export const DEFAULT_SEED = 20261125;

/** Limits of the graph under test (graph.config.ts), which decide some expected codes. */
const MAX_BODY_BYTES = 8 * 1024 * 1024;
const MAX_INPUT_PIXELS = 50_000_000;
const TENSOR_BYTES = 3 * 224 * 224 * 4;
const TENSOR_ELEMS = 3 * 224 * 224;
const MIB = 1024 * 1024;

const S = {
  classify: "sg.v1.preprocess.classify",
  run: "sg.v1.infer.run",
  labels: "sg.v1.infer.labels",
  info: "sg.v1.infer.info",
  greet: "sg.v1.greeter.greet",
  greeting: "sg.v1.greeter-proxy.greeting",
  endpoints: "sg.v1.greeter-proxy.endpoints",
  process: "sg.v1.ab-router.process",
  variantA: "sg.v1.variant-a.process",
  variantB: "sg.v1.variant-b.process",
} as const;

const E = (code: string): Expect => ({ code });
const oneOf = (...codes: string[]): Expect => ({ oneOf: codes });
const ANY_4XX: Expect = {};

// --- oracles (the contract, written out independently of the code that enforces it) -----------------------

/** `top_k`: a JSON integer, or a string of 1-4 decimal digits, within 1..1000. */
export function topKValid(v: unknown): boolean {
  if (typeof v === "number") return Number.isInteger(v) && v >= 1 && v <= 1000;
  if (typeof v === "string") return /^[0-9]{1,4}$/.test(v) && Number(v) >= 1 && Number(v) <= 1000;
  return false;
}

/**
 * The code the ingress must refuse an image URL with, without any connection; throws for a URL it could not
 * refuse that way (the generator must never emit one).
 */
export function refusedWithoutConnection(u: string): "BAD_REQUEST" | "URL_NOT_ALLOWED" {
  if (u.length === 0 || u.length > 4096) return "BAD_REQUEST";
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    return "BAD_REQUEST";
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "URL_NOT_ALLOWED";
  if (url.username !== "" || url.password !== "") return "URL_NOT_ALLOWED";
  const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  if (host === "localhost") return "URL_NOT_ALLOWED";
  if (isIP(host) !== 0 && !isPublicAddress(host)) return "URL_NOT_ALLOWED";
  throw new Error(`corpus URL ${JSON.stringify(u)} could make the ingress connect or resolve a name (host ${JSON.stringify(host)})`);
}

/**
 * What a Graph-Deadline value is (epoch ms, a plain decimal integer): `junk` is no number at all (a node ignores it,
 * keeping its own timeout, or refuses it); `odd` is a number in a spelling the contract does not allow (`0x10`,
 * `1e3`, `-1`), which a lenient parser could read as a time in the past; `past` is a plain integer before 2020;
 * `far` is centuries ahead, or too large for a date (clamped to the node's timeout, or refused).
 */
function deadlineKind(v: string): "junk" | "odd" | "past" | "far" {
  const t = v.trim();
  if (/^[0-9]+$/.test(t)) return Number(t) < Date.UTC(2020, 0, 1) ? "past" : "far";
  if (!/[0-9]/.test(t)) return "junk";
  const n = Number(t);
  return n === Infinity || n > Date.UTC(2100, 0, 1) ? "far" : "odd";
}

// --- image facts -------------------------------------------------------------------------------------------

interface ImageFile {
  path: string;
  bytes: Buffer;
  type: "jpeg" | "png";
  /** Cutting anywhere before this offset leaves the image data incomplete. */
  safeEnd: number;
  /** JPEG: offset of the SOF segment's height field; PNG: offset of IHDR's width field. */
  dimsAt: number;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The SOF segment's height field, walking the marker segments (so an EXIF thumbnail's SOF is never taken). */
function jpegSofHeightAt(b: Buffer): number {
  let i = 2;
  while (i + 4 < b.length) {
    if (b[i] !== 0xff) throw new Error("bad JPEG marker walk");
    const m = b[i + 1]!;
    if (m === 0xff) { i++; continue; }
    const len = b.readUInt16BE(i + 2);
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) return i + 5;
    i += 2 + len;
  }
  throw new Error("no SOF segment");
}

function loadImages(): ImageFile[] {
  const dir = resolve(REPO_ROOT, "data/images");
  return readdirSync(dir).filter((f) => /\.(jpe?g|png)$/i.test(f)).sort().map((f) => {
    const bytes = readFileSync(resolve(dir, f));
    const path = `data/images/${f}`;
    if (extname(f).toLowerCase() === ".png") {
      const iend = bytes.lastIndexOf(Buffer.from("IEND", "ascii"));
      return { path, bytes, type: "png" as const, safeEnd: iend - 4 - 12, dimsAt: 16 };
    }
    const eoi = bytes.lastIndexOf(Buffer.from([0xff, 0xd9]));
    return { path, bytes, type: "jpeg" as const, safeEnd: eoi - 16, dimsAt: jpegSofHeightAt(bytes) };
  });
}

const u16be = (n: number) => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; };
const u32be = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b; };
const u16le = (n: number) => { const b = Buffer.alloc(2); b.writeUInt16LE(n); return b; };
const u32le = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n >>> 0); return b; };
const b64 = (b: Buffer): BodySpec => ({ kind: "b64", b64: b.toString("base64") });

function pngChunk(type: string, body: Buffer): Buffer {
  const t = Buffer.from(type, "ascii");
  return Buffer.concat([u32be(body.length), t, body, u32be(crc32(Buffer.concat([t, body])))]);
}

/** A PNG that is a header claiming width x height and a token IDAT: a pixel bomb of ~80 bytes. */
function pngBomb(width: number, height: number): Buffer {
  const ihdr = Buffer.concat([u32be(width), u32be(height), Buffer.from([8, 2, 0, 0, 0])]);
  // zlib stream of 64 zero bytes (stored block), enough for a decoder to start
  const idat = Buffer.concat([Buffer.from([0x78, 0x01, 0x01, 0x40, 0x00, 0xbf, 0xff]), Buffer.alloc(64), u32be(0x00400001)]);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk("IHDR", ihdr), pngChunk("IDAT", idat), pngChunk("IEND", Buffer.alloc(0))]);
}

function gifBomb(width: number, height: number): Buffer {
  return Buffer.concat([
    Buffer.from("GIF89a", "ascii"), u16le(width), u16le(height), Buffer.from([0x00, 0x00, 0x00]),
    Buffer.from([0x2c]), u16le(0), u16le(0), u16le(width), u16le(height), Buffer.from([0x00]),
    Buffer.from([0x02, 0x02, 0x44, 0x01, 0x00]), Buffer.from([0x3b]),
  ]);
}

function webpBomb(width: number, height: number): Buffer {
  const u24 = (n: number) => Buffer.from([n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff]);
  const vp8x = Buffer.concat([Buffer.from("VP8X", "ascii"), u32le(10), Buffer.from([0, 0, 0, 0]), u24(width - 1), u24(height - 1)]);
  const vp8l = Buffer.concat([Buffer.from("VP8L", "ascii"), u32le(6), Buffer.from([0x2f, 0x00, 0x00, 0x00, 0x00, 0x00])]);
  const body = Buffer.concat([Buffer.from("WEBP", "ascii"), vp8x, vp8l]);
  return Buffer.concat([Buffer.from("RIFF", "ascii"), u32le(body.length), body]);
}

function tiffBomb(width: number, height: number): Buffer {
  const entries: [number, number, number, number][] = [
    [256, 4, 1, width], [257, 4, 1, height], [258, 3, 1, 8], [259, 3, 1, 1], [262, 3, 1, 1],
    [273, 4, 1, 8], [277, 3, 1, 1], [278, 4, 1, height], [279, 4, 1, 64],
  ];
  const ifd = Buffer.concat([u16le(entries.length), ...entries.map(([tag, type, count, value]) => Buffer.concat([u16le(tag), u16le(type), u32le(count), type === 3 ? Buffer.concat([u16le(value), u16le(0)]) : u32le(value)])), u32le(0)]);
  return Buffer.concat([Buffer.from("II*\0", "latin1"), u32le(8 + 64), Buffer.alloc(64), ifd]);
}

const MAGICS: { name: string; bytes: Buffer; accepted: boolean }[] = [
  { name: "JPEG SOI/JFIF", bytes: Buffer.from([0xff, 0xd8, 0xff, 0xe0]), accepted: true },
  { name: "JPEG SOI/DQT", bytes: Buffer.from([0xff, 0xd8, 0xff, 0xdb]), accepted: true },
  { name: "PNG signature", bytes: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), accepted: true },
  { name: "PNG signature + IHDR tag", bytes: Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]), Buffer.from("IHDR")]), accepted: true },
  { name: "GIF89a", bytes: Buffer.from("GIF89a"), accepted: true },
  { name: "GIF87a", bytes: Buffer.from("GIF87a"), accepted: true },
  { name: "RIFF/WEBP VP8", bytes: Buffer.from("RIFF\x00\x10\x00\x00WEBPVP8 ", "latin1"), accepted: true },
  { name: "TIFF little-endian", bytes: Buffer.from("II*\0", "latin1"), accepted: true },
  { name: "TIFF big-endian", bytes: Buffer.from("MM\0*", "latin1"), accepted: true },
  { name: "BMP", bytes: Buffer.from("BM"), accepted: false },
  { name: "ICO", bytes: Buffer.from([0, 0, 1, 0]), accepted: false },
  { name: "HEIC ftyp", bytes: Buffer.from("\0\0\0\x18ftypheic\0\0\0\0", "latin1"), accepted: false },
  { name: "AVIF ftyp", bytes: Buffer.from("\0\0\0\x1cftypavif\0\0\0\0", "latin1"), accepted: false },
  { name: "PDF", bytes: Buffer.from("%PDF-1.7\n"), accepted: false },
  { name: "JPEG XL", bytes: Buffer.from([0xff, 0x0a]), accepted: false },
  { name: "JPEG 2000", bytes: Buffer.from("\0\0\0\x0cjP  \r\n\x87\n", "latin1"), accepted: false },
  { name: "PSD", bytes: Buffer.from("8BPS"), accepted: false },
  { name: "PPM", bytes: Buffer.from("P6\n64 64\n255\n"), accepted: false },
  { name: "Radiance HDR", bytes: Buffer.from("#?RADIANCE\n"), accepted: false },
  { name: "OpenEXR", bytes: Buffer.from([0x76, 0x2f, 0x31, 0x01]), accepted: false },
  { name: "SVG", bytes: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000">'), accepted: false },
];

/** Whether `b` starts with an image signature, or with a prefix of one (short buffers). */
function startsWithMagic(b: Buffer): boolean {
  const prefixOf = (m: Buffer): boolean => b.length > 0 && b.subarray(0, m.length).equals(m.subarray(0, Math.min(b.length, m.length)));
  return MAGICS.some((m) => prefixOf(m.bytes)) || prefixOf(Buffer.from([0xff, 0xd8])) || b[0] === 0x3c;
}

// --- the generator -------------------------------------------------------------------------------------------

class Corpus {
  readonly cases: CorpusCase[] = [];
  private readonly seq = new Map<string, number>();
  readonly rand: () => number;

  constructor(seed: number) {
    this.rand = mulberry32(seed);
  }

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rand() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rand() * xs.length)]!;
  }
  seed(): number {
    return this.int(1, 0x7fffffff);
  }
  /** A seeded random buffer that does not start with any image signature. */
  randomNoMagic(length: number): BodySpec {
    for (;;) {
      const spec: BodySpec = { kind: "random", seed: this.seed(), length };
      if (!startsWithMagic(materialize({ ...spec, length: Math.min(length, 32) }))) return spec;
    }
  }

  private id(category: string): string {
    const n = (this.seq.get(category) ?? 0) + 1;
    this.seq.set(category, n);
    return `${category}/${String(n).padStart(3, "0")}`;
  }

  http(category: string, what: string, c: Omit<HttpCase, "id" | "category" | "what" | "transport" | "headers"> & { headers?: Record<string, string> }): void {
    const { headers, ...rest } = c;
    this.cases.push({ id: this.id(`http/${category}`), category: `http/${category}`, what, transport: "http", headers: headers ?? {}, ...rest });
  }

  nats(subject: string, category: string, what: string, c: { headers?: Record<string, string>; body: BodySpec; expect: Expect; timeoutMs?: number }): void {
    const cat = `nats/${subject.replace(/^sg\.v1\./, "")}/${category}`;
    this.cases.push({ id: this.id(cat), category: cat, what, transport: "nats", subject, headers: c.headers ?? {}, body: c.body, expect: c.expect, ...(c.timeoutMs ? { timeoutMs: c.timeoutMs } : {}) });
  }
}

const text = (t: string): BodySpec => ({ kind: "text", text: t });
const json = (v: unknown): BodySpec => text(JSON.stringify(v));
const fileSpec = (img: ImageFile, start?: number, end?: number): BodySpec => ({ kind: "file", path: img.path, ...(start !== undefined ? { start } : {}), ...(end !== undefined ? { end } : {}) });
const mediaOf = (img: ImageFile) => (img.type === "png" ? "image/png" : "image/jpeg");

/** Valid JSON, each a wrong top-level type for an object payload. */
const WRONG_TOP_LEVEL = ["null", "[]", "[{}]", "0", "-1", "1e999", "\"a string\"", "true", "false", "\"\""];

/** Text that is not JSON (or not only JSON). */
const MALFORMED_JSON = [
  "{", "}", "[", "]", "{]", "[}", "{\"a\":", "{\"a\" 1}", "{'a':'b'}", "{a:1}", "{\"a\":1,}", "[1,2,]", "{\"a\":1}}", "{\"a\":1} x",
  "// comment\n{}", "/* c */{}", "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":-Infinity}", "{\"a\":0x10}", "{\"a\":+5}", "{\"a\":.5}",
  "{\"a\":5.}", "{\"a\":05}", "{\"a\":1e}", "{\"a\":--1}", "undefined", "nul", "tru", "\"unterminated", "{\"a\":\"\\x41\"}",
  "{\"a\":\"\\u12\"}", "{\"a\":\"\u0001\"}", "{\"a\":\"line\nbreak\"}", "\uFEFF{\"a\":", "   ", "\t\n", "{\"a\":1}\u0000", "{\"a\"::1}",
  "{,}", "[,]", "{\"a\":[1,2}", "{\"a\":{\"b\":1]}", "\u0000", "{\"\\ud800\":}", "{\"a\":true false}", "<xml/>", "a=1&b=2",
];

function jsonFuzz(c: Corpus, n: number): string[] {
  const alphabet = "{}[]\":,0123456789.-+eEtruefalsn \\/abc\u00e9\u{1F600}";
  const chars = [...alphabet];
  const out: string[] = [];
  while (out.length < n) {
    const len = c.int(1, 40);
    let s = "";
    for (let i = 0; i < len; i++) s += c.pick(chars);
    let parsed: unknown;
    try {
      parsed = JSON.parse(s);
    } catch {
      out.push(s);
      continue;
    }
    // valid JSON that is not an object with the right keys is still a bad request; keep only non-objects
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) out.push(s);
  }
  return out;
}

/** Deep and wide JSON: bodies that stress a parser or a validator, each wrong for every endpoint. */
function deepJson(extraValid: Record<string, unknown>): { what: string; body: BodySpec }[] {
  const wrap = (inner: BodySpec): BodySpec => ({ kind: "concat", parts: [text(JSON.stringify(extraValid).slice(0, -1) + (Object.keys(extraValid).length ? "," : "") + "\"deep\":"), inner, text("}")] });
  const nest = (open: string, close: string, depth: number): BodySpec => ({ kind: "concat", parts: [{ kind: "repeat", text: open, count: depth }, text("0"), { kind: "repeat", text: close, count: depth }] });
  return [
    { what: "array nested 1,000 deep", body: nest("[", "]", 1000) },
    { what: "array nested 100,000 deep", body: nest("[", "]", 100_000) },
    { what: "array nested 400,000 deep", body: nest("[", "]", 400_000) },
    { what: "object nested 50,000 deep", body: nest("{\"a\":", "}", 50_000) },
    { what: "200,000 unclosed brackets", body: { kind: "repeat", text: "[", count: 200_000 } },
    { what: "valid fields plus an extra key holding 100,000-deep arrays", body: wrap(nest("[", "]", 100_000)) },
    { what: "valid fields plus an extra key holding a 50,000-deep object", body: wrap(nest("{\"x\":", "}", 50_000)) },
    { what: "an object with 20,000 unknown keys", body: { kind: "concat", parts: [text("{"), { kind: "repeat", text: "\"k\":1,", count: 20_000 }, text("\"z\":0}")] } },
    { what: "an array of 200,000 numbers", body: { kind: "concat", parts: [text("["), { kind: "repeat", text: "1,", count: 200_000 }, text("1]")] } },
    { what: "a 1 MiB string where an object is expected", body: { kind: "concat", parts: [text("\""), { kind: "repeat", text: "a", count: MIB }, text("\"")] } },
  ];
}

// --- HTTP -----------------------------------------------------------------------------------------------------

function httpImages(c: Corpus, images: ImageFile[]): void {
  const post = (category: string, what: string, body: BodySpec, contentType: string, expect: Expect, query = ""): void =>
    c.http(category, what, { method: "POST", path: `/classify${query}`, headers: { "content-type": contentType }, body, expect });
  const types = ["image/jpeg", "image/png", "image/webp", "application/octet-stream", "image/gif", "image/tiff"];

  // random bytes, no signature
  for (const length of [1, 2, 3, 4, 7, 16, 64, 100, 511, 1000, 4096, 10_000, 65_536, 100_000, 250_000]) {
    post("random-image", `${length} random bytes`, c.randomNoMagic(length), c.pick(types), E("INVALID_IMAGE"));
  }
  for (let i = 0; i < 9; i++) {
    const length = c.int(5, 300_000);
    post("random-image", `${length} random bytes`, c.randomNoMagic(length), c.pick(types), E("INVALID_IMAGE"));
  }
  // a signature, then random bytes
  for (const m of MAGICS) {
    const length = c.int(16, 50_000);
    post("random-image", `${m.name} then ${length} random bytes`, { kind: "concat", parts: [b64(m.bytes), { kind: "random", seed: c.seed(), length }] }, c.pick(types),
      m.accepted ? oneOf("INVALID_IMAGE", "PAYLOAD_TOO_LARGE") : E("INVALID_IMAGE"));
  }
  for (const t of ["GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "<html><body>not an image</body></html>", "{\"image_url\":\"http://127.0.0.1/\"}", "%!PS-Adobe-3.0\n", "#!/bin/sh\necho hi\n"]) {
    post("random-image", `text as an image: ${JSON.stringify(t.slice(0, 24))}`, text(t), c.pick(types), E("INVALID_IMAGE"));
  }

  // truncated, cut from the front, signature smashed
  for (const img of images) {
    for (let k = 0; k < 5; k++) {
      const end = c.int(Math.max(8, Math.floor(img.safeEnd * 0.02)), Math.floor(img.safeEnd * 0.95));
      post("truncated-image", `${img.path} cut to ${end} of ${img.bytes.length} bytes`, fileSpec(img, 0, end), c.pick([mediaOf(img), "application/octet-stream"]), E("INVALID_IMAGE"));
    }
  }
  for (const img of images.filter((_, i) => i % 3 === 0)) {
    const n = c.pick([1, 2, 3, 4, 8, 20, 100, 300]);
    post("truncated-image", `${img.path}: first ${n} bytes only`, fileSpec(img, 0, n), mediaOf(img), E("INVALID_IMAGE"));
    let start = c.int(1, 200);
    while (startsWithMagic(img.bytes.subarray(start, start + 32))) start++;
    post("truncated-image", `${img.path} without its first ${start} bytes`, fileSpec(img, start), mediaOf(img), E("INVALID_IMAGE"));
    post("truncated-image", `${img.path} with its signature zeroed`, { kind: "file", path: img.path, patches: [{ offset: 0, b64: Buffer.alloc(img.type === "png" ? 8 : 2).toString("base64") }] }, mediaOf(img), E("INVALID_IMAGE"));
  }

  // pixel bombs: tiny files declaring huge dimensions
  const bombDims: [number, number][] = [[30_000, 30_000], [7072, 7072], [65_535, 65_535], [50_001, 1000], [1000, 50_001], [10_000, 10_000]];
  while (bombDims.length < 12) {
    const w = c.int(7072, 60_000);
    const h = c.int(Math.ceil((MAX_INPUT_PIXELS + 1) / w), 60_000);
    bombDims.push([w, h]);
  }
  for (const [w, h] of bombDims) post("pixel-bomb", `PNG header declaring ${w}x${h}`, b64(pngBomb(w, h)), "image/png", E("PAYLOAD_TOO_LARGE"));
  for (const [w, h] of [[1_000_000, 1_000_000], [2_147_483_647, 2_147_483_647], [4_000_000, 100]] as const) {
    post("pixel-bomb", `PNG header declaring ${w}x${h} (past some decoders' own limits)`, b64(pngBomb(w, h)), "image/png", oneOf("PAYLOAD_TOO_LARGE", "INVALID_IMAGE"));
  }
  for (const img of images) {
    const w = c.int(7072, 65_535);
    const h = c.int(Math.ceil((MAX_INPUT_PIXELS + 1) / w), 65_535);
    if (img.type === "png") {
      const ihdr = Buffer.from(img.bytes.subarray(12, 29));
      ihdr.writeUInt32BE(w, 4);
      ihdr.writeUInt32BE(h, 8);
      const crc = u32be(crc32(ihdr));
      post("pixel-bomb", `${img.path} with IHDR patched to ${w}x${h}`, { kind: "file", path: img.path, patches: [{ offset: 16, b64: Buffer.concat([u32be(w), u32be(h)]).toString("base64") }, { offset: 29, b64: crc.toString("base64") }] }, "image/png", E("PAYLOAD_TOO_LARGE"));
    } else if (images.indexOf(img) % 2 === 0) {
      post("pixel-bomb", `${img.path} with its SOF patched to ${w}x${h}`, { kind: "file", path: img.path, patches: [{ offset: img.dimsAt, b64: Buffer.concat([u16be(h), u16be(w)]).toString("base64") }] }, "image/jpeg", E("PAYLOAD_TOO_LARGE"));
    }
  }
  for (const [w, h] of [[65_535, 65_535], [10_000, 10_000], [8000, 7000]] as const) {
    post("pixel-bomb", `GIF declaring ${w}x${h}`, b64(gifBomb(w, h)), "image/gif", oneOf("PAYLOAD_TOO_LARGE", "INVALID_IMAGE"));
  }
  for (const [w, h] of [[16_383, 16_383], [10_000, 10_000], [16_000_000, 16_000_000]] as const) {
    post("pixel-bomb", `WebP VP8X declaring ${w}x${h}`, b64(webpBomb(w, h)), "image/webp", oneOf("PAYLOAD_TOO_LARGE", "INVALID_IMAGE"));
  }
  for (const [w, h] of [[100_000, 100_000], [20_000, 20_000], [4_294_967_295, 4_294_967_295]] as const) {
    post("pixel-bomb", `TIFF declaring ${w}x${h}`, b64(tiffBomb(w, h)), "image/tiff", oneOf("PAYLOAD_TOO_LARGE", "INVALID_IMAGE"));
  }
}

function httpContentTypes(c: Corpus, images: ImageFile[]): void {
  const small = images.find((i) => i.path.endsWith("kite-sky-small.jpg")) ?? images[0]!;
  const bodies: [string, BodySpec][] = [["a valid JPEG", fileSpec(small)], ["random bytes", c.randomNoMagic(2048)], ["a JSON request", json({ image_url: "http://127.0.0.1/cat.jpg" })]];
  const noParser = [
    "text/plain", "text/plain; charset=utf-8", "text/csv", "text/html", "application/xml", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=----corpus", "application/pdf", "video/mp4", "audio/wav", "application/javascript",
    "font/woff2", "imagejpeg", "image", "jpeg", "application/octet", "application/octet-streamx", "x-image/jpeg", "*/*",
    "application/problem+json", "application/jsonx", "application/ld+json", "application/x-ndjson", "message/http",
  ];
  for (const ct of noParser) {
    const [what, body] = c.pick(bodies);
    c.http("wrong-content-type", `${what} sent as ${JSON.stringify(ct)}`, { method: "POST", path: "/classify", headers: { "content-type": ct }, body, expect: E("UNSUPPORTED_MEDIA_TYPE") });
  }
  // parsed as an image by the ingress, then refused by the endpoint's media type rule
  for (const ct of ["image/*", "image/", "image/jp eg", "image/jpeg, image/png", `image/jpeg; x=${"y".repeat(300)}`, "image/j\u00e9peg", "image/jpeg\u00a0"]) {
    c.http("wrong-content-type", `a valid JPEG sent as ${JSON.stringify(ct.slice(0, 40))}`, { method: "POST", path: "/classify", headers: { "content-type": ct }, body: fileSpec(small), expect: E("UNSUPPORTED_MEDIA_TYPE") });
  }
  // declared JSON, not JSON
  for (const ct of ["application/json", "application/json; charset=utf-8", "Application/JSON"]) {
    c.http("wrong-content-type", `a JPEG sent as ${ct}`, { method: "POST", path: "/classify", headers: { "content-type": ct }, body: fileSpec(small), expect: E("BAD_REQUEST") });
  }
  c.http("wrong-content-type", "an empty application/json body", { method: "POST", path: "/classify", headers: { "content-type": "application/json" }, body: { kind: "empty" }, expect: E("BAD_REQUEST") });
  c.http("wrong-content-type", "an empty image/jpeg body", { method: "POST", path: "/classify", headers: { "content-type": "image/jpeg" }, body: { kind: "empty" }, expect: E("INVALID_IMAGE") });
  c.http("wrong-content-type", "a JPEG with no Content-Type", { method: "POST", path: "/classify", body: fileSpec(small), expect: oneOf("UNSUPPORTED_MEDIA_TYPE", "BAD_REQUEST") });
  c.http("wrong-content-type", "a JPEG with an empty Content-Type", { method: "POST", path: "/classify", headers: { "content-type": "" }, body: fileSpec(small), expect: oneOf("UNSUPPORTED_MEDIA_TYPE", "BAD_REQUEST") });
  c.http("wrong-content-type", "no body and no Content-Type", { method: "POST", path: "/classify", body: { kind: "empty" }, expect: E("BAD_REQUEST") });
}

/** Image URLs refused without any connection, in every spelling. */
function imageUrls(c: Corpus, n: number): string[] {
  const fixed = [
    "http://127.0.0.1/cat.jpg", "http://127.0.0.1:1/", "https://127.0.0.1/", "http://127.1/", "http://127.0.1/", "http://2130706433/",
    "http://0x7f000001/", "http://017700000001/", "http://0177.0.0.1/", "http://0x7f.0.0.1/", "http://127.000.000.001/",
    "http://0x7f.1/", "http://[::1]/", "http://[0:0:0:0:0:0:0:1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/", "http://[64:ff9b::127.0.0.1]/", "http://0.0.0.0/", "http://0/", "http://0.0.0.0:8080/", "http://[::]/",
    "http://169.254.169.254/latest/meta-data/", "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://169.254.169.254/computeMetadata/v1/", "http://169.254.169.254/metadata/instance?api-version=2021-02-01",
    "http://2852039166/", "http://0xa9fea9fe/", "http://0251.0376.0251.0376/", "http://0xa9.0xfe.0xa9.0xfe/", "http://169.254.43518/",
    "http://[::ffff:169.254.169.254]/", "http://[::ffff:a9fe:a9fe]/", "http://[64:ff9b::a9fe:a9fe]/", "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/", "http://10.0.0.1/", "http://10.255.255.255:65535/", "http://172.16.0.1/", "http://172.31.255.255/",
    "http://192.168.0.1/", "http://192.168.1.1:8080/admin", "http://100.64.0.1/", "http://192.0.0.192/", "http://192.0.2.1/",
    "http://198.18.0.1/", "http://198.51.100.7/", "http://203.0.113.9/", "http://224.0.0.1/", "http://239.255.255.250:1900/",
    "http://240.0.0.1/", "http://255.255.255.255/", "http://[fe80::1]/", "http://[fe80::a00:27ff:fe4e:66a1]/", "http://[fc00::1]/",
    "http://[ff02::1]/", "http://[2001:db8::1]/", "http://localhost/", "http://localhost:4222/", "http://LOCALHOST/", "http://LocalHost:8222/varz",
    "https://localhost/", "http://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3/", "http://\uff11\uff12\uff17.0.0.1/", "http://12\uff17.0.0.1/",
    "HTTP://127.0.0.1/", "hTTpS://[::1]/", "http:\\\\127.0.0.1\\x.jpg", " http://127.0.0.1/ ", "http://127.0.0.1\t/", "http://127.0.0.1\n/x",
    "http://user:pass@127.0.0.1/", "http://a@[::1]/", "http://:@127.0.0.1/", "http://x:y@localhost/", "http://127.0.0.1#@192.0.2.1/",
    "http://127.0.0.1/?u=http://169.254.169.254/", "http://127.0.0.1/\u00fcn\u00efc\u00f8d\u00e9.png", "http://127.0.0.1/%2e%2e/%2e%2e/etc/passwd",
    "file:///etc/passwd", "file://localhost/etc/passwd", "file:///proc/self/environ", "ftp://127.0.0.1/x.jpg", "gopher://127.0.0.1:6379/_INFO",
    "dict://127.0.0.1:11211/stat", "ldap://127.0.0.1/", "ws://127.0.0.1/", "wss://[::1]/", "data:image/png;base64,iVBORw0KGgo=",
    "javascript:alert(1)", "blob:http://127.0.0.1/0e4a", "about:blank", "mailto:a@127.0.0.1", "tftp://127.0.0.1/x", "jar:file:///x!/y",
    "view-source:http://127.0.0.1/", "sftp://127.0.0.1/", "ssh://127.0.0.1/", "nats://127.0.0.1:4222/", "unix:/var/run/docker.sock",
    "http://", "http:///", "http://[::1", "http://127.0.0.1:99999/", "http://[fe80::1%25eth0]/", "://127.0.0.1", "127.0.0.1/x.jpg",
    "//127.0.0.1/x", "http://256.256.256.256/", "http://0x100000000/", "http://127.0.0.1.5/", "http://127.0.0.1 /", "http://\u0661\u0662\u0667.0.0.1/",
    "http://[1::2::3]/", "http://[::1]:-1/", "not a url", "x", `http://127.0.0.1/${"a".repeat(4100)}`, `http://localhost/?q=${"%41".repeat(1400)}`,
  ];
  const out = [...fixed];
  const v4Ranges: [number, number][] = [
    [0x7f000000, 8], [0x0a000000, 8], [0xac100000, 12], [0xc0a80000, 16], [0xa9fe0000, 16], [0x64400000, 10], [0x00000000, 8],
    [0xe0000000, 4], [0xf0000000, 4], [0xc6120000, 15], [0xc0000000, 24], [0xc0000200, 24], [0xc6336400, 24], [0xcb007100, 24],
  ];
  const parts = (n32: number) => [n32 >>> 24, (n32 >>> 16) & 255, (n32 >>> 8) & 255, n32 & 255];
  const oct = (x: number) => `0${x.toString(8)}`;
  const hex = (x: number) => `0x${x.toString(16)}`;
  const spell = (n32: number): string => {
    const [a, b, cc, d] = parts(n32) as [number, number, number, number];
    switch (c.int(0, 11)) {
      case 0: return `${a}.${b}.${cc}.${d}`;
      case 1: return String(n32 >>> 0);
      case 2: return hex(n32 >>> 0);
      case 3: return oct(n32 >>> 0);
      case 4: return [a, b, cc, d].map(hex).join(".");
      case 5: return [a, b, cc, d].map(oct).join(".");
      case 6: return `${a}.${b}.${(cc << 8) | d}`;
      case 7: return `${a}.${(b << 16) | (cc << 8) | d}`;
      case 8: return [a, b, cc, d].map((x) => c.pick([String(x), hex(x), oct(x)])).join(".");
      case 9: return `[::ffff:${a}.${b}.${cc}.${d}]`;
      case 10: return `[64:ff9b::${a}.${b}.${cc}.${d}]`;
      default: return `[::ffff:${((a << 8) | b).toString(16)}:${((cc << 8) | d).toString(16)}]`;
    }
  };
  const v6 = (): string => {
    const g = () => c.int(0, 0xffff).toString(16);
    switch (c.int(0, 4)) {
      case 0: return `[fe80::${g()}:${g()}:${g()}:${g()}]`;
      case 1: return `[fd${c.int(0, 255).toString(16).padStart(2, "0")}:${g()}:${g()}::${g()}]`;
      case 2: return `[ff0${c.int(0, 15).toString(16)}::${g()}]`;
      case 3: return `[2001:db8:${g()}::${g()}]`;
      default: return `[::${c.int(1, 0xffff).toString(16)}]`;
    }
  };
  const ports = ["", ":22", ":25", ":80", ":443", ":2375", ":3306", ":4222", ":5432", ":6379", ":8080", ":8222", ":9200", ":11211", ":65535"];
  const paths = ["/", "/x.jpg", "/cat.png?size=large", "/latest/meta-data/", "/admin#frag", "/%F0%9F%90%88.jpg", "/a/../b.jpg", "/.env", "/\u00e9t\u00e9.jpg"];
  while (out.length < n) {
    let host: string;
    if (c.rand() < 0.8) {
      const [base, bits] = c.pick(v4Ranges);
      const n32 = (base | (Math.floor(c.rand() * 2 ** (32 - bits)) >>> 0)) >>> 0;
      host = spell(n32);
    } else {
      host = v6();
    }
    out.push(`${c.pick(["http", "https", "HTTP", "http", "http"])}://${host}${c.pick(ports)}${c.pick(paths)}`);
  }
  return out;
}

function httpJson(c: Corpus): void {
  const post = (category: string, what: string, body: BodySpec, expect: Expect, contentType = "application/json"): void =>
    c.http(category, what, { method: "POST", path: "/classify", headers: { "content-type": contentType }, body, expect });
  const priv = "http://127.0.0.1/cat.jpg";

  // URLs
  for (const u of imageUrls(c, 170)) {
    const withTopK = c.rand() < 0.3;
    const body = withTopK ? { image_url: u, top_k: c.int(1, 1000) } : { image_url: u };
    post("private-url", `image_url ${JSON.stringify(u.slice(0, 80))}`, json(body), E(refusedWithoutConnection(u)));
  }

  // wrong JSON types
  const wrongUrl: unknown[] = [123, -1, 0, 1.5, true, false, null, [], [priv], {}, { href: priv }, "", "a".repeat(4097), [[]], { toString: priv }];
  for (const v of wrongUrl) post("wrong-json-type", `image_url ${JSON.stringify(v).slice(0, 40)}`, json({ image_url: v }), E("BAD_REQUEST"));
  const wrongTopK: unknown[] = [true, false, null, [], [5], {}, { value: 5 }, "five", "", "5.0", "5 ", " 5", "+5", "0x10", "1e2", "-5", "٥", "５", [1, 2], "1000000"];
  for (const v of wrongTopK) if (topKValid(v)) throw new Error(`wrong top_k ${JSON.stringify(v)} is valid`);
  for (const v of wrongTopK) post("wrong-json-type", `top_k ${JSON.stringify(v)}`, json({ image_url: c.pick(imageUrls(c, 0).slice(0, 60)), top_k: v }), E("BAD_REQUEST"));
  for (const t of WRONG_TOP_LEVEL) post("wrong-json-type", `top-level ${t}`, text(t), E("BAD_REQUEST"));
  const wrongShape: unknown[] = [
    {}, { top_k: 5 }, { url: priv }, { imageUrl: priv }, { image: priv }, { image_url: priv, extra: 1 }, { image_url: priv, top_k: 5, model: "x" },
    { IMAGE_URL: priv }, { image_url: priv, top_k: 5, image_url2: priv }, [{ image_url: priv }],
  ];
  for (const v of wrongShape) post("wrong-json-type", `object ${JSON.stringify(v).slice(0, 60)}`, json(v), E("BAD_REQUEST"));
  post("wrong-json-type", "__proto__ key", text(`{"__proto__":{"image_url":"${priv}"}}`), E("BAD_REQUEST"));
  post("wrong-json-type", "__proto__ next to image_url", text(`{"image_url":"${priv}","__proto__":{"top_k":5}}`), E("BAD_REQUEST"));
  post("wrong-json-type", "constructor.prototype key", text(`{"image_url":"${priv}","constructor":{"prototype":{"polluted":1}}}`), E("BAD_REQUEST"));
  post("wrong-json-type", "duplicate image_url, the last one not a string", text(`{"image_url":"${priv}","image_url":5}`), E("BAD_REQUEST"));
  post("wrong-json-type", "duplicate top_k, the last one out of range", text(`{"image_url":"${priv}","top_k":5,"top_k":0}`), E("BAD_REQUEST"));

  // malformed JSON
  for (const t of [...MALFORMED_JSON, ...jsonFuzz(c, 12)]) post("malformed-json", `body ${JSON.stringify(t.slice(0, 40))}`, text(t), E("BAD_REQUEST"));
  post("malformed-json", "invalid UTF-8 inside a string", { kind: "latin1", text: `{"image_url":"${priv}\xff\xfe\xc0\xaf"}` }, oneOf("BAD_REQUEST", "URL_NOT_ALLOWED"));
  post("malformed-json", "invalid UTF-8 as a key", { kind: "latin1", text: `{"\xff\xfe":"${priv}"}` }, E("BAD_REQUEST"));
  post("malformed-json", "UTF-16LE JSON", { kind: "b64", b64: Buffer.from(`{"image_url":"${priv}"}`, "utf16le").toString("base64") }, E("BAD_REQUEST"));
  post("malformed-json", "lone surrogate as a key", text(`{"\\ud800":"${priv}"}`), E("BAD_REQUEST"));

  // deep and wide JSON
  for (const d of deepJson({ image_url: priv })) post("deep-json", d.what, d.body, E("BAD_REQUEST"));

  // odd numbers for top_k, in JSON: the whole body decides (invalid JSON is BAD_REQUEST; a valid top_k leaves the URL refused)
  const rawTopK = [
    "0x10", "\"0x10\"", "1e3", "\"1e3\"", "+5", "\"+5\"", "-0", "\"-0\"", "NaN", "\"NaN\"", "Infinity", "\"Infinity\"", "-Infinity", "1e400",
    "-1e400", "1e-400", "1.5", "5.0", "5.5e0", "1000.0000000000001", "1000.00000000000001", "9007199254740993", "-9007199254740993", "-5", "0",
    "1001", "0.5", "\"5\"", "\"0005\"", "\"00005\"", "\"5.0\"", "\" 5\"", "\"\"", "\"1000\"", "\"1001\"", "\"0\"", "05", "0.0", "-1", "1E3",
    "100e1", "10e2", "\"\\u0035\"", "\"\\uff15\"", "2147483648", "4294967297", "1.0000000000000002",
  ];
  for (const raw of rawTopK) {
    const body = `{"image_url":"${priv}","top_k":${raw}}`;
    let expect: Expect;
    try {
      const v = (JSON.parse(body) as { top_k: unknown }).top_k;
      expect = E(topKValid(v) ? "URL_NOT_ALLOWED" : "BAD_REQUEST");
    } catch {
      expect = E("BAD_REQUEST");
    }
    post("odd-number", `JSON top_k ${raw}`, text(body), expect);
  }
}

/** top_k spellings that are not a plain decimal integer in 1..1000 (checked against the oracle). */
const ODD_TOP_K = [
  "0x10", "0X10", "1e3", "1E3", "+5", "-0", "-1", "0", "00", "000", "NaN", "Infinity", "-Infinity", "inf", "1.5", "5.0", "5.", ".5", "1001",
  "1000000", "99999999999999999999", "1e400", "9007199254740993", "-9007199254740993", "0b101", "0o7", "5abc", "abc", "", "5,6", "[5]", "{}",
  "true", "null", "0.0000001", "1e-7", "2e2", "00005", "10000", "\u0665", "\uff15", "5\u0000", "\u00bd", "\u2164", "1_000", "1,000", "0x3E8",
];

function httpOddQuery(c: Corpus, images: ImageFile[]): void {
  const small = images.find((i) => i.path.endsWith("kite-sky-small.jpg")) ?? images[0]!;
  for (const v of ODD_TOP_K) {
    if (topKValid(v)) throw new Error(`odd top_k ${v} is valid`);
    c.http("odd-number", `?top_k=${JSON.stringify(v)}`, { method: "POST", path: `/classify?top_k=${encodeURIComponent(v)}`, headers: { "content-type": "image/jpeg" }, body: fileSpec(small), expect: E("BAD_REQUEST") });
  }
  for (const q of ["top_k=5&top_k=6", "top_k=1&top_k=1", "top_k=%20%205", "top_k=5%20", "top_k=%ZZ", "top_k=%", "top_k=5%00", "top_k"]) {
    c.http("odd-number", `?${q}`, { method: "POST", path: `/classify?${q}`, headers: { "content-type": "image/jpeg" }, body: fileSpec(small), expect: E("BAD_REQUEST") });
  }
}

function httpUnicode(c: Corpus): void {
  const enc = encodeURIComponent;
  const get = (what: string, path: string, expect: Expect): void => c.http("unicode", what, { method: "GET", path, body: { kind: "empty" }, expect });
  // names over 256 UTF-16 units (encoded path under the router's 2048-character parameter cap): BAD_REQUEST
  const units: [string, string][] = [["\u00e9", "e-acute"], ["\u{1F600}", "emoji"], ["e\u0301", "e + combining acute"], ["\u200b", "zero-width space"], ["\u202e", "RTL override"], ["\uff21", "fullwidth A"], ["\u4e2d", "CJK"], ["\u0928", "Devanagari"], ["\u{1F468}\u200d\u{1F469}", "ZWJ sequence"]];
  for (const [u, name] of units) {
    // the limit counts code points (a UTF-16 surrogate pair is one)
    const count = Math.ceil(257 / [...u].length);
    const encoded = enc(u.repeat(count));
    get(`greeting name of ${count} x ${name} (${count * [...u].length} code points, ${encoded.length} characters encoded)`, `/greeting/${encoded}`, encoded.length <= 2048 ? E("BAD_REQUEST") : ANY_4XX);
    const longer = enc(u.repeat(count * 3));
    get(`greeting name of ${count * 3} x ${name}, ${longer.length} characters encoded (over the router's parameter cap)`, `/greeting/${longer}`, ANY_4XX);
  }
  get("greeting name of 257 ASCII letters", `/greeting/${"a".repeat(257)}`, E("BAD_REQUEST"));
  get("greeting name of 3000 ASCII letters", `/greeting/${"b".repeat(3000)}`, ANY_4XX);
  // invalid percent-encoding in a parameter
  for (const p of ["%E0%A4%A", "%ZZ", "%ED%A0%80", "%C0%AF", "%FF", "%F0%9F%98", "%", "a%2", "%C3%28", "%F8%88%80%80%80"]) {
    get(`greeting name ${JSON.stringify(p)} (not UTF-8 once decoded)`, `/greeting/${p}`, oneOf("BAD_REQUEST", "NOT_FOUND"));
  }
  // routes that do not exist, in odd spellings
  for (const p of ["/gr%C3%BC%C3%9Fen/ada", "/%EF%BD%87%EF%BD%92%EF%BD%85%EF%BD%85%EF%BD%94%EF%BD%89%EF%BD%8E%EF%BD%87/ada", "/greeting", "/%F0%9F%98%80",
    "/classify/%E2%80%AE", "/process", "/gre%E2%80%8Beting/ada", "/GREETING/ada", "/greeting%2Fada", "/%67reeting%2F", "/greeting/ada/extra", "/.%2e/.%2e/etc/passwd",
    "/%00", "/greeting/ada/%00/x"]) {
    get(`path ${JSON.stringify(p)}`, p, E("NOT_FOUND"));
  }
  // raw bytes over 0x7f in the request target (not percent-encoded): refused by the HTTP parser, or no route
  for (const p of ["/gr\u00e9eting/ada", "/\u00ff\u00fe", "/classify\u00a0", "/greeting/\u00e9"]) {
    get(`raw latin1 bytes in the path ${JSON.stringify(p)}`, p, oneOf("BAD_REQUEST", "NOT_FOUND"));
  }
  // A/B route: message and user_key
  const qk = ["\u30e6\u30fc\u30b6\u30fc", "user\u200bkey", "USER_KEY", "user_k\u0435y", "user-key", "\u{1F511}", "user_key\u0000", "us%65r_key%00"];
  for (const k of qk) get(`process with query key ${JSON.stringify(k)} and no user_key`, `/process/hi?${enc(k)}=u1`, E("BAD_REQUEST"));
  get("process with an empty user_key", "/process/hi?user_key=", E("BAD_REQUEST"));
  get("process with user_key of 257 ASCII", `/process/hi?user_key=${"k".repeat(257)}`, E("BAD_REQUEST"));
  get("process with user_key of 257 emoji", `/process/hi?user_key=${enc("\u{1F511}".repeat(257))}`, E("BAD_REQUEST"));
  get("process with user_key of 600 CJK", `/process/hi?user_key=${enc("\u4e2d".repeat(600))}`, E("BAD_REQUEST"));
  get("process with a message of 1025 ASCII", `/process/${"m".repeat(1025)}?user_key=u1`, E("BAD_REQUEST"));
  get("process with a message of 1025 e-acute (encoded over the parameter cap)", `/process/${enc("\u00e9".repeat(1025))}?user_key=u1`, ANY_4XX);
  get("process with a message of invalid UTF-8", "/process/%FF%FE?user_key=u1", oneOf("BAD_REQUEST", "NOT_FOUND"));
  get("process with user_key repeated", "/process/hi?user_key=a&user_key=b", E("BAD_REQUEST"));
  // unicode keys in the classify JSON
  const priv = "http://127.0.0.1/cat.jpg";
  for (const k of ["im\u00e4ge_url", "\uff49\uff4d\uff41\uff47\uff45_\uff55\uff52\uff4c", "image_url\u0000", "image_url\u200b", "image_\u0075rl\u0301", "\u0456mage_url", "IMAGE_URL", "image-url", "\u{1F5BC}"]) {
    c.http("unicode", `classify JSON key ${JSON.stringify(k)}`, { method: "POST", path: "/classify", headers: { "content-type": "application/json" }, body: text(`{${JSON.stringify(k)}:"${priv}"}`), expect: E("BAD_REQUEST") });
  }
  c.http("unicode", "classify JSON with top_k under a homoglyph key", { method: "POST", path: "/classify", headers: { "content-type": "application/json" }, body: text(`{"image_url":"${priv}","t\u043ep_k":5}`), expect: E("BAD_REQUEST") });
}

function httpOversized(c: Corpus): void {
  const post = (what: string, o: Partial<HttpCase> & { body: BodySpec; contentType: string; expect: Expect }): void =>
    c.http("oversized", what, { method: "POST", path: "/classify", headers: { "content-type": o.contentType }, body: o.body, expect: o.expect, timeoutMs: 30_000, ...(o.chunked ? { chunked: true } : {}), ...(o.declaredLength ? { declaredLength: o.declaredLength } : {}) });
  post("image/jpeg body of 8 MiB + 1", { body: { kind: "fill", byte: 0xff, length: MAX_BODY_BYTES + 1 }, contentType: "image/jpeg", expect: E("PAYLOAD_TOO_LARGE") });
  post("chunked JSON body of 8 MiB + 64 KiB", { body: { kind: "concat", parts: [text("{\"image_url\":\"http://127.0.0.1/"), { kind: "repeat", text: "a", count: MAX_BODY_BYTES + 65_536 }, text("\"}")] }, contentType: "application/json", chunked: true, expect: E("PAYLOAD_TOO_LARGE") });
  post("Content-Length of 1 GiB declared, 1 KiB sent", { body: { kind: "random", seed: c.seed(), length: 1024 }, contentType: "image/jpeg", declaredLength: String(1024 * MIB), expect: E("PAYLOAD_TOO_LARGE") });
  post("random image body of exactly 8 MiB (the limit)", { body: c.randomNoMagic(MAX_BODY_BYTES), contentType: "image/jpeg", expect: oneOf("INVALID_IMAGE", "PAYLOAD_TOO_LARGE") });
}

function httpLowLevel(c: Corpus): void {
  const body: BodySpec = text("0123456789");
  c.http("low-level", "Content-Length: abc", { method: "POST", path: "/classify", headers: { "content-type": "image/jpeg" }, declaredLength: "abc", body, expect: ANY_4XX });
  c.http("low-level", "Content-Length: -1", { method: "POST", path: "/classify", headers: { "content-type": "image/jpeg" }, declaredLength: "-1", body, expect: ANY_4XX });
  c.http("low-level", "Content-Length: 10, 20", { method: "POST", path: "/classify", headers: { "content-type": "image/jpeg" }, declaredLength: "10, 20", body, expect: ANY_4XX });
  c.http("low-level", "Transfer-Encoding chunked and Content-Length both", { method: "POST", path: "/classify", headers: { "content-type": "image/jpeg", "transfer-encoding": "chunked" }, declaredLength: "10", body, expect: ANY_4XX });
  c.http("low-level", "a 20,000-character request target", { method: "GET", path: `/greeting/${"x".repeat(20_000)}`, body: { kind: "empty" }, expect: ANY_4XX });
  const many: Record<string, string> = {};
  for (let i = 0; i < 120; i++) many[`x-corpus-${i}`] = "v".repeat(200);
  c.http("low-level", "120 headers of 200 bytes (24 KB of headers)", { method: "GET", path: "/greeting/ada", headers: many, body: { kind: "empty" }, expect: ANY_4XX });
}

function httpMethods(c: Corpus): void {
  for (const [method, path] of [["PUT", "/classify"], ["DELETE", "/classify"], ["GET", "/classify"], ["PATCH", "/greeting/ada"], ["POST", "/greeting/ada"],
    ["POST", "/process/hi?user_key=u1"], ["PUT", "/labels"], ["DELETE", "/process/hi?user_key=u1"], ["PROPFIND", "/classify"], ["TRACE", "/greeting/ada"]] as const) {
    c.http("wrong-method", `${method} ${path}`, { method, path, headers: method === "GET" || method === "TRACE" ? {} : { "content-type": "application/json" }, body: method === "GET" || method === "TRACE" ? { kind: "empty" } : json({ name: "ada" }), expect: ANY_4XX });
  }
}

// --- NATS -----------------------------------------------------------------------------------------------------

const DEADLINE_JUNK = ["abc", "NaN", "Infinity", "-Infinity", "deadline", "\u0661\u0662\u0663", "--", "null", "\uff11\uff12\uff13", "soon", "[]"];
const DEADLINE_ODD = ["0x", "0x10", "1.5", "1e3", "+5", "0b1", "0o7", "-1", "-0", "12 34", "1_000", "-1577836800000", "1e-3"];
const DEADLINE_PAST = ["0", "1", "1000000000000", "1577836799999", "000000000000001"];
const DEADLINE_FAR = ["99999999999999", "8640000000000001", "9007199254740993", "1e20", "253402300800000", "1.7976931348623157e308", "1e400", "99999999999999999999999"];
const BAD_SHAPES = [
  "0x1,3,224,224", "1x3x224x224", "1,3,224", "3,224,224", "1,3,224,224,1", "2,3,224,224", "1,224,224,3", "0,3,224,224", "-1,3,224,224",
  "1.0,3,224,224", "1e0,3,224,224", "+1,3,224,224", "1,3,224,224,", ",1,3,224,224", "1,,3,224,224", "1;3;224;224", "[1,3,224,224]",
  "\uff11,3,224,224", "1,3,224,224,1,1,1,1,1", "9999999999,3,224,224", "4294967297,3,224,224", "NaN,3,224,224", "Infinity,3,224,224",
  "1,3,224,224 extra", "1,3,224,225", "1,3,0,224", "1,3,224,224\u0000", "224", "1", ",", "1,3,224,2\u0662\u0664", `1,3,224,${"9".repeat(300)}`,
];
const BAD_DTYPES = ["float64", "float16", "FLOAT32", "Float32", "fp32", "f32", "int8", "UINT8", "uint16", "u8", "bfloat16", "float32;", "float", "double", "float32,float32", "\u0066loat32\u0301"];
const BAD_CONTENT_TYPES = [
  "text/plain", "application/json", "image", "image/", "/jpeg", "imagejpeg", "image/jpeg, image/png", `image/jpeg;${"a".repeat(300)}`,
  "application/octet-streamx", "multipart/form-data", "video/mp4", "x-image/jpeg", "image/j\u00e9peg", "image/*", "*/*", "image/jp eg",
  "application/x-www-form-urlencoded", "text/html; charset=utf-8", "image\\jpeg", "image/jpeg\u0000",
];

function natsClassify(c: Corpus, images: ImageFile[]): void {
  const small = images.find((i) => i.path.endsWith("kite-sky-small.jpg")) ?? images[0]!;
  const valid = fileSpec(small);
  for (const v of ODD_TOP_K.filter((x) => x.trim() !== "" && !topKValid(x.trim()))) {
    c.nats(S.classify, "top-k", `Graph-Top-K ${JSON.stringify(v)}`, { headers: { "Graph-Top-K": v, "Content-Type": "image/jpeg" }, body: valid, expect: E("BAD_REQUEST") });
  }
  c.nats(S.classify, "top-k", "Graph-Top-K of 10,000 digits", { headers: { "Graph-Top-K": "5".repeat(10_000) }, body: valid, expect: E("BAD_REQUEST") });
  for (const ct of BAD_CONTENT_TYPES) {
    c.nats(S.classify, "content-type", `Content-Type ${JSON.stringify(ct.slice(0, 40))}`, { headers: { "Content-Type": ct }, body: valid, expect: E("UNSUPPORTED_MEDIA_TYPE") });
  }
  c.nats(S.classify, "image", "empty body", { body: { kind: "empty" }, expect: E("INVALID_IMAGE") });
  c.nats(S.classify, "image", "empty body with image/png", { headers: { "Content-Type": "image/png" }, body: { kind: "empty" }, expect: E("INVALID_IMAGE") });
  for (let i = 0; i < 8; i++) {
    const length = c.int(1, 200_000);
    c.nats(S.classify, "image", `${length} random bytes`, { headers: { "Content-Type": c.pick(["image/jpeg", "application/octet-stream"]) }, body: c.randomNoMagic(length), expect: E("INVALID_IMAGE") });
  }
  for (const m of MAGICS.filter((_, i) => i % 2 === 0)) {
    c.nats(S.classify, "image", `${m.name} then random bytes`, { body: { kind: "concat", parts: [b64(m.bytes), { kind: "random", seed: c.seed(), length: c.int(16, 20_000) }] }, expect: m.accepted ? oneOf("INVALID_IMAGE", "PAYLOAD_TOO_LARGE") : E("INVALID_IMAGE") });
  }
  for (const img of images.filter((_, i) => i % 2 === 1)) {
    const end = c.int(Math.max(8, Math.floor(img.safeEnd * 0.02)), Math.floor(img.safeEnd * 0.95));
    c.nats(S.classify, "image", `${img.path} cut to ${end} bytes`, { headers: { "Content-Type": mediaOf(img) }, body: fileSpec(img, 0, end), expect: E("INVALID_IMAGE") });
  }
  for (const [w, h] of [[30_000, 30_000], [7072, 7072], [65_535, 65_535], [c.int(8000, 60_000), c.int(8000, 60_000)]] as const) {
    c.nats(S.classify, "pixel-bomb", `PNG header declaring ${w}x${h}`, { headers: { "Content-Type": "image/png", "Graph-Top-K": "5" }, body: b64(pngBomb(w, h)), expect: E("PAYLOAD_TOO_LARGE") });
  }
  c.nats(S.classify, "pixel-bomb", "GIF declaring 65535x65535", { body: b64(gifBomb(65_535, 65_535)), expect: oneOf("PAYLOAD_TOO_LARGE", "INVALID_IMAGE") });
  c.nats(S.classify, "pixel-bomb", "TIFF declaring 100000x100000", { body: b64(tiffBomb(100_000, 100_000)), expect: oneOf("PAYLOAD_TOO_LARGE", "INVALID_IMAGE") });
  c.nats(S.classify, "oversized", "8 MiB + 1 random bytes (over MAX_INPUT_BYTES)", { body: { kind: "random", seed: c.seed(), length: 8 * MIB + 1 }, expect: E("PAYLOAD_TOO_LARGE"), timeoutMs: 20_000 });
  // tensor headers on the image endpoint change nothing
  for (let i = 0; i < 4; i++) {
    c.nats(S.classify, "stray-headers", "Graph-Shape and Graph-Dtype on an image request with random bytes", { headers: { "Graph-Shape": c.pick(BAD_SHAPES), "Graph-Dtype": c.pick(BAD_DTYPES) }, body: c.randomNoMagic(c.int(10, 5000)), expect: E("INVALID_IMAGE") });
  }
  natsDeadlines(c, S.classify, valid, { body: c.randomNoMagic(512), code: "INVALID_IMAGE" });
}

function tensorHeaders(shape: string | undefined, dtype: string | undefined): Record<string, string> {
  const h: Record<string, string> = {};
  if (shape !== undefined) h["Graph-Shape"] = shape;
  if (dtype !== undefined) h["Graph-Dtype"] = dtype;
  return h;
}

function natsInfer(c: Corpus): void {
  const good = (): BodySpec => ({ kind: "float32", count: TENSOR_ELEMS, seed: c.seed() });
  const small = (): BodySpec => ({ kind: "float32", count: c.int(0, 64), seed: c.seed() });
  const ok = "1,3,224,224";
  for (const [i, s] of BAD_SHAPES.entries()) {
    c.nats(S.run, "shape", `Graph-Shape ${JSON.stringify(s.slice(0, 40))}`, { headers: tensorHeaders(s, "float32"), body: i % 8 === 0 ? good() : small(), expect: E("BAD_REQUEST") });
  }
  c.nats(S.run, "shape", "no Graph-Shape", { headers: tensorHeaders(undefined, "float32"), body: good(), expect: E("BAD_REQUEST") });
  c.nats(S.run, "shape", "2,3,224,224 with two rows of data", { headers: tensorHeaders("2,3,224,224", "float32"), body: { kind: "float32", count: 2 * TENSOR_ELEMS, seed: c.seed() }, expect: E("BAD_REQUEST") });
  for (const [i, d] of BAD_DTYPES.entries()) {
    c.nats(S.run, "dtype", `Graph-Dtype ${JSON.stringify(d)}`, { headers: tensorHeaders(ok, d), body: i % 5 === 0 ? good() : small(), expect: E("BAD_REQUEST") });
  }
  c.nats(S.run, "dtype", "no Graph-Dtype", { headers: tensorHeaders(ok, undefined), body: good(), expect: E("BAD_REQUEST") });
  c.nats(S.run, "dtype", "float64 with float64-sized data", { headers: tensorHeaders(ok, "float64"), body: { kind: "float32", count: 2 * TENSOR_ELEMS, seed: c.seed() }, expect: E("BAD_REQUEST") });
  c.nats(S.run, "dtype", "uint8 with float32-sized data", { headers: tensorHeaders(ok, "uint8"), body: { kind: "random", seed: c.seed(), length: TENSOR_BYTES }, expect: E("BAD_REQUEST") });
  c.nats(S.run, "dtype", "uint8 with a 2,3,224,224 shape", { headers: tensorHeaders("2,3,224,224", "uint8"), body: { kind: "random", seed: c.seed(), length: 2 * TENSOR_ELEMS }, expect: E("BAD_REQUEST") });
  for (const bytes of [0, 1, 3, 4, TENSOR_BYTES - 4, TENSOR_BYTES - 1, TENSOR_BYTES + 1, TENSOR_BYTES + 4, 2 * TENSOR_BYTES, TENSOR_ELEMS, 224 * 224 * 4 * 4, 1000]) {
    c.nats(S.run, "size", `${bytes} bytes for a 1,3,224,224 float32 tensor`, { headers: tensorHeaders(ok, "float32"), body: { kind: "float32", count: Math.min(TENSOR_ELEMS, Math.ceil(bytes / 4)), seed: c.seed(), bytes }, expect: E("BAD_REQUEST") });
  }
  c.nats(S.run, "size", "1.5 MiB (over the NATS default max_payload) for a 1,3,224,224 float32 tensor", { headers: tensorHeaders(ok, "float32"), body: { kind: "fill", byte: 0x3f, length: 1.5 * MIB }, expect: E("BAD_REQUEST"), timeoutMs: 20_000 });
  c.nats(S.run, "size", "JSON instead of a tensor", { headers: tensorHeaders(ok, "float32"), body: json({ data: [1, 2, 3], shape: [1, 3, 224, 224] }), expect: E("BAD_REQUEST") });
  // non-finite values: the right size, shape and dtype
  const specials = ["NaN", "Infinity", "-Infinity"] as const;
  for (const special of specials) {
    c.nats(S.run, "non-finite", `every value ${special}`, { headers: tensorHeaders(ok, "float32"), body: { kind: "float32", count: TENSOR_ELEMS, seed: c.seed(), special, every: 1 }, expect: E("BAD_REQUEST") });
    c.nats(S.run, "non-finite", `one ${special} at a random position`, { headers: tensorHeaders(ok, "float32"), body: { kind: "float32", count: TENSOR_ELEMS, seed: c.seed(), special, every: TENSOR_ELEMS, offset: c.int(0, TENSOR_ELEMS - 1) }, expect: E("BAD_REQUEST") });
    c.nats(S.run, "non-finite", `every ${c.int(50, 500)}th value ${special}`, { headers: tensorHeaders(ok, "float32"), body: { kind: "float32", count: TENSOR_ELEMS, seed: c.seed(), special, every: c.int(50, 500), offset: c.int(0, 49) }, expect: E("BAD_REQUEST") });
    c.nats(S.run, "non-finite", `the last value ${special}`, { headers: tensorHeaders(ok, "float32"), body: { kind: "float32", count: TENSOR_ELEMS, seed: c.seed(), special, every: TENSOR_ELEMS, offset: TENSOR_ELEMS - 1 }, expect: E("BAD_REQUEST") });
  }
  // a quiet NaN with a payload and a signalling NaN pattern, as raw bits
  for (const [name, bits] of [["signalling NaN 0x7f800001", 0x7f800001], ["NaN with payload 0x7fc12345", 0x7fc12345], ["negative NaN 0xffc00000", 0xffc00000]] as const) {
    const patch = Buffer.alloc(4);
    patch.writeUInt32LE(bits);
    c.nats(S.run, "non-finite", `a ${name} at value ${c.int(0, TENSOR_ELEMS - 1)}`, { headers: tensorHeaders(ok, "float32"), body: { kind: "concat", parts: [{ kind: "float32", count: TENSOR_ELEMS - 1, seed: c.seed() }, b64(patch)] }, expect: E("BAD_REQUEST") });
  }
  for (let i = 0; i < 4; i++) {
    c.nats(S.run, "stray-headers", "Graph-Top-K and Content-Type on a tensor with a bad shape", { headers: { ...tensorHeaders(c.pick(BAD_SHAPES), "float32"), "Graph-Top-K": c.pick(ODD_TOP_K.filter(Boolean)), "Content-Type": c.pick(BAD_CONTENT_TYPES) }, body: small(), expect: E("BAD_REQUEST") });
  }
  natsDeadlines(c, S.run, good(), { body: small(), code: "BAD_REQUEST", headers: tensorHeaders(ok, "float32") });
}

/**
 * Graph-Deadline on one subject, with a bad body (the body's code, or BAD_REQUEST for the header; DEADLINE_EXCEEDED
 * too where the value could be read as a past time) and with a valid one (served, or refused as malformed or
 * expired as the value allows; never anything else).
 */
function natsDeadlines(c: Corpus, subject: string, valid: BodySpec, bad: { body: BodySpec; code: string; headers?: Record<string, string> }): void {
  const h = (d: string): Record<string, string> => ({ ...(bad.headers ?? {}), "Graph-Deadline": d });
  const badCodes = (...more: string[]): Expect => oneOf(...new Set([bad.code, "BAD_REQUEST", ...more]));
  const check = (d: string, kind: ReturnType<typeof deadlineKind>): string => {
    if (deadlineKind(d) !== kind) throw new Error(`deadline ${JSON.stringify(d)} is not ${kind}`);
    return d;
  };
  for (const d of DEADLINE_JUNK.filter((_, i) => i % 4 === 0)) c.nats(subject, "deadline", `Graph-Deadline ${JSON.stringify(check(d, "junk"))} with a bad body`, { headers: h(d), body: bad.body, expect: badCodes() });
  for (const d of DEADLINE_ODD.filter((_, i) => i % 4 === 1)) c.nats(subject, "deadline", `Graph-Deadline ${JSON.stringify(check(d, "odd"))} with a bad body`, { headers: h(d), body: bad.body, expect: badCodes("DEADLINE_EXCEEDED") });
  for (const d of DEADLINE_FAR.filter((_, i) => i % 3 === 0)) c.nats(subject, "deadline", `Graph-Deadline ${JSON.stringify(check(d, "far"))} (far future) with a bad body`, { headers: h(d), body: bad.body, expect: badCodes() });
  for (const d of DEADLINE_PAST.filter((_, i) => i % 2 === 0)) c.nats(subject, "deadline", `Graph-Deadline ${JSON.stringify(check(d, "past"))} (in the past) with a valid body`, { headers: h(d), body: valid, expect: oneOf("DEADLINE_EXCEEDED", "BAD_REQUEST") });
  const odd = check(c.pick(DEADLINE_ODD), "odd");
  c.nats(subject, "deadline-valid-body", `Graph-Deadline ${JSON.stringify(odd)} with a valid body`, { headers: h(odd), body: valid, expect: { oneOf: ["DEADLINE_EXCEEDED", "BAD_REQUEST"], okAllowed: true } });
  const far = check(c.pick(DEADLINE_FAR), "far");
  c.nats(subject, "deadline-valid-body", `Graph-Deadline ${JSON.stringify(far)} (far future) with a valid body`, { headers: h(far), body: valid, expect: { oneOf: ["BAD_REQUEST"], okAllowed: true } });
  const junk = check(c.pick(DEADLINE_JUNK), "junk");
  c.nats(subject, "deadline-valid-body", `Graph-Deadline ${JSON.stringify(junk)} with a valid body`, { headers: h(junk), body: valid, expect: { oneOf: ["BAD_REQUEST"], okAllowed: true } });
}

/** Stray headers that mean nothing to a JSON endpoint; a bad body's code must not change. */
function strayHeaders(c: Corpus): Record<string, string> {
  const h: Record<string, string> = {};
  if (c.rand() < 0.5) h["Graph-Top-K"] = c.pick(ODD_TOP_K.filter(Boolean));
  if (c.rand() < 0.5) h["Graph-Shape"] = c.pick(BAD_SHAPES);
  if (c.rand() < 0.5) h["Graph-Dtype"] = c.pick(BAD_DTYPES);
  if (c.rand() < 0.5) h["Content-Type"] = c.pick(BAD_CONTENT_TYPES);
  if (c.rand() < 0.4) h["Graph-Deadline"] = c.pick([...DEADLINE_JUNK, ...DEADLINE_FAR]);
  return h;
}

/** Bad JSON bodies for an endpoint whose valid request is `valid` (a strict object of string fields). */
function natsJsonEndpoint(c: Corpus, subject: string, valid: Record<string, string>, limits: Record<string, number>): void {
  const cat = "json";
  const send = (category: string, what: string, body: BodySpec): void => c.nats(subject, category, what, { headers: strayHeaders(c), body, expect: E("BAD_REQUEST") });
  send(cat, "empty body", { kind: "empty" });
  for (const t of WRONG_TOP_LEVEL.filter((_, i) => i % 2 === 0)) send(cat, `top-level ${t}`, text(t));
  for (const t of [...MALFORMED_JSON.filter(() => c.rand() < 0.2), ...jsonFuzz(c, 3)]) send("malformed-json", `body ${JSON.stringify(t.slice(0, 40))}`, text(t));
  send("malformed-json", "invalid UTF-8", { kind: "latin1", text: "{\"\xff\xfe\":1}" });
  send("malformed-json", "UTF-16LE JSON", { kind: "b64", b64: Buffer.from(JSON.stringify(valid), "utf16le").toString("base64") });
  send("malformed-json", "BOM then truncated JSON", text(`\uFEFF${JSON.stringify(valid).slice(0, -2)}`));
  const fields = Object.keys(valid);
  for (const f of fields) {
    for (const v of [5, null, true, [], {}, [valid[f]], { v: valid[f] }]) send(cat, `${f}: ${JSON.stringify(v)}`, json({ ...valid, [f]: v }));
    const { [f]: _, ...missing } = valid;
    send(cat, `${f} missing`, json(missing));
    send(cat, `${f} duplicated, the last one a number`, text(`${JSON.stringify(valid).slice(0, -1)},${JSON.stringify(f)}:7}`));
    const max = limits[f];
    if (max !== undefined) {
      send(cat, `${f} of ${max + 1} ASCII`, json({ ...valid, [f]: "a".repeat(max + 1) }));
      send(cat, `${f} of ${max + 1} emoji`, json({ ...valid, [f]: "\u{1F600}".repeat(max + 1) }));
      send(cat, `${f} of ${Math.ceil((max + 1) / 2)} x e + combining acute (${2 * Math.ceil((max + 1) / 2)} code points)`, json({ ...valid, [f]: "e\u0301".repeat(Math.ceil((max + 1) / 2)) }));
      send("oversized", `${f} of 1 MiB`, { kind: "concat", parts: [text(`${JSON.stringify({ ...valid, [f]: "" }).slice(0, -2)}`), { kind: "repeat", text: "z", count: MIB }, text("\"}")] });
    }
    if (f === "name" || f === "user_key") send(cat, `${f} empty`, json({ ...valid, [f]: "" }));
  }
  for (const k of ["extra", "__proto__", "constructor", "n\u0101me", "\u0000", "\u{1F600}", "\uff4e\uff41\uff4d\uff45", "\ud800"]) {
    send("unicode-key", `extra key ${JSON.stringify(k)}`, text(`${JSON.stringify(valid).slice(0, -1)},${JSON.stringify(k)}:1}`));
  }
  for (const d of deepJson(valid).filter((_, i) => [1, 3, 4, 6, 7].includes(i))) send("deep-json", d.what, d.body);
  natsDeadlines(c, subject, json(valid), { body: text("{"), code: "BAD_REQUEST" });
}

function natsNoInput(c: Corpus, subject: string): void {
  for (const t of ["{\"x\":1}", "[]", "null", "5", "\"\"", "{", "true", "{\"__proto__\":{}}", "[{}]", "{\"\u{1F600}\":0}"]) {
    c.nats(subject, "json", `body ${t}`, { headers: strayHeaders(c), body: text(t), expect: E("BAD_REQUEST") });
  }
  c.nats(subject, "deep-json", "array nested 100,000 deep", { body: deepJson({})[1]!.body, expect: E("BAD_REQUEST") });
  c.nats(subject, "deadline", "Graph-Deadline \"1\" (in the past)", { headers: { "Graph-Deadline": "1" }, body: { kind: "empty" }, expect: oneOf("DEADLINE_EXCEEDED", "BAD_REQUEST") });
  c.nats(subject, "deadline", "Graph-Deadline \"abc\" with a bad body", { headers: { "Graph-Deadline": "abc" }, body: text("[]"), expect: E("BAD_REQUEST") });
}

export function generateCorpus(seed: number = DEFAULT_SEED): CorpusCase[] {
  const c = new Corpus(seed);
  const images = loadImages();
  httpImages(c, images);
  httpContentTypes(c, images);
  httpJson(c);
  httpOddQuery(c, images);
  httpUnicode(c);
  httpOversized(c);
  httpLowLevel(c);
  httpMethods(c);
  natsClassify(c, images);
  natsInfer(c);
  natsJsonEndpoint(c, S.greet, { name: "ada" }, { name: 256 });
  natsJsonEndpoint(c, S.greeting, { name: "ada" }, { name: 256 });
  natsJsonEndpoint(c, S.process, { message: "hi", user_key: "u1" }, { message: 1024, user_key: 256 });
  natsJsonEndpoint(c, S.variantA, { message: "hi" }, { message: 1024 });
  natsJsonEndpoint(c, S.variantB, { message: "hi" }, { message: 1024 });
  natsNoInput(c, S.labels);
  natsNoInput(c, S.info);
  natsNoInput(c, S.endpoints);
  const ids = new Set<string>();
  for (const k of c.cases) {
    if (ids.has(k.id)) throw new Error(`duplicate id ${k.id}`);
    ids.add(k.id);
  }
  return c.cases;
}

export function serialize(cases: readonly CorpusCase[]): string {
  return cases.map((k) => JSON.stringify(k)).join("\n") + "\n";
}

export function summarize(cases: readonly CorpusCase[]): { byCategory: Record<string, number>; bytes: number } {
  const byCategory: Record<string, number> = {};
  let bytes = 0;
  for (const k of cases) {
    byCategory[k.category] = (byCategory[k.category] ?? 0) + 1;
    bytes += bodyLength(k.body);
  }
  return { byCategory, bytes };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { seed: { type: "string" }, check: { type: "boolean", default: false } } });
  const seed = values.seed === undefined ? DEFAULT_SEED : Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
  const cases = generateCorpus(seed);
  const out = serialize(cases);
  if (values.check) {
    let committed = "";
    try {
      committed = readFileSync(CASES_FILE, "utf8");
    } catch {
      // missing: differs
    }
    if (committed !== out) {
      process.stderr.write(`${CASES_FILE} is not what seed ${seed} generates: run node --import tsx scripts/gen-corpus.ts\n`);
      process.exitCode = 1;
    }
  } else {
    writeFileSync(CASES_FILE, out);
    const { byCategory, bytes } = summarize(cases);
    process.stdout.write(`${cases.length} cases (seed ${seed}), ${(bytes / MIB).toFixed(1)} MiB of bodies, ${(out.length / 1024).toFixed(0)} KiB on disk -> ${CASES_FILE}\n`);
    for (const [k, n] of Object.entries(byCategory)) process.stdout.write(`  ${k.padEnd(44)} ${n}\n`);
  }
}
