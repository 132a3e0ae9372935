/** Where a running `servegraph up` leaves its address, so other commands find the graph without flags. */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_NATS_URL } from "../runtime/index.ts";

export interface UpState {
  pid: number;
  natsUrl: string;
  ingressUrl?: string;
  graphs: string[];
  nodes: string[];
  startedAt: string;
}

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
export const STATE_FILE = process.env.SG_STATE_FILE || join(ROOT, ".servegraph", "state.json");

export function writeState(s: UpState): void {
  mkdirSync(dirname(STATE_FILE), { recursive: true });
  writeFileSync(STATE_FILE, JSON.stringify(s, null, 2));
}

export function readState(): UpState | undefined {
  try {
    const s = JSON.parse(readFileSync(STATE_FILE, "utf8")) as UpState;
    process.kill(s.pid, 0); // still running?
    return s;
  } catch {
    return undefined;
  }
}

export function clearState(pid: number): void {
  try {
    const s = JSON.parse(readFileSync(STATE_FILE, "utf8")) as UpState;
    if (s.pid === pid) rmSync(STATE_FILE);
  } catch {
    // already gone
  }
}

/** NATS_URL wins; else the graph that `servegraph up` started; else the default local server. */
export function resolveNatsUrl(flag?: string): string {
  return flag || process.env.NATS_URL || readState()?.natsUrl || DEFAULT_NATS_URL;
}
