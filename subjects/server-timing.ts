/**
 * The `Server-Timing` header (subjects/headers.ts `ServerTiming`) on NATS replies and on the ingress's HTTP answers:
 * where a request's time went, in the HTTP syntax (W3C Server Timing), milliseconds.
 *
 * Names: a hop is a node's name (`preprocess`, `infer`); a name with a dot is a detail of the hop before the dot
 * (`infer.queue`, `infer.compute`), inside that hop's time and never added to it. A node passes on what the node it
 * called reported, its names prefixed with that node's name (`queue` from infer becomes `infer.queue`).
 */

export interface TimingEntry {
  name: string;
  durMs: number;
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_ENTRIES = 16;

/** Entries with a valid name and a finite, non-negative `dur`; anything else is skipped (the header is informational). */
export function parseServerTiming(value: string | undefined): TimingEntry[] {
  if (!value) return [];
  const out: TimingEntry[] = [];
  for (const part of value.split(",").slice(0, MAX_ENTRIES)) {
    const [name, ...params] = part.split(";").map((p) => p.trim());
    if (!name || !NAME.test(name)) continue;
    const dur = params.map((p) => /^dur=([0-9]{1,9}(?:\.[0-9]{1,6})?)$/.exec(p)?.[1]).find((d) => d !== undefined);
    if (dur === undefined) continue;
    out.push({ name, durMs: Number(dur) });
  }
  return out;
}

/** `name;dur=1.23, ...` (negative durations as 0). */
export function formatServerTiming(entries: readonly TimingEntry[]): string {
  return entries.map((e) => `${e.name};dur=${Math.max(0, e.durMs).toFixed(2)}`).join(", ");
}

/** A callee's entries as its caller passes them on: each name prefixed with the callee's node (`infer.queue`). */
export function nestedTiming(node: string, value: string | undefined): TimingEntry[] {
  return parseServerTiming(value)
    .map((e) => ({ name: `${node}.${e.name}`, durMs: e.durMs }))
    .filter((e) => NAME.test(e.name));
}

/** Whether an entry is a detail of a hop (a dotted name) rather than a hop. */
export const isTimingDetail = (e: TimingEntry): boolean => e.name.includes(".");
