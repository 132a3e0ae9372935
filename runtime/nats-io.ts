/**
 * The socket I/O of a connection, two changes to how the pinned nats.js (nats-core 3.4) does it:
 *
 * 1. Writes: one socket write per event-loop turn instead of one per microtask turn.
 *
 * nats.js (nats-core 3.4 `ProtocolHandler.sendCommand`) queues what a publish or request encodes and flushes it
 * to the socket from a microtask. Under load a replica handles many messages of one socket read in one turn, but
 * their replies leave at different microtask depths (each handler awaits its own work), so the queue is flushed
 * after the first of them and each of the others pays a write syscall of its own: on loopback a write also runs the
 * receiver's TCP path, so on two shared cores the chain spent a third of its CPU in `writeBuffer`, one write per
 * message. Flushing from `setImmediate` instead sends everything the turn produced in one write, before the event
 * loop polls again: no added wait (the check phase follows the poll phase of the same turn), fewer and larger
 * writes. Measured on the chain (ingress -> greeter-proxy -> greeter, 2-core VM): about 1.3x the throughput at
 * C=16 (README, Benchmarks).
 *
 * 2. Reads: a message larger than one socket read (an image, a tensor: 150-600 KB against 64 KB reads) is
 * gathered in a buffer of its exact size, allocated once when its header is parsed (the header gives the size),
 * not zero-filled, with the message placed so that its payload starts 8-byte aligned (a float32 tensor can then
 * be read through a Float32Array or Uint32Array view, no copy). nats.js starts with a buffer of the first chunk
 * and doubles it as chunks arrive, so a 147 KB tensor cost three allocations (~460 KB) and as many copies, and
 * the garbage collector paid for them.
 *
 * 3. The garbage collector: received bytes count against the heap's limit, not against a limit of their own.
 *
 * Every socket read (64 KB) and every large message's buffer is an ArrayBuffer, memory outside V8's heap that V8
 * counts as "external". By default V8 starts a full collection whenever external memory grows 64 MB past what it
 * was after the last one, whatever the size of the heap: a node receiving ~100 MB/s of image tensors (infer at 700
 * images/s of 147 KB) ran a mark-compact of its 24 MB heap every 100-300 ms, 140 of them in 25 s, most started by
 * "external memory pressure" (V8's --trace-incremental-marking), while the buffers themselves are short-lived and
 * freed by any collection. V8's `external_memory_accounted_in_global_limit` counts external memory in the global
 * allocation limit instead, which scales with the heap: half the mark-compacts, and infer +13-15% images/s at C=16
 * and C=64 (`npm run bench -- --target infer`, 2-core VM). Set once per process when it first connects, before
 * the heap has grown; only on a V8 that has the flag (13 and later: Node 24; Node 20's V8 11 has not).
 *
 * 4. Reuse: a consumer that is done with a large message may hand its buffer back ({@link releaseReceived}).
 *
 * A node that copies each large payload somewhere else at once (infer writes every image into its batch slot) has
 * no use for the message buffer afterwards, and at 1,000 images/s of 147 KB those buffers are most of what its
 * garbage collector works for: 25 mark-compacts in 10 s, about 0.13 ms of the GC threads' CPU per image (2-core
 * VM). A buffer handed back goes to a small free list by size class and the next large message of that class is
 * gathered in it, so steady traffic allocates nothing (messages of 64 KB and more: a smaller one spanning reads gets
 * a buffer of exactly its size, as before). Only buffers this file lent are taken back, each once; a
 * message nobody releases is simply collected as before. After `releaseReceived(msg.data)` neither `msg.data` nor
 * any view of its buffer may be read again (its bytes become the next message's); headers already read stay valid
 * (nats.js decodes them into their own object on first access).
 *
 * 1 and 2 replace internals of nats.js (the protocol handler's sendCommand; the parser's parse and the DenoBuffer
 * class its module makes message buffers with), so the version is pinned (package.json) and
 * test/integration/nats-io.test.ts checks that each still applies and what it does.
 * Where nats.js does not have the shape expected, nothing is replaced and its own behaviour stays.
 */
import { createRequire } from "node:module";
import { setFlagsFromString } from "node:v8";
import type { NatsConnection } from "@nats-io/transport-node";

/** The V8 flag of 3 (see the top of this file). */
export const EXTERNAL_MEMORY_FLAG = "--external-memory-accounted-in-global-limit";
let externalMemoryAccounted = false;

/** Makes V8 count external memory (received buffers) in its global heap limit; once per process (see 3 above). */
export function accountExternalMemoryInHeapLimit(): void {
  if (externalMemoryAccounted) return;
  externalMemoryAccounted = true;
  if (Number(process.versions.v8.split(".")[0]) >= 13) setFlagsFromString(EXTERNAL_MEMORY_FLAG);
}

interface ProtocolHandler {
  outbound: { fill(buf: Uint8Array, ...payloads: Uint8Array[]): void; size(): number };
  pendingLimit: number;
  sendCommand(cmd: string | Uint8Array, ...payloads: Uint8Array[]): void;
  flushPending(): void;
}

const patched = new WeakSet<object>();

function protocolOf(nc: NatsConnection): ProtocolHandler | undefined {
  const p = (nc as unknown as { protocol?: Partial<ProtocolHandler> }).protocol;
  if (
    !p ||
    typeof p.sendCommand !== "function" ||
    typeof p.flushPending !== "function" ||
    typeof p.pendingLimit !== "number"
  )
    return undefined;
  if (!p.outbound || typeof p.outbound.fill !== "function" || typeof p.outbound.size !== "function") return undefined;
  return p as ProtocolHandler;
}

/** Whether `nc`'s writes are coalesced per event-loop turn (see the top of this file). */
export function writesCoalesced(nc: NatsConnection): boolean {
  const p = protocolOf(nc);
  return p !== undefined && patched.has(p);
}

/** Makes `nc` write once per event-loop turn; false (and nothing changed) where nats.js is not the expected shape. */
export function coalesceWrites(nc: NatsConnection): boolean {
  const p = protocolOf(nc);
  if (!p) return false;
  if (patched.has(p)) return true;
  const enc = new TextEncoder();
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    // Does nothing while disconnected; the handler flushes what is queued itself once it reconnects.
    p.flushPending();
  };
  p.sendCommand = (cmd, ...payloads) => {
    p.outbound.fill(typeof cmd === "string" ? enc.encode(cmd) : cmd, ...payloads);
    if (p.outbound.size() >= p.pendingLimit)
      p.flushPending(); // a large backlog goes out at once, as before
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  patched.add(p);
  return true;
}

interface ParserLike {
  parse(buf: Uint8Array): void;
  state: number;
  ma?: { size: number; hdr: number };
  msgBuf?: DenoBufferLike;
}

let readsPresized: object | undefined;

/**
 * An ArrayBuffer of `n` bytes that is not zero-filled first (every byte of it is written before anyone reads it):
 * Node's unpooled unsafe allocation, which owns its buffer exactly.
 */
function uninitialized(n: number): ArrayBuffer {
  const b = Buffer.allocUnsafeSlow(n);
  return b.byteOffset === 0 && b.buffer.byteLength === n ? (b.buffer as ArrayBuffer) : new ArrayBuffer(n);
}

/** Size classes of reused buffers: a message is gathered in a buffer of its size rounded up to this. */
export const RECEIVE_CLASS_BYTES = 16 * 1024;
/** At most this much memory waits in the free lists; a buffer handed back beyond it is left to the collector. */
const RECEIVE_POOL_MAX_BYTES = 32 * 1024 * 1024;
const freeByClass = new Map<number, ArrayBuffer[]>();
let freeBytes = 0;
/** Buffers gathering or holding a message now, lent by receiveBuffer and not yet handed back. */
const lent = new WeakSet<ArrayBuffer>();

/**
 * Below this a message split across socket reads gets a buffer of exactly its size, neither lent nor reused: small
 * messages (a chain's requests, a reply of logits) are split by read boundaries all the time, and a size class of
 * 16 KB for each would multiply what they allocate.
 */
export const RECEIVE_POOLED_MIN_BYTES = 64 * 1024;

/** A buffer of at least `n` bytes for one message: a free one of its size class, else a new one. */
function receiveBuffer(n: number): ArrayBuffer {
  if (n < RECEIVE_POOLED_MIN_BYTES) return uninitialized(n);
  const cap = Math.ceil(n / RECEIVE_CLASS_BYTES) * RECEIVE_CLASS_BYTES;
  let b = freeByClass.get(cap)?.pop();
  if (b) freeBytes -= cap;
  else b = uninitialized(cap);
  lent.add(b);
  return b;
}

/**
 * Hands the buffer of a received large message back for the next one (see 4 at the top of this file): `data` is a
 * message's payload (`msg.data`). True when it was taken back; false for a message gathered otherwise (small, or not
 * by a connection of this process), one already handed back or transferred away, or a full free list. Its bytes must
 * not be read after.
 */
export function releaseReceived(data: Uint8Array): boolean {
  const b = data.buffer;
  if (!(b instanceof ArrayBuffer) || !lent.has(b)) return false;
  lent.delete(b);
  // Transferred elsewhere (postMessage, structuredClone) since: its memory is no longer this thread's to reuse. (A
  // detached buffer has no bytes; a lent one has at least one size class.)
  if (b.byteLength === 0) return false;
  if (freeBytes + b.byteLength > RECEIVE_POOL_MAX_BYTES) return false;
  let free = freeByClass.get(b.byteLength);
  if (!free) freeByClass.set(b.byteLength, (free = []));
  free.push(b);
  freeBytes += b.byteLength;
  return true;
}

/** Bytes waiting in the free lists of {@link releaseReceived} (tests). */
export function receivePoolBytes(): number {
  return freeBytes;
}

/** Whether the parser class of `nc` gathers large messages in presized buffers (see the top of this file). */
export function readsPresizedFor(nc: NatsConnection): boolean {
  const parser = (nc as unknown as { protocol?: { parser?: object } }).protocol?.parser;
  return parser !== undefined && Object.getPrototypeOf(parser) === readsPresized;
}

/** The part of nats-core's DenoBuffer (lib/denobuffer.js) the parser keeps a message in: contents `_buf[_off..]`. */
interface DenoBufferLike {
  _buf: Uint8Array;
  _off: number;
  readonly length: number;
}
type DenoBufferClass = new (ab?: Uint8Array | null) => DenoBufferLike;

/** Large messages gathered so far: from their first chunk on (the DenoBuffer hook), or moved after one (tests). */
const gathered = { atStart: 0, moved: 0 };
export function largeMessagesGathered(): { atStart: number; moved: number } {
  return { ...gathered };
}

/** The parser and the chunk it is parsing now (set around each `parse` call; parsing is synchronous). */
let parsingParser: ParserLike | undefined;
let parsingChunk: Uint8Array | undefined;

/**
 * Makes `mb` gather a message of `size` bytes (`hdr` of them headers) in one buffer of its size class, starting with
 * the `have` bytes that came so far, placed so that the payload starts 8-byte aligned (see 2 at the top of this file).
 */
function presize(mb: DenoBufferLike, have: Uint8Array, size: number, hdr: number): void {
  // 4 would do for Float32Array views, but V8 copies into a SharedArrayBuffer (infer's batch slots) word by word
  // only from an 8-byte aligned source, byte by byte otherwise: 62 against 9-18 us per 147 KB image here.
  const lead = (8 - ((hdr > 0 ? hdr : 0) & 7)) & 7;
  const whole = new Uint8Array(receiveBuffer(lead + size));
  whole.fill(0, 0, lead);
  whole.set(have, lead);
  // DenoBuffer grows by reslicing within its ArrayBuffer (from offset 0) while it has room: no more allocations;
  // its contents are _buf[_off..], so the lead bytes are never part of them.
  mb._buf = whole.subarray(0, lead + have.length);
  mb._off = lead;
}

/**
 * Modules of nats-core's lib/ (the package's exports map names none of them, so they are reached from its entry
 * file; the module cache makes each the very object the parser uses), or none where they are not there.
 */
function natsCoreModules(...files: string[]): (Record<string, unknown> | undefined)[] {
  try {
    const fromTransport = createRequire(createRequire(import.meta.url).resolve("@nats-io/transport-node"));
    const fromCore = createRequire(fromTransport.resolve("@nats-io/nats-core"));
    return files.map((f) => fromCore(f) as Record<string, unknown>);
  } catch {
    return [];
  }
}

/**
 * What the parser makes its DenoBuffers with (lib/denobuffer.js) and its state while it reads a payload
 * (`State.MSG_PAYLOAD` of lib/parser.js), or undefined where nats-core is not the shape expected.
 */
function denoBufferHooks(): { mod: { DenoBuffer: DenoBufferClass }; payloadState: number } | undefined {
  const [mod, parser] = natsCoreModules("./denobuffer.js", "./parser.js");
  const payloadState = (parser?.State as { MSG_PAYLOAD?: unknown } | undefined)?.MSG_PAYLOAD;
  const D = mod?.DenoBuffer as DenoBufferClass | undefined;
  if (typeof D !== "function" || typeof (D.prototype as { _reslice?: unknown })._reslice !== "function") return;
  if (typeof payloadState !== "number") return;
  return { mod: mod as { DenoBuffer: DenoBufferClass }, payloadState };
}

/**
 * Makes nats.js's parser (every connection of this process, reconnects included: the parser is made anew on each)
 * gather a message that spans socket reads in one buffer of its size. False where the parser is not the shape
 * expected (nothing changed).
 *
 * Where a large message starts, the parser makes a DenoBuffer of the rest of the socket read, and DenoBuffer's
 * constructor copies what it is given into a buffer of that size (up to 64 KB). The parser's module gets a DenoBuffer
 * whose constructor, for exactly that call (the parser inside a message's payload, given the rest of the chunk it is
 * parsing, short of the message's size), gathers into the message's own buffer at once: one copy, no allocation in
 * between. After each chunk, a message still gathered in a smaller buffer (a DenoBuffer nats.js made otherwise) is
 * moved into one of its size.
 */
export function presizeReads(nc: NatsConnection): boolean {
  const parser = (nc as unknown as { protocol?: { parser?: Partial<ParserLike> } }).protocol?.parser;
  if (!parser || typeof parser.parse !== "function" || typeof parser.state !== "number") return false;
  const proto = Object.getPrototypeOf(parser) as ParserLike;
  if (readsPresized === proto) return true;
  const parse = proto.parse;
  const hooks = denoBufferHooks();
  if (hooks) {
    const Base = hooks.mod.DenoBuffer;
    const payloadState = hooks.payloadState;
    hooks.mod.DenoBuffer = class PresizedDenoBuffer extends Base {
      constructor(ab?: Uint8Array | null) {
        const p = parsingParser;
        const chunk = parsingChunk;
        const size = p?.ma?.size;
        const takes =
          p !== undefined &&
          chunk !== undefined &&
          ab instanceof Uint8Array &&
          p.state === payloadState &&
          size !== undefined &&
          size > ab.length &&
          ab.buffer === chunk.buffer &&
          ab.byteOffset + ab.length === chunk.byteOffset + chunk.length;
        super(takes ? null : ab);
        if (takes) {
          presize(this, ab, size, p.ma!.hdr);
          gathered.atStart++;
        }
      }
    };
  }
  proto.parse = function (this: ParserLike, buf: Uint8Array): void {
    parsingParser = this;
    parsingChunk = buf;
    try {
      parse.call(this, buf);
    } finally {
      parsingParser = undefined;
      parsingChunk = undefined;
    }
    // After a chunk that ends inside a payload, msgBuf holds what came so far: in a buffer of the message's size
    // class already (above), or else in one of just that size, moved here.
    const mb = this.msgBuf;
    const size = this.ma?.size;
    if (!mb || size === undefined || !(mb._buf instanceof Uint8Array) || mb._buf.buffer.byteLength >= size) return;
    const have = mb._buf.subarray(mb._off);
    if (have.length >= size) return;
    presize(mb, have, size, this.ma!.hdr);
    gathered.moved++;
  };
  readsPresized = proto;
  return true;
}
