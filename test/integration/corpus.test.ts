/**
 * The bad-input corpus (test/fixtures/corpus/cases.jsonl, from scripts/gen-corpus.ts) against the chain, classify
 * and ab graphs started once: real nats-server, real replicas, HTTP through the ingress and direct NATS requests.
 *
 * A warm-up sends every case WARMUP_PASSES times, recording the RSS of every replica and of nats-server
 * (/proc/<pid>/status VmRSS) during the last RSS_BASELINE_PASSES of them; then every case is sent once more and checked:
 *  - HTTP: a 4xx whose JSON body is `{code, message}`, `code` in the error table with that status (the exact code,
 *    or one of a set, where the case decides it);
 *  - NATS: error headers `Nats-Service-Error-Code` / `Graph-Error` with a table code and its status (same rule);
 *  - every case answers within its timeout (no hang);
 * and afterwards no replica has exited or been replaced, and no process is more than 15% larger after the run than
 * after the warm-up. RSS swings with uncollected garbage, so "after the warm-up" is each process's peak RSS over the
 * last RSS_BASELINE_PASSES warm-up passes, and a process over the limit after the run gets up to 30 s of idleness to come back under it
 * (V8 collects garbage when a process goes idle); a size that stays above it is a leak.
 * The warm-up answers are checked the same way (failures are reported with the others, once per case).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { readFileSync } from "node:fs";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { Discovery, ErrorCodes, Headers, isErrorCode } from "../../subjects/index.ts";
import { gather } from "../../runtime/index.ts";
import { generateCorpus, refusedWithoutConnection, serialize } from "../../scripts/gen-corpus.ts";
import {
  CASES_FILE,
  materialize,
  parseCases,
  type CorpusCase,
  type Expect,
  type HttpCase,
  type NatsCase,
} from "../fixtures/corpus/format.ts";
import { startGraph, type RunningGraph } from "../helpers/graph.ts";

const HTTP_TIMEOUT_MS = 20_000;
const NATS_TIMEOUT_MS = 10_000;
const CONCURRENCY = 6;
/**
 * How much larger than after the warm-up a process may be after one more pass. A leak of what the corpus sends
 * (~90 MiB a pass) or of per-request state at that scale is far above it. Below it is malloc's retention: after the
 * ingress frees a burst of multi-megabyte bodies, glibc's main arena ([heap] in /proc/<pid>/smaps) keeps much of
 * it (48 -> 87 MiB over seven passes here, while V8's used heap stayed at 23-28 MiB and its external memory
 * between 8 and 55 MiB), so the ingress's RSS swings by about 10% from pass to pass at steady state.
 */
const RSS_TOLERANCE = 0.15;
/**
 * Warm-up passes over the whole corpus before the RSS baseline. The model's arena, V8's heaps and malloc's arenas
 * grow for a while: on Node 24 the small nodes grew ~17 MiB once during the third pass, and the ingress (which
 * parses the corpus's bodies of up to 16 MB) rises over four passes (230 -> 236 -> 290 -> 325 MiB here) and then
 * swings between ~295 and ~325 MiB with its V8 heap's committed size while its used heap and external memory stay
 * flat. So the baseline is each process's peak over the last two of five passes: the top of its swing.
 */
const WARMUP_PASSES = 5;
const RSS_BASELINE_PASSES = 2;
const RSS_IDLE_WAIT_MS = 30_000;

let g: RunningGraph;
let cases: CorpusCase[];
const failures = new Map<string, string>();

interface Answer {
  /** HTTP status, or the NATS error status (0: a NATS success reply). */
  status: number;
  code: string | undefined;
  message: string | undefined;
  /** What was wrong with the answer's form (not JSON, no code...), before any expectation. */
  malformed?: string;
  ms: number;
}

// --- sending --------------------------------------------------------------------------------------------------

function sendHttp(base: URL, k: HttpCase, body: Buffer): Promise<Answer> {
  const t0 = performance.now();
  const timeoutMs = k.timeoutMs ?? HTTP_TIMEOUT_MS;
  const headers: Record<string, string> = { ...k.headers };
  if (k.declaredLength !== undefined) headers["content-length"] = k.declaredLength;
  else if (k.chunked) headers["transfer-encoding"] = "chunked";
  else if (body.length > 0 || !["GET", "TRACE"].includes(k.method)) headers["content-length"] = String(body.length);
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request({
      host: base.hostname,
      port: base.port,
      method: k.method,
      path: k.path,
      headers,
      agent: false,
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms (hang)`));
    }, timeoutMs);
    req.on("response", (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", () => {});
      res.on("end", () => {
        clearTimeout(timer);
        const ms = performance.now() - t0;
        const status = res.statusCode ?? 0;
        const text = Buffer.concat(chunks).toString("utf8");
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          return resolve({
            status,
            code: undefined,
            message: undefined,
            malformed: `body is not JSON: ${JSON.stringify(text.slice(0, 120))}`,
            ms,
          });
        }
        const o = (typeof parsed === "object" && parsed !== null ? parsed : {}) as {
          code?: unknown;
          message?: unknown;
        };
        const code = typeof o.code === "string" ? o.code : undefined;
        const message = typeof o.message === "string" ? o.message : undefined;
        const malformed =
          code === undefined || message === undefined
            ? `body is not {code, message}: ${JSON.stringify(text.slice(0, 160))}`
            : undefined;
        resolve({ status, code, message, ms, ...(malformed ? { malformed } : {}) });
      });
    });
    // The server may answer (413) and close before the whole body is written: the answer is what counts.
    req.on("error", (err) => {
      if (answered) return;
      clearTimeout(timer);
      reject(new Error(`HTTP request failed before an answer: ${err.message}`));
    });
    if (body.length > 0) {
      req.write(body, () => {});
    }
    req.end();
  });
}

async function sendNats(k: NatsCase, body: Buffer): Promise<Answer> {
  const t0 = performance.now();
  const h = natsHeaders();
  for (const [name, value] of Object.entries(k.headers)) h.set(name, value);
  const msg = await g.nc.request(k.subject, body, { timeout: k.timeoutMs ?? NATS_TIMEOUT_MS, headers: h });
  const ms = performance.now() - t0;
  const rh = msg.headers;
  const statusText = rh?.get(Headers.ServiceErrorCode) ?? "";
  const code = rh?.get(Headers.GraphError) || undefined;
  if (statusText === "" && code === undefined) return { status: 0, code: undefined, message: undefined, ms };
  const status = Number(statusText);
  const malformed = !Number.isInteger(status)
    ? `${Headers.ServiceErrorCode} is ${JSON.stringify(statusText)}`
    : code === undefined
      ? `no ${Headers.GraphError} header`
      : undefined;
  return { status, code, message: rh?.get(Headers.ServiceError) || undefined, ms, ...(malformed ? { malformed } : {}) };
}

/** Refuses to send an image URL that the ingress could not refuse without a connection (the corpus must never dial out). */
function assertLoopbackOnly(k: CorpusCase, body: Buffer): void {
  if (
    k.transport !== "http" ||
    !(k.headers["content-type"] ?? "").toLowerCase().startsWith("application/json") ||
    body.length > 64 * 1024
  )
    return;
  let v: unknown;
  try {
    v = JSON.parse(body.toString("utf8"));
  } catch {
    return;
  }
  const u = (v as { image_url?: unknown } | null)?.image_url;
  if (typeof u === "string") refusedWithoutConnection(u);
}

// --- judging --------------------------------------------------------------------------------------------------

function describeExpect(e: Expect): string {
  const codes = e.code ? e.code : e.oneOf ? `one of ${e.oneOf.join("|")}` : "a 4xx table code";
  return e.okAllowed ? `success or ${codes}` : codes;
}

/** Undefined when the answer is what the case expects, else what is wrong. */
function judge(k: CorpusCase, a: Answer): string | undefined {
  const e = k.expect;
  const success = k.transport === "http" ? a.status >= 200 && a.status < 300 : a.status === 0;
  const got = success
    ? `success (${a.status || "no error headers"})`
    : `${a.status} ${a.code ?? "-"}${a.message ? ` "${a.message.slice(0, 100)}"` : ""}`;
  const wrong = (why: string): string => `expected ${describeExpect(e)}, got ${got}: ${why}`;
  if (success) return e.okAllowed ? undefined : wrong("a bad input was accepted");
  if (a.malformed) return wrong(a.malformed);
  if (!isErrorCode(a.code)) return wrong(`${a.code} is not in the error table`);
  if (ErrorCodes[a.code].status !== a.status)
    return wrong(`the table gives ${a.code} status ${ErrorCodes[a.code].status}`);
  const allowed = e.code ? [e.code] : e.oneOf;
  if (allowed) return allowed.includes(a.code) ? undefined : wrong("another code");
  return a.status >= 400 && a.status < 500 ? undefined : wrong("not a 4xx");
}

interface PassResult {
  byCategory: Map<string, { n: number; ok: number }>;
  failed: number;
  bytes: number;
  ms: number;
}

async function runPass(label: string): Promise<PassResult> {
  const base = new URL(g.ingressUrl!);
  const byCategory = new Map<string, { n: number; ok: number }>();
  let next = 0;
  let failed = 0;
  let bytes = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    for (;;) {
      const k = cases[next++];
      if (!k) return;
      const body = materialize(k.body);
      bytes += body.length;
      assertLoopbackOnly(k, body);
      let problem: string | undefined;
      try {
        const a = k.transport === "http" ? await sendHttp(base, k, body) : await sendNats(k, body);
        problem = judge(k, a);
      } catch (err) {
        problem = `expected ${describeExpect(k.expect)}, got no answer: ${err instanceof Error ? err.message : String(err)}`;
      }
      const c = byCategory.get(k.category) ?? { n: 0, ok: 0 };
      c.n++;
      if (problem === undefined) c.ok++;
      else {
        failed++;
        if (!failures.has(k.id)) failures.set(k.id, `${k.id} (${k.what}) [${label}]: ${problem}`);
      }
      byCategory.set(k.category, c);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { byCategory, failed, bytes, ms: performance.now() - t0 };
}

// --- processes ------------------------------------------------------------------------------------------------

interface Proc {
  name: string;
  pid: number;
}

function processes(): Proc[] {
  const out: Proc[] = [{ name: "nats-server", pid: g.nats.process.pid! }];
  for (const node of g.sup.nodes) for (const r of g.sup.replicas(node)) out.push({ name: r.id, pid: r.child.pid! });
  return out;
}

function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/** Each replica's /metrics URL (from $SRV.INFO), by pid. */
async function metricsUrls(): Promise<Map<number, string>> {
  const infos = await gather<{ metadata?: Record<string, string> }>(g.nc, Discovery.info(), 300);
  const out = new Map<number, string>();
  for (const i of infos)
    if (i.metadata?.pid && i.metadata.metrics_url) out.set(Number(i.metadata.pid), i.metadata.metrics_url);
  return out;
}

/**
 * KiB that V8's young generation (new space) holds now, from the replica's /metrics; 0 where there is none (nats-server).
 * V8 grows its new space to its configured maximum under allocation pressure (Node 24's V8 does so more eagerly
 * than Node 20's) and keeps it while idle: a fixed allocation buffer, not memory retained by the program, so the
 * leak check compares RSS without it.
 */
async function youngKb(urls: Map<number, string>, pid: number): Promise<number> {
  const url = urls.get(pid);
  if (!url) return 0;
  const text = await (await fetch(url)).text();
  const m = /^nodejs_heap_space_size_total_bytes\{[^}]*space="new"[^}]*\} (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(text);
  return m ? Number(m[1]) / 1024 : 0;
}

/** Samples the RSS of `procs` every 250 ms until stopped; `stop()` gives each pid's highest reading. */
function sampleRss(procs: readonly Proc[]): { stop(): Map<number, number> } {
  const peak = new Map<number, number>();
  const read = (): void => {
    for (const p of procs) peak.set(p.pid, Math.max(peak.get(p.pid) ?? 0, rssKb(p.pid)));
  };
  read();
  const timer = setInterval(read, 250);
  return {
    stop() {
      clearInterval(timer);
      read();
      return peak;
    },
  };
}

function formatPass(label: string, r: PassResult): string[] {
  const lines = [
    `${label}: ${cases.length} cases in ${(r.ms / 1000).toFixed(1)} s, ${(r.bytes / 1048576).toFixed(1)} MiB sent, ${r.failed} not as expected`,
  ];
  for (const [cat, c] of [...r.byCategory].sort(([a], [b]) => a.localeCompare(b)))
    lines.push(`  ${cat.padEnd(48)} ${String(c.n).padStart(4)} cases, ${String(c.ok).padStart(4)} as expected`);
  return lines;
}

// --- the test -------------------------------------------------------------------------------------------------

let pidsAtStart: Proc[];
let rssBefore: Map<number, number>;
let rssPeakChecked: Map<number, number> | undefined;
/** Each process's young generation when rssBefore was taken. */
const youngBefore = new Map<number, number>();

before(async () => {
  cases = parseCases(readFileSync(CASES_FILE, "utf8"));
  g = await startGraph({ graphs: ["chain", "classify", "ab"] });
  pidsAtStart = processes();
});
after(async () => g?.stop());

test("corpus - the committed corpus is what scripts/gen-corpus.ts generates from its seed", () => {
  assert.ok(cases.length >= 1000, `${cases.length} cases`);
  assert.equal(
    serialize(generateCorpus()),
    readFileSync(CASES_FILE, "utf8"),
    "run: node --import tsx scripts/gen-corpus.ts",
  );
});

test(`corpus - warm-up: every case, ${WARMUP_PASSES} times`, async (t) => {
  let sampler: ReturnType<typeof sampleRss> | undefined;
  for (let i = 1; i <= WARMUP_PASSES; i++) {
    // The size after the warm-up is each process's peak over the last warm-up passes (and a second after them): RSS
    // swings with garbage between collections, and a peak under the same requests is what a leak would raise.
    if (i === WARMUP_PASSES - RSS_BASELINE_PASSES + 1) sampler = sampleRss(pidsAtStart);
    const warm = await runPass(`warm-up ${i}`);
    t.diagnostic(
      `warm-up ${i}: ${cases.length} cases in ${(warm.ms / 1000).toFixed(1)} s, ${warm.failed} not as expected`,
    );
    if (sampler && i === WARMUP_PASSES) {
      await new Promise((r) => setTimeout(r, 1000));
      rssBefore = sampler.stop();
      const urls = await metricsUrls();
      for (const p of pidsAtStart) youngBefore.set(p.pid, await youngKb(urls, p.pid));
    }
  }
});

test("corpus - every case answers in time with a table error of the expected code", async (t) => {
  const sampler = sampleRss(pidsAtStart);
  const main = await runPass("checked");
  rssPeakChecked = sampler.stop();
  for (const line of formatPass("checked pass", main)) t.diagnostic(line);
  const list = [...failures.values()];
  for (const line of list) t.diagnostic(`FAIL ${line}`);
  assert.equal(
    list.length,
    0,
    `${list.length} of ${cases.length} cases did not answer as expected:\n${list.slice(0, 60).join("\n")}${list.length > 60 ? `\n... and ${list.length - 60} more` : ""}`,
  );
});

test("corpus - no replica or nats-server exited or was replaced", () => {
  const now = processes();
  assert.deepEqual(
    now.map((p) => `${p.name}:${p.pid}`),
    pidsAtStart.map((p) => `${p.name}:${p.pid}`),
  );
  assert.equal(g.nats.process.exitCode, null, "nats-server exited");
  for (const node of g.sup.nodes) {
    for (const r of g.sup.replicas(node)) {
      assert.equal(r.child.exitCode, null, `${r.id} exited`);
      assert.equal(r.restarts, 0, `${r.id} restarted`);
    }
  }
});

test(`corpus - the RSS of every process after the run stays within ${RSS_TOLERANCE * 100}% of its size after the warm-up`, async (t) => {
  assert.ok(rssBefore, "the warm-up did not record RSS");
  // After the run, garbage is not a leak: a process over the limit gets up to RSS_IDLE_WAIT_MS of idleness for
  // V8's memory reducer to collect what the run left behind; only a size that stays above the limit fails.
  // Sizes are RSS less the young generation (see youngKb).
  const sizeBefore = (p: Proc): number => rssBefore.get(p.pid)! - (youngBefore.get(p.pid) ?? 0);
  const limit = (p: Proc): number => sizeBefore(p) * (1 + RSS_TOLERANCE);
  const urls = await metricsUrls();
  const size = async (p: Proc): Promise<number> => rssKb(p.pid) - (await youngKb(urls, p.pid));
  await new Promise((r) => setTimeout(r, 1000));
  const lowest = new Map<number, number>();
  for (const p of pidsAtStart) lowest.set(p.pid, await size(p));
  const t0 = Date.now();
  while (pidsAtStart.some((p) => lowest.get(p.pid)! > limit(p)) && Date.now() - t0 < RSS_IDLE_WAIT_MS) {
    await new Promise((r) => setTimeout(r, 1000));
    for (const p of pidsAtStart) lowest.set(p.pid, Math.min(lowest.get(p.pid)!, await size(p)));
  }
  if (Date.now() - t0 > 500)
    t.diagnostic(`waited ${((Date.now() - t0) / 1000).toFixed(0)} s of idleness for the RSS to settle`);
  const mib = (kb: number | undefined): string => (kb === undefined ? "-" : (kb / 1024).toFixed(1));
  const grew: string[] = [];
  for (const p of pidsAtStart) {
    const b = sizeBefore(p);
    const a = lowest.get(p.pid)!;
    const change = (a - b) / b;
    const line = `${p.name}: ${mib(b)} MiB after the warm-up (peak of its last warm-up passes, young generation excluded) -> ${mib(a)} MiB after the run (${change >= 0 ? "+" : ""}${(change * 100).toFixed(1)}%); peak during the checked pass ${mib(rssPeakChecked?.get(p.pid))} MiB`;
    t.diagnostic(`rss ${line}`);
    if (a > limit(p)) grew.push(line);
  }
  assert.deepEqual(grew, [], `RSS grew by more than ${RSS_TOLERANCE * 100}%`);
});
