/**
 * The soak's open loop: POST /classify on a fixed schedule whatever the answers do (a slower graph builds a queue
 * and shows it in latency, where a closed loop would slow down with it). Latency runs from each request's scheduled
 * time. At most MAX_IN_FLIGHT requests are outstanding; one that would exceed it is not sent and counts as dropped.
 */
import http from "node:http";
import type { RequestBody } from "../bench/load.ts";

export const MAX_IN_FLIGHT = 512;
const REQUEST_TIMEOUT_MS = 30_000;
/** The loop wakes at least this often to send, sample and close windows. */
const MAX_TICK_MS = 50;

export interface Outcome {
  /** Seconds from the loop's start to the request's scheduled time. */
  scheduledS: number;
  /** A 2xx answer. */
  ok: boolean;
  latencyMs: number;
  /** `http <status> [<table code>]`, `timeout`, `connection` or `dropped (in-flight cap)`. */
  kind: string;
}

export interface OpenLoopOptions {
  url: URL;
  bodies: readonly RequestBody[];
  ratePerS: number;
  durationS: number;
  signal: AbortSignal;
  /** Called every `sampleS` seconds (awaited: the loop sends nothing meanwhile). */
  sampleS: number;
  onSample: (atS: number) => Promise<void>;
  /** Called as each `windowS` window ends, with every outcome in so far. */
  windowS: number;
  onWindow: (endS: number, outcomes: readonly Outcome[]) => void;
}

/** One POST /classify; resolves (never rejects) with whether it was a 2xx and, when not, what it was. */
function post(agent: http.Agent, url: URL, b: RequestBody): Promise<{ ok: boolean; kind: string }> {
  return new Promise((done) => {
    let settled = false;
    const once = (ok: boolean, kind: string): void => {
      if (settled) return;
      settled = true;
      done({ ok, kind });
    };
    const req = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        method: "POST",
        path: "/classify",
        headers: { "content-type": b.contentType, "content-length": String(b.body.length) },
        timeout: REQUEST_TIMEOUT_MS,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        const ok = status >= 200 && status < 300;
        // an error's kind is its status and table code (`{code, message}` body); a success's body is not kept
        let head = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          if (!ok && head.length < 4096) head += chunk;
        });
        res.on("end", () => {
          let code = "";
          if (!ok) {
            try {
              code = String((JSON.parse(head) as { code?: unknown }).code ?? "");
            } catch {
              // not JSON: the status alone
            }
          }
          once(ok, `http ${status}${code ? ` ${code}` : ""}`);
        });
        res.on("error", () => once(false, "connection"));
      },
    );
    req.on("timeout", () => {
      req.destroy();
      once(false, "timeout");
    });
    req.on("error", () => once(false, "connection"));
    req.end(b.body);
  });
}

/** Sends for `durationS` (or until `signal`), cycling over `bodies`; resolves with every outcome once the last answer is in. */
export async function openLoop(o: OpenLoopOptions): Promise<Outcome[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: MAX_IN_FLIGHT });
  const outcomes: Outcome[] = [];
  const pending = new Set<Promise<void>>();
  let inFlight = 0;
  const t0 = performance.now();
  const send = async (i: number, scheduledMs: number): Promise<void> => {
    inFlight++;
    const { ok, kind } = await post(agent, o.url, o.bodies[i % o.bodies.length]!);
    outcomes.push({ scheduledS: (scheduledMs - t0) / 1000, ok, latencyMs: performance.now() - scheduledMs, kind });
    inFlight--;
  };

  const intervalMs = 1000 / o.ratePerS;
  const total = Math.floor(o.durationS * o.ratePerS);
  let i = 0;
  let nextSampleS = o.sampleS;
  let nextWindowS = o.windowS;
  while (i < total && !o.signal.aborted) {
    const now = performance.now();
    while (i < total && t0 + i * intervalMs <= now) {
      const scheduledMs = t0 + i * intervalMs;
      if (inFlight >= MAX_IN_FLIGHT) {
        outcomes.push({
          scheduledS: (scheduledMs - t0) / 1000,
          ok: false,
          latencyMs: 0,
          kind: "dropped (in-flight cap)",
        });
      } else {
        const p = send(i, scheduledMs);
        pending.add(p);
        void p.then(() => pending.delete(p));
      }
      i++;
    }
    const elapsedS = (performance.now() - t0) / 1000;
    if (elapsedS >= nextSampleS) {
      await o.onSample(elapsedS);
      nextSampleS += o.sampleS;
    }
    if (elapsedS >= nextWindowS) {
      o.onWindow(nextWindowS, outcomes);
      nextWindowS += o.windowS;
    }
    const wait = Math.max(1, Math.min(t0 + i * intervalMs - performance.now(), MAX_TICK_MS));
    await new Promise((r) => setTimeout(r, wait));
  }
  await Promise.all(pending);
  agent.destroy();
  return outcomes;
}
