/**
 * The `Server-Timing` answer header of a route that calls the graph: time per hop, in milliseconds, so that a
 * browser (the dashboard, devtools) sees where a request's time went without a trace backend. The header's syntax
 * and names are subjects/server-timing.ts.
 *
 * The callee may send its own breakdown on the NATS reply (preprocess: `preprocess;dur=9.1, infer;dur=31.0,
 * infer.queue;dur=0.4, infer.compute;dur=28.2`, infer as timed by preprocess, its details as infer reported them).
 * The ingress keeps the callee's entries for nodes further down and their details, recomputes the callee's own hop
 * as the call's time minus those hops (so it includes its NATS hop), and adds `ingress` (everything else: receiving
 * and checking the request, fetching an image URL) and `total`. The hops add up to `total`. A callee that sends
 * nothing is one hop of the call's full time.
 */
import { formatServerTiming, isTimingDetail, parseServerTiming, type TimingEntry } from "../../../subjects/index.ts";

/** `totalMs`: the route's time so far (Fastify's `reply.elapsedTime`); `callMs`: the NATS call's. */
export function serverTimingOf(
  node: string,
  totalMs: number,
  callMs: number,
  calleeHeader: string | undefined,
): string {
  const own = new Set([node, "ingress", "total"]);
  const below = parseServerTiming(calleeHeader).filter(
    (e) => !own.has(e.name) && !e.name.startsWith("ingress.") && !e.name.startsWith("total."),
  );
  const belowMs = below.filter((e) => !isTimingDetail(e)).reduce((a, e) => a + e.durMs, 0);
  const entries: TimingEntry[] = [
    { name: "ingress", durMs: totalMs - callMs },
    { name: node, durMs: callMs - belowMs },
    ...below,
    { name: "total", durMs: totalMs },
  ];
  return formatServerTiming(entries);
}
