/** A small structured logger: one line per event, `time LEVEL who message key=value...`, to stderr. */
import { readLogLevel, type LogLevel } from "./env.ts";

export type { LogLevel };
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, attrs?: Record<string, unknown>): void;
  info(msg: string, attrs?: Record<string, unknown>): void;
  warn(msg: string, attrs?: Record<string, unknown>): void;
  error(msg: string, attrs?: Record<string, unknown>): void;
  child(suffix: string): Logger;
}

function fmt(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === "string") return /^[\w./:@-]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

export function createLogger(who: string, level: LogLevel = readLogLevel()): Logger {
  const min = ORDER[level] ?? ORDER.info;
  const write = (l: LogLevel, msg: string, attrs?: Record<string, unknown>): void => {
    if (ORDER[l] < min) return;
    let line = `${new Date().toISOString()} ${l.toUpperCase().padEnd(5)} ${who} ${msg}`;
    if (attrs) for (const [k, v] of Object.entries(attrs)) if (v !== undefined) line += ` ${k}=${fmt(v)}`;
    process.stderr.write(line + "\n");
  };
  return {
    debug: (m, a) => write("debug", m, a),
    info: (m, a) => write("info", m, a),
    warn: (m, a) => write("warn", m, a),
    error: (m, a) => write("error", m, a),
    child: (suffix) => createLogger(`${who}${suffix}`, level),
  };
}
