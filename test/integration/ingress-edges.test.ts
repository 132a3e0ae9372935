/**
 * The ingress's HTTP edges over real sockets (node:net) against a listening app on 127.0.0.1: slow clients cut
 * off by the timeouts, and what Node's HTTP parser and Fastify's router refuse before any route runs. Every
 * answer must be JSON `{code, message}` with a code of the table and that code's status. Small timeouts keep
 * each case bounded; every socket is destroyed in `finally`.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import type { FastifyInstance } from "fastify";
import { buildApp, type IngressTimeouts } from "../../services/ingress/src/app.ts";
import { checkingIntervalMs } from "../../services/ingress/src/http-server.ts";
import {
  assertTableError,
  classifyRoute,
  greetingRoute,
  ingressDeps,
  startGreeterBroker,
  type GreeterBroker,
} from "../helpers/ingress.ts";

const TIMEOUTS: IngressTimeouts = {
  headersTimeoutMs: 1000,
  requestTimeoutMs: 2000,
  connectionTimeoutMs: 1500,
  keepAliveTimeoutMs: 1000,
};
/** Node looks for expired requests this often, so a cut comes at most this late; plus scheduling on a busy CI box. */
const LATE_MS = checkingIntervalMs(TIMEOUTS) + 700;
const DRIP_MS = 500;

let greeter: GreeterBroker;
let app: FastifyInstance;
let port: number;

async function listeningApp(): Promise<{ app: FastifyInstance; port: number }> {
  const a = await buildApp(
    ingressDeps(greeter, {
      clientTimeoutMs: 5000,
      routes: [greetingRoute(4000), classifyRoute(300)],
      maxBodyBytes: 64 * 1024,
      timeouts: TIMEOUTS,
    }),
  );
  await a.listen({ host: "127.0.0.1", port: 0 });
  return { app: a, port: (a.server.address() as net.AddressInfo).port };
}

before(async () => {
  greeter = await startGreeterBroker("edges", 5000);
  ({ app, port } = await listeningApp());
});

after(async () => {
  await app?.close();
  await greeter?.close();
});

interface Exchange {
  /** Undefined when the connection closed without a byte of answer. */
  statusCode: number | undefined;
  headers: Record<string, string>;
  body: string;
  /** From the first byte sent to the first byte of the answer (or to the close, when none came). */
  elapsedMs: number;
  closed: boolean;
}

/**
 * Sends `head` at once, then `drip` one byte every `dripMs` (until the server answers or closes), and reads one
 * answer. Bounded by `limitMs`; the socket is always destroyed.
 */
async function exchange(
  head: string | Buffer,
  opts: { drip?: string; dripMs?: number; limitMs?: number; port?: number } = {},
): Promise<Exchange> {
  const socket = net.connect(opts.port ?? port, "127.0.0.1");
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    let data = Buffer.alloc(0);
    let firstAnswerAt: number | undefined;
    let closed = false;
    const t0 = performance.now();
    const done = new Promise<void>((resolve) => {
      socket.on("data", (d: Buffer) => {
        firstAnswerAt ??= performance.now();
        data = Buffer.concat([data, d]);
        if (complete(data)) resolve();
      });
      socket.on("error", () => {}); // a write after the server closed resets; what was read still counts
      socket.on("close", () => {
        closed = true;
        resolve();
      });
      timer = setTimeout(resolve, opts.limitMs ?? 10_000);
    });
    socket.write(head);
    const drip = [...(opts.drip ?? "")];
    const dripper = (async () => {
      for (const ch of drip) {
        await new Promise((r) => setTimeout(r, opts.dripMs ?? DRIP_MS));
        if (closed || firstAnswerAt !== undefined || socket.destroyed) return;
        socket.write(ch);
      }
    })();
    await done;
    const elapsedMs = (firstAnswerAt ?? performance.now()) - t0;
    // the server closes after an error answer: give the FIN a moment to arrive
    if (!closed)
      await new Promise<void>((r) => {
        socket.once("close", () => {
          closed = true;
          r();
        });
        setTimeout(r, 300);
      });
    socket.destroy();
    await dripper;
    return { ...parse(data), elapsedMs, closed };
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}

function complete(data: Buffer): boolean {
  const end = data.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const m = /content-length:\s*(\d+)/i.exec(data.subarray(0, end).toString("latin1"));
  return m !== null && data.length >= end + 4 + Number(m[1]);
}

function parse(data: Buffer): Pick<Exchange, "statusCode" | "headers" | "body"> {
  if (data.length === 0) return { statusCode: undefined, headers: {}, body: "" };
  const end = data.indexOf("\r\n\r\n");
  const [statusLine, ...lines] = data.subarray(0, end).toString("latin1").split("\r\n");
  const headers = Object.fromEntries(
    lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
  );
  return { statusCode: Number(statusLine!.split(" ")[1]), headers, body: data.subarray(end + 4).toString("utf8") };
}

const get = (path: string, extra = "") => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;

test("ingress edges - a well-formed request is answered (the harness itself)", async () => {
  const res = await exchange(get("/greeting/ada"));
  assert.equal(res.statusCode, 200);
  assert.deepEqual(JSON.parse(res.body), { message: "Hello, ada!", served_by: "inproc" });
});

test("ingress edges - a slow body (1 byte per 500 ms) is cut off with 408 at the request timeout", async () => {
  const head = "POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n";
  const res = await exchange(head, { drip: "x".repeat(100) });
  const body = assertTableError(res, "REQUEST_TIMEOUT");
  assert.match(body.message, /not received in full within 2000 ms/);
  assert.ok(res.elapsedMs >= TIMEOUTS.requestTimeoutMs - 50, `cut at ${res.elapsedMs} ms, not before the timeout`);
  assert.ok(res.elapsedMs <= TIMEOUTS.requestTimeoutMs + LATE_MS, `cut at ${res.elapsedMs} ms`);
  assert.equal(res.headers.connection, "close");
  assert.ok(res.closed, "and the connection is closed");
  // the request was under way in Fastify: its duration is recorded with the status it was answered with
  const metrics = await exchange(get("/metrics"));
  assert.match(
    metrics.body,
    /sg_http_request_duration_seconds_count\{route="\/classify",method="POST",status="408"\} [1-9]/,
  );
});

test("ingress edges - slow headers (1 byte per 500 ms) get 408 at the headers timeout, then the connection closes", async () => {
  const res = await exchange("GET /greeting/ada HTTP/1.1\r\nHost: 127.0.0.1\r\n", {
    drip: "X-Slow: " + "a".repeat(60),
  });
  const body = assertTableError(res, "REQUEST_TIMEOUT");
  assert.match(body.message, /headers were not received within 1000 ms/);
  assert.ok(
    res.elapsedMs >= TIMEOUTS.headersTimeoutMs - 50 && res.elapsedMs <= TIMEOUTS.headersTimeoutMs + LATE_MS,
    `cut at ${res.elapsedMs} ms`,
  );
  assert.ok(res.closed);
});

test("ingress edges - a body that stalls gets 408 at the connection (inactivity) timeout", async () => {
  const head =
    "POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n0123456789";
  const res = await exchange(head);
  const body = assertTableError(res, "REQUEST_TIMEOUT");
  assert.match(body.message, /no byte of the request for 1500 ms/);
  assert.ok(
    res.elapsedMs >= TIMEOUTS.connectionTimeoutMs - 50 && res.elapsedMs <= TIMEOUTS.connectionTimeoutMs + LATE_MS,
    `cut at ${res.elapsedMs} ms`,
  );
  assert.ok(res.closed);
});

test("ingress edges - a route waiting on the graph longer than the inactivity timeout is not cut", async () => {
  greeter.delayMs = TIMEOUTS.connectionTimeoutMs + 400;
  try {
    const res = await exchange(get("/greeting/patient"));
    assert.equal(res.statusCode, 200);
    assert.ok(res.elapsedMs >= greeter.delayMs - 50);
  } finally {
    greeter.delayMs = 0;
  }
});

test("ingress edges - an idle keep-alive connection is closed without an answer", async () => {
  const socket = net.connect(port, "127.0.0.1");
  try {
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    let data = "";
    socket.on("data", (d) => (data += d));
    const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(performance.now())));
    socket.write(get("/healthz"));
    const t0 = performance.now();
    const at = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 5000))]);
    assert.ok(at > 0, "closed by the server");
    assert.ok(at - t0 >= TIMEOUTS.keepAliveTimeoutMs - 100, `closed after ${at - t0} ms`);
    assert.match(data, /^HTTP\/1\.1 200 /);
    assert.equal(data.match(/HTTP\/1\.1/g)?.length, 1, "one answer: the healthz one, nothing on the idle close");
  } finally {
    socket.destroy();
  }
});

test("ingress edges - what the HTTP parser refuses is JSON with a table code", async () => {
  const method = assertTableError(await exchange("GET\x01 /greeting/ada HTTP/1.1\r\nHost: x\r\n\r\n"), "BAD_REQUEST");
  assert.deepEqual(method.details, { parser: "HPE_INVALID_METHOD" });
  assertTableError(await exchange("hello there\r\n\r\n"), "BAD_REQUEST");
  assertTableError(await exchange("GET /greeting/ada HTTP/9.9\r\nHost: x\r\n\r\n"), "BAD_REQUEST");
  const header = assertTableError(await exchange(get("/greeting/ada", "X-Bad: a\x01b\r\n")), "BAD_REQUEST");
  assert.deepEqual(header.details, { parser: "HPE_INVALID_HEADER_TOKEN" });
  assertTableError(await exchange(get("/greeting/ada", "Bad Name: x\r\n")), "BAD_REQUEST");
  assertTableError(await exchange(get("/greeting/ada", "Content-Length: 1\r\nContent-Length: 2\r\n")), "BAD_REQUEST");
  assertTableError(await exchange(get("/greeting/ada", `X-Big: ${"a".repeat(20_000)}\r\n`)), "HEADERS_TOO_LARGE");
  // the parser counts the request line against the same limit
  assertTableError(await exchange(get(`/greeting/${"a".repeat(20_000)}`)), "HEADERS_TOO_LARGE");
  // a framing error in the middle of a body, after the route was matched
  const chunked =
    "POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
  assertTableError(await exchange(chunked), "BAD_REQUEST");
});

test("ingress edges - router errors: bad percent-encoding, over-long parameter, wrong method, CONNECT", async () => {
  assertTableError(await exchange(get("/greeting/%FF")), "BAD_REQUEST");
  assertTableError(await exchange(get(`/greeting/${"a".repeat(3000)}`)), "URI_TOO_LONG");
  assertTableError(await exchange(get(`/greeting/${"a".repeat(300)}`)), "BAD_REQUEST");
  const del = await exchange("DELETE /greeting/ada HTTP/1.1\r\nHost: x\r\n\r\n");
  assertTableError(del, "METHOD_NOT_ALLOWED");
  assert.equal(del.headers.allow, "GET, HEAD");
  const post = await exchange("PROPFIND /classify HTTP/1.1\r\nHost: x\r\n\r\n");
  assertTableError(post, "METHOD_NOT_ALLOWED");
  assert.equal(post.headers.allow, "POST");
  assertTableError(await exchange(get("/nowhere")), "NOT_FOUND");
  const connect = await exchange("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  assertTableError(connect, "METHOD_NOT_ALLOWED");
  assert.ok(connect.closed);
});

test("ingress edges - HTTP/1.1 without Host is a JSON 400; an unknown Expect is ignored, not a bare 417", async () => {
  const noHost = assertTableError(await exchange("GET /greeting/ada HTTP/1.1\r\n\r\n"), "BAD_REQUEST");
  assert.match(noHost.message, /Host/);
  assert.equal((await exchange("GET /greeting/ada HTTP/1.0\r\n\r\n")).statusCode, 200, "HTTP/1.0 needs no Host");
  assert.equal((await exchange(get("/greeting/ada", "Expect: something-else\r\n"))).statusCode, 200);
});

test("ingress edges - a request arriving while the ingress shuts down gets 503 UNAVAILABLE JSON", async () => {
  const closing = await listeningApp();
  const socket = net.connect(closing.port, "127.0.0.1");
  try {
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    let data = "";
    socket.on("data", (d) => (data += d));
    // a request under way (headers not complete) keeps its connection through close()
    socket.write("GET /greeting/ada HTTP/1.1\r\nHost: x\r\n");
    await new Promise((r) => setTimeout(r, 100));
    const closed = closing.app.close();
    const until = Date.now() + 5000;
    while (closing.app.server.listening && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    socket.write("\r\n");
    await Promise.race([new Promise((r) => socket.once("close", r)), new Promise((r) => setTimeout(r, 5000))]);
    const res = { ...parse(Buffer.from(data, "latin1")), elapsedMs: 0, closed: true };
    assertTableError(res, "UNAVAILABLE");
    assert.equal(res.headers.connection, "close");
    await closed;
  } finally {
    socket.destroy();
    await closing.app.close().catch(() => {});
  }
});
