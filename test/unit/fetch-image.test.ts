import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { after, afterEach, before, test } from "node:test";
import {
  fetchImage,
  isPublicAddress,
  type FetchImageOptions,
  type LookupFn,
  type ResolvedAddress,
} from "../../services/ingress/src/fetch-image.ts";
import { GraphError, type ErrorCode } from "../../subjects/errors.ts";

// ---- network guard: every socket these tests open must dial loopback, whatever the code under test does. ----
// Socket#connect is wrapped for the whole file: an IP host must be loopback, a name must come with a `lookup`
// (so no real DNS query leaves the machine) whose answers must be loopback. A violation fails the connect before
// any packet is sent and is recorded, and afterEach asserts there were none.
const dialled: string[] = [];
const violations: string[] = [];
const realConnect = net.Socket.prototype.connect;
const isLoopback = (ip: string): boolean => /^127\./.test(ip) || ip === "::1" || /^::ffff:127\./.test(ip);

before(() => {
  net.Socket.prototype.connect = function guardedConnect(this: net.Socket, ...args: unknown[]) {
    const first = args[0];
    const options = (
      Array.isArray(first) ? first[0] : typeof first === "object" ? first : { port: first, host: args[1] }
    ) as net.TcpNetConnectOpts & { path?: string };
    if (options.path === undefined) {
      const host = options.host ?? "localhost";
      if (net.isIP(host) !== 0) {
        dialled.push(host);
        if (!isLoopback(host)) {
          violations.push(host);
          throw new Error(`test network guard: refused to dial ${host}`);
        }
      } else if (options.lookup === undefined) {
        violations.push(host);
        throw new Error(`test network guard: refused to resolve ${host} with the system resolver`);
      } else {
        const lookup = options.lookup;
        options.lookup = (hostname, opts, cb) =>
          lookup(hostname, opts, (err, address, family) => {
            const all = typeof address === "string" ? [address] : address.map((a) => a.address);
            const bad = err === null ? all.filter((a) => !isLoopback(a)) : [];
            dialled.push(...(err === null ? all : []));
            if (bad.length > 0) {
              violations.push(...bad);
              cb(new Error(`test network guard: refused to dial ${bad.join(",")}`), "", 0);
            } else cb(err, address, family);
          });
      }
    }
    return (realConnect as (...a: unknown[]) => net.Socket).apply(this, args);
  } as typeof realConnect;
});
after(() => {
  net.Socket.prototype.connect = realConnect;
});
afterEach(() => {
  assert.deepEqual(violations, [], "a test tried to reach a non-loopback address");
  dialled.length = 0;
});

// ---- local servers ----

interface TestServer {
  port: number;
  url: string;
  requests: http.IncomingMessage[];
  connections: number;
  server: http.Server;
}

async function startServer(
  t: { after: (fn: () => Promise<void>) => void },
  handler: http.RequestListener,
): Promise<TestServer> {
  const server = http.createServer();
  const s: TestServer = { port: 0, url: "", requests: [], connections: 0, server };
  server.on("connection", () => {
    s.connections++;
  });
  server.on("request", (req, res) => {
    s.requests.push(req);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  s.port = (server.address() as net.AddressInfo).port;
  s.url = `http://127.0.0.1:${s.port}`;
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return s;
}

const IMAGE = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex");
const serveImage: http.RequestListener = (_req, res) => {
  res.writeHead(200, { "content-type": "image/png" }).end(IMAGE);
};

const PUBLIC_V4 = "93.184.216.34";
const base = { maxBytes: 1 << 20, timeoutMs: 2_000, allowPrivateAddresses: true } satisfies FetchImageOptions;
const strict = { ...base, allowPrivateAddresses: false } satisfies FetchImageOptions;

function recordingLookup(table: Record<string, string[]>): LookupFn & { calls: string[] } {
  const calls: string[] = [];
  const fn = async (hostname: string): Promise<ResolvedAddress[]> => {
    calls.push(hostname);
    const found = table[hostname];
    if (found === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
    return found.map((address) => ({ address, family: net.isIP(address) === 6 ? 6 : 4 }));
  };
  return Object.assign(fn, { calls });
}

/** Sends the public-looking test address to a loopback port; records what the socket was asked to dial. */
function toLoopback(): NonNullable<FetchImageOptions["_connectHook"]> & { seen: string[] } {
  const seen: string[] = [];
  const hook = (target: ResolvedAddress): ResolvedAddress => {
    seen.push(target.address);
    return target.address === PUBLIC_V4 ? { address: "127.0.0.1", family: 4 } : target;
  };
  return Object.assign(hook, { seen });
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<GraphError> {
  const err = await p.then(
    () => assert.fail(`expected ${code}, got a result`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof GraphError, `expected a GraphError, got ${String(err)}`);
  assert.equal(err.code, code, `${err.code}: ${err.message}`);
  if (message !== undefined) assert.match(err.message, message);
  return err;
}

// ---- refusals before any connection ----

test("fetchImage - refuses non-public and non-http URLs before connecting", async (t) => {
  const srv = await startServer(t, serveImage);
  const lookup = recordingLookup({ localhost: ["127.0.0.1", "::1"] });
  const hook = toLoopback();
  const refused = [
    `http://127.0.0.1:${srv.port}/x`,
    `http://localhost:${srv.port}/`,
    `http://[::1]:${srv.port}/`,
    "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "https://[fe80::1]/",
    "http://[fd00::1]/",
    "file:///etc/passwd",
    "ftp://example.com/a.png",
    "gopher://example.com/",
    "javascript:alert(1)",
    "data:image/png;base64,iVBORw0KGgo=",
    "ws://example.com/",
    "http://user:pass@example.com/a.png",
  ];
  for (const url of refused)
    await rejectsWith(fetchImage(url, { ...strict, lookup, _connectHook: hook }), "URL_NOT_ALLOWED");
  assert.deepEqual(lookup.calls, ["localhost"]);
  assert.deepEqual(hook.seen, []);
  assert.deepEqual(dialled, []);
  assert.equal(srv.connections, 0);
});

test("fetchImage - scheme and credential checks hold even when private addresses are allowed", async () => {
  for (const url of [
    "file:///etc/passwd",
    "ftp://127.0.0.1/",
    "data:,x",
    "http://user@127.0.0.1/",
    "http://:pw@127.0.0.1/",
  ]) {
    await rejectsWith(fetchImage(url, base), "URL_NOT_ALLOWED");
  }
  assert.deepEqual(dialled, []);
});

test("fetchImage - an invalid URL string is BAD_REQUEST", async () => {
  for (const url of ["not a url", "", "http://", "http://[::1/"])
    await rejectsWith(fetchImage(url, strict), "BAD_REQUEST");
});

test("fetchImage - a host with any non-public address is refused", async () => {
  const lookup = recordingLookup({
    "mixed.test": [PUBLIC_V4, "10.1.2.3"],
    "v6.test": ["2606:4700:4700::1111", "fd00::1"],
  });
  await rejectsWith(fetchImage("http://mixed.test/a.png", { ...strict, lookup }), "URL_NOT_ALLOWED", /non-public/);
  await rejectsWith(fetchImage("http://v6.test/a.png", { ...strict, lookup }), "URL_NOT_ALLOWED", /non-public/);
  assert.deepEqual(dialled, []);
});

test("fetchImage - localhost through the system resolver is refused", async (t) => {
  if (!/^\s*127\.0\.0\.1\s.*\blocalhost\b/m.test(readFileSync("/etc/hosts", "utf8"))) {
    t.skip("/etc/hosts has no localhost entry; resolving it could query a DNS server");
    return;
  }
  await rejectsWith(fetchImage("http://localhost:9/", strict), "URL_NOT_ALLOWED", /non-public/);
  assert.deepEqual(dialled, []);
});

test("fetchImage - resolution failures", async () => {
  const lookup = recordingLookup({ "empty.test": [], "bogus.test": ["not-an-ip"] });
  await rejectsWith(
    fetchImage("http://nxdomain.test/", { ...strict, lookup }),
    "URL_NOT_ALLOWED",
    /^image_url host could not be resolved$/,
  );
  await rejectsWith(
    fetchImage("http://empty.test/", { ...strict, lookup }),
    "URL_NOT_ALLOWED",
    /could not be resolved/,
  );
  await rejectsWith(fetchImage("http://bogus.test/", { ...base, lookup }), "URL_NOT_ALLOWED", /could not be resolved/);
  const flaky: LookupFn = () =>
    Promise.reject(Object.assign(new Error("getaddrinfo EAI_AGAIN x"), { code: "EAI_AGAIN" }));
  await rejectsWith(
    fetchImage("http://flaky.test/", { ...strict, lookup: flaky }),
    "UPSTREAM_FETCH_FAILED",
    /EAI_AGAIN/,
  );
  assert.deepEqual(dialled, []);
});

// ---- pinning: the socket dials exactly the validated address ----

test("fetchImage - a public name is fetched from the validated address with the original Host", async (t) => {
  const srv = await startServer(t, serveImage);
  const lookup = recordingLookup({ "public.test": [PUBLIC_V4] });
  const hook = toLoopback();
  const got = await fetchImage(`http://public.test:${srv.port}/img.png?s=1`, { ...strict, lookup, _connectHook: hook });
  assert.deepEqual(got, {
    bytes: IMAGE,
    contentType: "image/png",
    finalUrl: `http://public.test:${srv.port}/img.png?s=1`,
  });
  assert.deepEqual(lookup.calls, ["public.test"]);
  assert.deepEqual(hook.seen, [PUBLIC_V4]);
  assert.equal(srv.requests[0]?.headers.host, `public.test:${srv.port}`);
  assert.equal(srv.requests[0]?.headers["accept-encoding"], "identity");
  assert.equal(srv.requests[0]?.url, "/img.png?s=1");
});

test("fetchImage - DNS rebinding: the second answer is never used", async (t) => {
  const srv = await startServer(t, serveImage);
  const answers = [PUBLIC_V4, "127.0.0.1"];
  let lookups = 0;
  const lookup: LookupFn = async () => [{ address: answers[Math.min(lookups++, 1)] as string, family: 4 }];
  const seen: string[] = [];
  // Stand-in for the unreachable public host: fail the connect instead of sending anything.
  const hook = (target: ResolvedAddress): ResolvedAddress => {
    seen.push(target.address);
    throw Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
  };
  await rejectsWith(
    fetchImage(`http://rebind.test:${srv.port}/`, { ...strict, lookup, _connectHook: hook }),
    "UPSTREAM_FETCH_FAILED",
    /ECONNREFUSED/,
  );
  assert.equal(lookups, 1);
  assert.deepEqual(seen, [PUBLIC_V4]);
  assert.equal(srv.connections, 0);
  assert.deepEqual(dialled, []);
});

test("fetchImage - every fetch dials afresh: no pooled socket outlives its check", async (t) => {
  const srv = await startServer(t, serveImage);
  const lookup = recordingLookup({ "public.test": [PUBLIC_V4] });
  const hook = toLoopback();
  for (let i = 0; i < 2; i++)
    await fetchImage(`http://public.test:${srv.port}/`, { ...strict, lookup, _connectHook: hook });
  assert.equal(srv.connections, 2);
  assert.deepEqual(hook.seen, [PUBLIC_V4, PUBLIC_V4]);
});

test("fetchImage - https sends the original hostname as SNI to the validated address", async (t) => {
  let hello: Buffer = Buffer.alloc(0);
  const raw = net.createServer((sock) =>
    sock.once("data", (d: Buffer) => {
      hello = d;
      sock.destroy();
    }),
  );
  await new Promise<void>((resolve) => raw.listen(0, "127.0.0.1", resolve));
  t.after(() => new Promise<void>((resolve) => raw.close(() => resolve())));
  const port = (raw.address() as net.AddressInfo).port;
  const lookup = recordingLookup({ "public.test": [PUBLIC_V4] });
  await rejectsWith(
    fetchImage(`https://public.test:${port}/a.png`, { ...strict, lookup, _connectHook: toLoopback() }),
    "UPSTREAM_FETCH_FAILED",
  );
  assert.ok(hello.includes("public.test"), "ClientHello carries the SNI name");
});

// ---- redirects ----

test("fetchImage - follows a redirect chain", async (t) => {
  const srv = await startServer(t, (req, res) => {
    const next: Record<string, [number, string]> = { "/a": [301, "/b"], "/b": [302, "./c"], "/c": [307, "/img"] };
    const hop = next[req.url ?? ""];
    if (hop !== undefined) res.writeHead(hop[0], { location: hop[1] }).end();
    else serveImage(req, res);
  });
  const got = await fetchImage(`${srv.url}/a`, base);
  assert.equal(got.finalUrl, `${srv.url}/img`);
  assert.deepEqual(got.bytes, IMAGE);
  assert.deepEqual(
    srv.requests.map((r) => r.url),
    ["/a", "/b", "/c", "/img"],
  );
});

test("fetchImage - too many redirects is UPSTREAM_FETCH_FAILED", async (t) => {
  const srv = await startServer(t, (_req, res) => {
    res.writeHead(308, { location: "/loop" }).end();
  });
  await rejectsWith(
    fetchImage(`${srv.url}/loop`, { ...base, maxRedirects: 3 }),
    "UPSTREAM_FETCH_FAILED",
    /redirected more than 3/,
  );
  assert.equal(srv.requests.length, 4);
  await rejectsWith(fetchImage(`${srv.url}/loop`, { ...base, maxRedirects: 0 }), "UPSTREAM_FETCH_FAILED");
  assert.equal(srv.requests.length, 5);
});

test("fetchImage - a redirect without Location is UPSTREAM_FETCH_FAILED", async (t) => {
  const srv = await startServer(t, (_req, res) => {
    res.writeHead(302).end();
  });
  await rejectsWith(fetchImage(srv.url, base), "UPSTREAM_FETCH_FAILED", /Location/);
});

test("fetchImage - each redirect hop is re-validated", async (t) => {
  const inner = await startServer(t, serveImage);
  const targets = [
    `http://internal.test:${inner.port}/secret`,
    `http://127.0.0.1:${inner.port}/secret`,
    "http://169.254.169.254/latest/meta-data",
    "file:///etc/passwd",
  ];
  const outer = await startServer(t, (req, res) => {
    res.writeHead(302, { location: targets[Number(req.url?.slice(1))] }).end();
  });
  const lookup = recordingLookup({ "public.test": [PUBLIC_V4], "internal.test": ["10.0.0.7"] });
  const hook = toLoopback();
  for (const [i] of targets.entries()) {
    await rejectsWith(
      fetchImage(`http://public.test:${outer.port}/${i}`, { ...strict, lookup, _connectHook: hook }),
      "URL_NOT_ALLOWED",
    );
  }
  assert.equal(outer.requests.length, targets.length);
  assert.equal(inner.connections, 0);
  assert.deepEqual(
    hook.seen,
    targets.map(() => PUBLIC_V4),
  );
  assert.deepEqual(
    lookup.calls.filter((h) => h === "internal.test"),
    ["internal.test"],
  );
});

// ---- upstream failures, caps and deadlines (private addresses allowed: plain loopback servers) ----

test("fetchImage - a non-2xx answer is UPSTREAM_FETCH_FAILED with the status", async (t) => {
  const srv = await startServer(t, (_req, res) => {
    res.writeHead(404).end("nope");
  });
  const err = await rejectsWith(fetchImage(`${srv.url}/missing.png`, base), "UPSTREAM_FETCH_FAILED", /HTTP 404/);
  assert.deepEqual(err.details, { status: 404 });
});

test("fetchImage - connection refused and TLS failure are UPSTREAM_FETCH_FAILED", async (t) => {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const freePort = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  await rejectsWith(fetchImage(`http://127.0.0.1:${freePort}/`, base), "UPSTREAM_FETCH_FAILED", /ECONNREFUSED/);
  const plain = await startServer(t, serveImage);
  const err = await rejectsWith(fetchImage(`https://127.0.0.1:${plain.port}/`, base), "UPSTREAM_FETCH_FAILED");
  assert.doesNotMatch(err.message, /\n\s+at /);
});

test("fetchImage - a body of exactly maxBytes is accepted", async (t) => {
  const srv = await startServer(t, serveImage);
  const got = await fetchImage(srv.url, { ...base, maxBytes: IMAGE.length });
  assert.equal(got.bytes.length, IMAGE.length);
});

test("fetchImage - a declared Content-Length over the cap is refused without reading the body", async (t) => {
  let onClose = (): void => {};
  const closed = new Promise<void>((resolve) => {
    onClose = resolve;
  });
  const srv = await startServer(t, (_req, res) => {
    res.writeHead(200, { "content-type": "image/jpeg", "content-length": "1000000" }).flushHeaders();
    res.on("close", onClose);
  });
  await rejectsWith(fetchImage(srv.url, { ...base, maxBytes: 1000 }), "PAYLOAD_TOO_LARGE");
  await closed; // the client hung up on a response that never finishes
});

test("fetchImage - a chunked body over the cap is cut off while streaming", async (t) => {
  let onClose = (): void => {};
  const closed = new Promise<void>((resolve) => {
    onClose = resolve;
  });
  const srv = await startServer(t, (_req, res) => {
    res.writeHead(200, { "content-type": "image/jpeg" });
    for (let i = 0; i < 3; i++) res.write(Buffer.alloc(64 * 1024, i));
    res.on("close", onClose); // never ended: only the client's abort closes it
  });
  await rejectsWith(fetchImage(srv.url, { ...base, maxBytes: 100 * 1024 }), "PAYLOAD_TOO_LARGE");
  await closed;
});

test("fetchImage - a stalled body hits DEADLINE_EXCEEDED at about timeoutMs", async (t) => {
  const srv = await startServer(t, (_req, res) => {
    res.writeHead(200).write("partial");
  });
  const started = performance.now();
  await rejectsWith(fetchImage(srv.url, { ...base, timeoutMs: 300 }), "DEADLINE_EXCEEDED");
  const elapsedMs = performance.now() - started;
  assert.ok(elapsedMs >= 280 && elapsedMs < 1_500, `elapsed ${elapsedMs} ms`);
});

test("fetchImage - a stalled resolver hits DEADLINE_EXCEEDED", async () => {
  const lookup: LookupFn = () => new Promise(() => {});
  await rejectsWith(fetchImage("http://slow.test/", { ...strict, lookup, timeoutMs: 100 }), "DEADLINE_EXCEEDED");
});

test("fetchImage - the caller's signal aborts the fetch", async (t) => {
  const ac = new AbortController();
  const srv = await startServer(t, (_req, res) => {
    res.writeHead(200).flushHeaders();
    ac.abort();
  });
  await rejectsWith(
    fetchImage(srv.url, { ...base, timeoutMs: 10_000, signal: ac.signal }),
    "DEADLINE_EXCEEDED",
    /aborted/,
  );
  await rejectsWith(fetchImage(srv.url, { ...base, signal: AbortSignal.abort() }), "DEADLINE_EXCEEDED");
  assert.equal(srv.requests.length, 1);
});

// ---- address policy ----

test("isPublicAddress - classifies IPv4 and IPv6 like Python's is_global (stricter where noted)", () => {
  const publicAddrs = [
    "1.1.1.1",
    "8.8.8.8",
    PUBLIC_V4,
    "100.63.255.255",
    "100.128.0.0",
    "172.32.0.0",
    "192.0.0.9",
    "192.0.0.10",
    "192.88.99.1",
    "192.169.0.0",
    "198.20.0.0",
    "203.0.114.0",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001:81d::200e",
    "2001:200::1",
    "::ffff:8.8.8.8",
    "::ffff:808:808",
    "64:ff9b::8.8.8.8",
    "2001:4:112::1",
    "2001:20::1",
  ];
  const nonPublic = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "100.64.0.1",
    "100.127.255.255",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.1",
    "192.0.0.170",
    "192.0.2.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::127.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::127.0.0.1",
    "64:ff9b::a00:1",
    "64:ff9b:1::1",
    "100::1",
    "2001::1",
    "2001:1ff::1",
    "2001:db8::1",
    "2002::1",
    "2002:7f00:1::1",
    "3fff::1",
    "4000::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%eth0",
    "febf::1",
    "fec0::1",
    "ff02::1",
    "ff0e::1",
    "not-an-ip",
    "1.2.3",
    "[::1]",
    "",
    "localhost",
    "01.02.03.04",
  ];
  for (const ip of publicAddrs) assert.equal(isPublicAddress(ip), true, ip);
  for (const ip of nonPublic) assert.equal(isPublicAddress(ip), false, ip);
});
