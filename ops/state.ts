/**
 * Where a running `servegraph up` leaves its address, so other commands find the graph without flags: the NATS URL,
 * the pid of the nats-server it supervises (rewritten when that restarts) and, for that broker, the ops user's
 * credentials. The file is written atomically with mode 0600: it holds a password.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { projectRoot } from "../runtime/project.ts";
import { DEFAULT_NATS_URL, readNatsEnv, type NatsCredentials } from "../runtime/index.ts";

export interface UpState {
  pid: number;
  natsUrl: string;
  /** The nats-server `up` started and supervises; absent with an external broker (--nats, NATS_URL). */
  natsPid?: number;
  /** The ops user of that nats-server (fresh per run): status, request, scale and bench log in as it. */
  natsUser?: string;
  natsPassword?: string;
  ingressUrl?: string;
  graphs: string[];
  nodes: string[];
  startedAt: string;
}

/** In the project of the working directory (runtime/project.ts), so that every command of that project finds it. */
export const STATE_FILE = process.env.SG_STATE_FILE || join(projectRoot(), ".servegraph", "state.json");

export function writeState(s: UpState): void {
  mkdirSync(dirname(STATE_FILE), { recursive: true });
  // A reader never sees half a file, and the password is never readable by others, not even for a moment.
  const tmp = `${STATE_FILE}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(s, null, 2), { mode: 0o600 });
  renameSync(tmp, STATE_FILE);
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
  return flag || readNatsEnv().servers || readState()?.natsUrl || DEFAULT_NATS_URL;
}

/**
 * The credentials to connect with (connectNats's `credentials`): NATS_USER's when this process was given one, else,
 * when `natsUrl` is the broker of the running `servegraph up` and it has credentials, its ops user's; else none.
 */
export function opsCredentials(natsUrl: string, state: UpState | undefined = readState()): NatsCredentials | undefined {
  const own = readNatsEnv().credentials;
  if (own) return own;
  if (!state?.natsUser || state.natsPassword === undefined || state.natsUrl !== natsUrl) return undefined;
  return { user: state.natsUser, password: state.natsPassword };
}
