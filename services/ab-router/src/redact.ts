/**
 * Log output of the ab gate with the Statsig server key taken out. Every line the gate writes, including the
 * SDK's own messages and the details of error values, goes through {@link redactingLog}.
 */

export type GateLogFn = (level: "info" | "warn" | "error", msg: string, attrs?: Record<string, unknown>) => void;

export type Redact = (text: string) => string;

const MASK = "***";

/** Replaces every occurrence of `secret` with "***"; the identity when there is no secret. */
export function createRedact(secret: string | undefined): Redact {
  if (secret === undefined || secret.length === 0) return (text) => text;
  return (text) => text.split(secret).join(MASK);
}

/** The message of an unknown thrown value, for a log line or a decision reason (redact it before use). */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  try {
    return typeof err === "string" ? err : (JSON.stringify(err) ?? String(err));
  } catch {
    return String(err);
  }
}

/**
 * Wraps `sink` so that the message and every string or Error attribute are redacted, and a sink that throws
 * cannot break routing (the line is dropped).
 */
export function redactingLog(sink: GateLogFn, redact: Redact): GateLogFn {
  return (level, msg, attrs) => {
    let safeAttrs: Record<string, unknown> | undefined;
    if (attrs) {
      safeAttrs = {};
      for (const [k, v] of Object.entries(attrs)) {
        safeAttrs[k] = typeof v === "string" ? redact(v) : v instanceof Error ? redact(v.message) : v;
      }
    }
    try {
      sink(level, redact(msg), safeAttrs);
    } catch {
      // A broken log sink must not break routing.
    }
  };
}
