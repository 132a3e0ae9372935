/**
 * This ingress replica's HTTP answers, for its own card on the dashboard: how many, how many failed (status 400 and
 * up, as a node counts every error reply), the last failure, and p50/p99 of its recent durations, in the same latency
 * window as NATS endpoints keep (runtime/latency-window.ts). The dashboard's own requests are not counted.
 */
import { createLatencyWindow } from "../../../../runtime/latency-window.ts";
import type { HttpFigures } from "./live.ts";

export interface HttpCounter {
  record(statusCode: number, durationMs: number, what: string): void;
  figures(): HttpFigures;
}

export function createHttpCounter(): HttpCounter {
  const recent = createLatencyWindow();
  let n = 0;
  let errors = 0;
  let lastError: string | null = null;
  return {
    record(statusCode, durationMs, what) {
      n++;
      recent.record(durationMs);
      if (statusCode >= 400) {
        errors++;
        lastError = `${statusCode}:${what}`;
      }
    },
    figures() {
      return { requests: n, errors, ...recent.percentiles(), last_error: lastError };
    },
  };
}
