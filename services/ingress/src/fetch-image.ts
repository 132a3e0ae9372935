/**
 * SSRF-safe fetch of a client-supplied image URL.
 *
 * Every hop (the URL and each redirect target) is checked: http(s) only, no credentials, and every address the
 * host resolves to must be public ({@link isPublicAddress}). The socket then connects to exactly the addresses that
 * were checked (a pinned `lookup` handed to `http.request`), so a DNS answer that changes between the check and the
 * connect (rebinding) cannot redirect it. One deadline covers DNS, connect, redirects and the body.
 */
import { promises as dns } from "node:dns";
import http from "node:http";
import https from "node:https";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { GraphError } from "../../../subjects/errors.ts";

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}
export type LookupFn = (hostname: string) => Promise<ResolvedAddress[]>;

export interface FetchImageOptions {
  maxBytes: number;
  /** Covers DNS, connect, every redirect hop and the body. */
  timeoutMs: number;
  /** Skip the public-address check (local testing only). Schemes and credentials are still checked. */
  allowPrivateAddresses: boolean;
  /** Default 3. */
  maxRedirects?: number;
  signal?: AbortSignal;
  /** Resolver; default `dns.promises.lookup(host, { all: true })`. Tests inject one to avoid real DNS. */
  lookup?: LookupFn;
  /**
   * Testing hook, never set in production: maps each already-validated address to the address actually dialled
   * (or throws to fail the connect). Tests use it to observe what the socket connects to and to send a
   * public-looking address to a loopback server, so no packet leaves the machine. Not applied to IP-literal URLs.
   */
  _connectHook?: (target: ResolvedAddress) => ResolvedAddress;
}

export interface FetchedImage {
  bytes: Buffer;
  contentType: string | undefined;
  finalUrl: string;
}

const DEFAULT_MAX_REDIRECTS = 3;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const NOT_RESOLVED = new Set(["ENOTFOUND", "ENODATA", "EAI_NONAME", "EAI_NODATA"]);

export async function fetchImage(url: string, opts: FetchImageOptions): Promise<FetchedImage> {
  let current: URL;
  try {
    current = new URL(url);
  } catch {
    throw new GraphError("BAD_REQUEST", "image_url is not a valid URL");
  }
  const ac = new AbortController();
  const timer = setTimeout(
    () => ac.abort(new GraphError("DEADLINE_EXCEEDED", `image fetch exceeded ${opts.timeoutMs} ms`)),
    opts.timeoutMs,
  );
  const onAbort = (): void =>
    ac.abort(new GraphError("DEADLINE_EXCEEDED", "image fetch aborted", { cause: opts.signal?.reason }));
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const maxRedirects = opts.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
    for (let hop = 0; ; hop++) {
      ac.signal.throwIfAborted();
      const pinned = await checkTarget(current, opts, ac.signal);
      const { req, res } = await send(current, pinned, opts, ac.signal);
      const status = res.statusCode ?? 0;
      if (REDIRECT_STATUSES.has(status)) {
        req.destroy();
        if (hop >= maxRedirects)
          throw new GraphError("UPSTREAM_FETCH_FAILED", `image_url redirected more than ${maxRedirects} times`);
        current = redirectTarget(current, res.headers.location);
        continue;
      }
      if (status < 200 || status > 299) {
        req.destroy();
        throw new GraphError("UPSTREAM_FETCH_FAILED", `image_url answered HTTP ${status}`, { details: { status } });
      }
      const bytes = await readBody(req, res, opts.maxBytes, ac.signal);
      return { bytes, contentType: res.headers["content-type"], finalUrl: current.href };
    }
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
  }
}

/** Validates one hop; returns the addresses to pin the connection to (undefined for an IP-literal host). */
async function checkTarget(
  url: URL,
  opts: FetchImageOptions,
  signal: AbortSignal,
): Promise<ResolvedAddress[] | undefined> {
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new GraphError("URL_NOT_ALLOWED", "image_url must use http or https");
  if (url.username !== "" || url.password !== "")
    throw new GraphError("URL_NOT_ALLOWED", "image_url must not contain credentials");
  const host = hostOf(url);
  if (host === "") throw new GraphError("URL_NOT_ALLOWED", "image_url must include a hostname");
  const allowed = (ip: string): boolean => opts.allowPrivateAddresses || isPublicAddress(ip);
  if (isIP(host) !== 0) {
    if (!allowed(host)) throw new GraphError("URL_NOT_ALLOWED", "image_url host is a non-public address");
    return undefined;
  }
  let found: ResolvedAddress[];
  try {
    found = await untilAborted((opts.lookup ?? defaultLookup)(host), signal);
  } catch (err) {
    if (err instanceof GraphError) throw err;
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (code !== undefined && !NOT_RESOLVED.has(code))
      throw new GraphError("UPSTREAM_FETCH_FAILED", `image_url host lookup failed (${code})`, { cause: err });
    throw new GraphError("URL_NOT_ALLOWED", "image_url host could not be resolved", { cause: err });
  }
  // Re-derive the family from the text: a resolver cannot smuggle a non-IP string past the check.
  const pinned = found
    .map(({ address }) => ({ address, family: isIP(address) }))
    .filter((a): a is ResolvedAddress => a.family !== 0);
  if (pinned.length === 0 || pinned.length !== found.length)
    throw new GraphError("URL_NOT_ALLOWED", "image_url host could not be resolved");
  // Like the reference: one non-public answer refuses the host, so no address order can reach a private one.
  if (!pinned.every((a) => allowed(a.address)))
    throw new GraphError("URL_NOT_ALLOWED", "image_url host resolves to a non-public address");
  return pinned;
}

const defaultLookup: LookupFn = async (hostname) =>
  (await dns.lookup(hostname, { all: true })).map(({ address, family }) => ({ address, family: family === 6 ? 6 : 4 }));

function send(
  url: URL,
  pinned: ResolvedAddress[] | undefined,
  opts: FetchImageOptions,
  signal: AbortSignal,
): Promise<{ req: http.ClientRequest; res: http.IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const req = (url.protocol === "https:" ? https : http).request(
      {
        host: hostOf(url), // also the Host header and, for https, the SNI name
        port: url.port === "" ? undefined : Number(url.port),
        path: url.pathname + url.search,
        method: "GET",
        agent: false, // no pooled socket can outlive the check that admitted it
        signal,
        headers: { accept: "image/*", "accept-encoding": "identity", "user-agent": "servegraph-ingress" },
        ...(pinned === undefined ? {} : { lookup: pinnedLookup(pinned, opts._connectHook) }),
      },
      (res) => resolve({ req, res }),
    );
    req.on("error", (err) => reject(fetchError(err, signal)));
    req.end();
  });
}

/** Answers the socket's lookup with the validated addresses only (the name is not resolved again). */
function pinnedLookup(pinned: ResolvedAddress[], hook: FetchImageOptions["_connectHook"]): LookupFunction {
  return (_hostname, options, callback) =>
    process.nextTick(() => {
      let targets: ResolvedAddress[];
      try {
        targets = hook === undefined ? pinned : pinned.map(hook);
      } catch (err) {
        callback(err as NodeJS.ErrnoException, "", 0);
        return;
      }
      const first = targets[0] as ResolvedAddress;
      if (options.all === true) callback(null, targets);
      else callback(null, first.address, first.family);
    });
}

async function readBody(
  req: http.ClientRequest,
  res: http.IncomingMessage,
  maxBytes: number,
  signal: AbortSignal,
): Promise<Buffer> {
  const tooLarge = (): GraphError =>
    new GraphError("PAYLOAD_TOO_LARGE", `image exceeds ${maxBytes} bytes`, { details: { maxBytes } });
  const declared = Number(res.headers["content-length"]);
  if (Number.isFinite(declared) && declared > maxBytes) {
    req.destroy();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) {
        req.destroy();
        throw tooLarge();
      }
      chunks.push(chunk);
    }
  } catch (err) {
    throw fetchError(err, signal);
  }
  return Buffer.concat(chunks, total);
}

function redirectTarget(from: URL, location: string | undefined): URL {
  if (location === undefined) throw new GraphError("UPSTREAM_FETCH_FAILED", "image_url redirected without a Location");
  try {
    return new URL(location, from);
  } catch {
    throw new GraphError("UPSTREAM_FETCH_FAILED", "image_url redirected to an invalid URL");
  }
}

function fetchError(err: unknown, signal: AbortSignal): GraphError {
  if (err instanceof GraphError) return err;
  if (signal.aborted) return GraphError.from(signal.reason);
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? "unknown";
  return new GraphError("UPSTREAM_FETCH_FAILED", `image fetch failed (${code})`, { cause: err });
}

function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(GraphError.from(signal.reason));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(GraphError.from(signal.reason));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** URL hostname without the brackets of an IPv6 literal. */
function hostOf(url: URL): string {
  return url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
}

// ---- address policy -------------------------------------------------------------------------------------------

type Family = "ipv4" | "ipv6";

/** A node:net BlockList used as a set of address ranges. */
function ranges(family: Family, cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [base = "", bits = ""] = cidr.split("/");
    list.addSubnet(base, Number(bits), family);
  }
  return list;
}

/** The ranges that are not public, and the exceptions inside them that are. */
interface RangePolicy {
  notGlobal: BlockList;
  exceptions: BlockList;
}
const isAllowedBy = (policy: RangePolicy, ip: string, family: Family): boolean =>
  policy.exceptions.check(ip, family) || !policy.notGlobal.check(ip, family);

// Python's ipaddress `_private_networks` (3.13) plus 100.64/10 (not global there either) and multicast 224/4,
// which Python calls global but is never a fetchable unicast host.
const V4_NOT_GLOBAL = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.0.0.0/24",
  "192.0.2.0/24",
  "192.168.0.0/16",
  "198.18.0.0/15",
  "198.51.100.0/24",
  "203.0.113.0/24",
  "224.0.0.0/4",
  "240.0.0.0/4",
];
const V4_GLOBAL_EXCEPTIONS = ["192.0.0.9/32", "192.0.0.10/32"];
// BlockList applies IPv4 ranges to IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) as well.
const V4: RangePolicy = { notGlobal: ranges("ipv4", V4_NOT_GLOBAL), exceptions: ranges("ipv4", V4_GLOBAL_EXCEPTIONS) };
const V4_MAPPED = ranges("ipv6", ["::ffff:0:0/96"]);
// NAT64 well-known prefix: 64:ff9b::a.b.c.d is judged by a.b.c.d, through the same ranges moved under the prefix.
const NAT64 = ranges("ipv6", ["64:ff9b::/96"]);
const underNat64 = (cidrs: readonly string[]): string[] =>
  cidrs.map((c) => {
    const [base = "", bits = ""] = c.split("/");
    return `64:ff9b::${base}/${96 + Number(bits)}`;
  });
const V4_VIA_NAT64: RangePolicy = {
  notGlobal: ranges("ipv6", underNat64(V4_NOT_GLOBAL)),
  exceptions: ranges("ipv6", underNat64(V4_GLOBAL_EXCEPTIONS)),
};
// IPv6 is an allowlist: only global unicast 2000::/3 can be public (stricter than Python, which calls unassigned
// space and global multicast global); inside it, Python's non-global blocks and their exceptions.
const V6_GLOBAL_UNICAST = ranges("ipv6", ["2000::/3"]);
const V6: RangePolicy = {
  notGlobal: ranges("ipv6", ["2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20"]),
  exceptions: ranges("ipv6", [
    "2001:1::1/128",
    "2001:1::2/128",
    "2001:3::/32",
    "2001:4:112::/48",
    "2001:20::/28",
    "2001:30::/28",
  ]),
};

/**
 * Whether `ip` (a plain IPv4 or IPv6 literal, no brackets) is a public unicast address, mirroring Python's
 * `ipaddress.ip_address(ip).is_global` with the stricter choices noted above. Anything unparsable is not public,
 * and so is an address with a zone index (`fe80::1%eth0`): a zone only scopes a non-global address.
 */
export function isPublicAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 4) return isAllowedBy(V4, ip, "ipv4");
  if (family !== 6 || ip.includes("%")) return false;
  if (V4_MAPPED.check(ip, "ipv6")) return isAllowedBy(V4, ip, "ipv6");
  if (NAT64.check(ip, "ipv6")) return isAllowedBy(V4_VIA_NAT64, ip, "ipv6");
  return V6_GLOBAL_UNICAST.check(ip, "ipv6") && isAllowedBy(V6, ip, "ipv6");
}
