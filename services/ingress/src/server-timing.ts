/**
 * The `Server-Timing` answer header of a route that calls the graph: time per hop, in milliseconds, so that a
 * browser (the dashboard, devtools) sees where a request's time went without a trace backend.
 *
 * The callee may send its own breakdown on the NATS reply (subjects/headers.ts `Server-Timing`, e.g. preprocess:
 * `preprocess;dur=9.1, infer;dur=31.0`, infer as timed by preprocess). The ingress keeps the callee's entries for
 * nodes further down, recomputes the callee's own as the call's time minus those (so it includes its NATS hop),
 * and adds `ingress` (everything else: receiving and checking the request, writing the answer) and `total`. The
 * hops add up to `total`. A callee that sends nothing is one hop of the call's full time.
 */

export interface TimingEntry {
  name: string;
  durMs: number;
}

const TOKEN = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_ENTRIES = 16;

/** Entries of a `Server-Timing` value with a valid name and a finite, non-negative `dur`; anything else is skipped. */
export function parseServerTiming(value: string | undefined): TimingEntry[] {
  if (!value) return [];
  const out: TimingEntry[] = [];
  for (const part of value.split(",").slice(0, MAX_ENTRIES)) {
    const [name, ...params] = part.split(";").map((p) => p.trim());
    if (!name || !TOKEN.test(name)) continue;
    const dur = params.map((p) => /^dur=([0-9]+(?:\.[0-9]+)?)$/.exec(p)?.[1]).find((d) => d !== undefined);
    if (dur === undefined) continue;
    out.push({ name, durMs: Number(dur) });
  }
  return out;
}

const fmt = (ms: number): string => Math.max(0, ms).toFixed(2);

/**
 * The header value: `ingress`, the callee `node`, the callee's downstream entries (in its order), then `total`.
 * `totalMs`: the route's time so far (Fastify's `reply.elapsedTime`); `callMs`: the NATS call's.
 */
export function serverTimingOf(node: string, totalMs: number, callMs: number, calleeHeader: string | undefined): string {
  const below = parseServerTiming(calleeHeader).filter((e) => e.name !== node && e.name !== "ingress" && e.name !== "total");
  const belowMs = below.reduce((a, e) => a + e.durMs, 0);
  const entries: TimingEntry[] = [
    { name: "ingress", durMs: totalMs - callMs },
    { name: node, durMs: callMs - belowMs },
    ...below,
    { name: "total", durMs: totalMs },
  ];
  return entries.map((e) => `${e.name};dur=${fmt(e.durMs)}`).join(", ");
}
