/**
 * The soak's outcomes by window of time (requests placed by their scheduled time), and over the whole run:
 * requests, errors by kind, p50 and p99, and the p99 drift from the first window to the last.
 */
import { summarize, type LatencySummary } from "../bench/load.ts";
import type { Outcome } from "./open-loop.ts";

export interface SoakWindow {
  /** Seconds from the soak's start to the window's start (requests are placed by their scheduled time). */
  startS: number;
  durationS: number;
  sent: number;
  ok: number;
  errors: number;
  /** 2xx answers per second. */
  rps: number;
  /** Milliseconds, 2xx answers only; null when there were none. */
  latencyMs: LatencySummary | null;
}

export interface OutcomeSummary {
  durationS: number;
  sent: number;
  ok: number;
  achievedPerS: number;
  latencyMs: LatencySummary | null;
  errors: { total: number; rate: number; byKind: Record<string, number> };
  /** The windows in which anything was sent. */
  windows: SoakWindow[];
  p99Drift: { firstMs: number | null; lastMs: number | null; change: number | null };
}

function windowsOf(outcomes: readonly Outcome[], durationS: number, windowS: number): SoakWindow[] {
  const out: SoakWindow[] = [];
  for (let start = 0; start < durationS - 1e-9; start += windowS) {
    const len = Math.min(windowS, durationS - start);
    const mine = outcomes.filter((x) => x.scheduledS >= start && x.scheduledS < start + len);
    const okLat = Float64Array.from(mine.filter((x) => x.ok).map((x) => x.latencyMs));
    out.push({
      startS: start,
      durationS: len,
      sent: mine.length,
      ok: okLat.length,
      errors: mine.length - okLat.length,
      rps: okLat.length / len,
      latencyMs: summarize(okLat),
    });
  }
  return out;
}

/** The window of `windowS` that ends at `endS`, from the answers in so far (its startS is `endS - windowS`). */
export function windowEndingAt(outcomes: readonly Outcome[], endS: number, windowS: number): SoakWindow | undefined {
  const from = endS - windowS;
  const w = windowsOf(
    outcomes
      .filter((x) => x.scheduledS >= from && x.scheduledS < endS)
      .map((x) => ({ ...x, scheduledS: x.scheduledS - from })),
    windowS,
    windowS,
  )[0];
  return w && { ...w, startS: from };
}

/** Every outcome of a soak that ran `ranS` seconds, summed up and by window. */
export function summarizeOutcomes(outcomes: readonly Outcome[], ranS: number, windowS: number): OutcomeSummary {
  const windows = windowsOf(outcomes, ranS, windowS).filter((w) => w.sent > 0);
  const okLat = Float64Array.from(outcomes.filter((x) => x.ok).map((x) => x.latencyMs));
  const byKind: Record<string, number> = {};
  for (const x of outcomes) if (!x.ok) byKind[x.kind] = (byKind[x.kind] ?? 0) + 1;
  const errorsTotal = outcomes.length - okLat.length;
  const firstP99 = windows[0]?.latencyMs?.p99 ?? null;
  const lastP99 = windows.at(-1)?.latencyMs?.p99 ?? null;
  return {
    durationS: ranS,
    sent: outcomes.length,
    ok: okLat.length,
    achievedPerS: okLat.length / Math.max(ranS, 1e-9),
    latencyMs: summarize(okLat),
    errors: { total: errorsTotal, rate: outcomes.length ? errorsTotal / outcomes.length : 0, byKind },
    windows,
    p99Drift: {
      firstMs: firstP99,
      lastMs: lastP99,
      change: firstP99 && lastP99 !== null ? (lastP99 - firstP99) / firstP99 : null,
    },
  };
}
