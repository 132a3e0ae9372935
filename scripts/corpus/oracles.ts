/** The oracles: the contract, written out independently of the code that enforces it. */
import { isIP } from "node:net";
import { isPublicAddress } from "../../services/ingress/src/fetch-image.ts";

/** `top_k`: a JSON integer, or a string of 1-4 decimal digits, within 1..1000. */
export function topKValid(v: unknown): boolean {
  if (typeof v === "number") return Number.isInteger(v) && v >= 1 && v <= 1000;
  if (typeof v === "string") return /^[0-9]{1,4}$/.test(v) && Number(v) >= 1 && Number(v) <= 1000;
  return false;
}

/**
 * The code the ingress must refuse an image URL with, without any connection; throws for a URL it could not
 * refuse that way (the generator must never emit one).
 */
export function refusedWithoutConnection(u: string): "BAD_REQUEST" | "URL_NOT_ALLOWED" {
  if (u.length === 0 || u.length > 4096) return "BAD_REQUEST";
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    return "BAD_REQUEST";
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "URL_NOT_ALLOWED";
  if (url.username !== "" || url.password !== "") return "URL_NOT_ALLOWED";
  const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
  if (host === "localhost") return "URL_NOT_ALLOWED";
  if (isIP(host) !== 0 && !isPublicAddress(host)) return "URL_NOT_ALLOWED";
  throw new Error(
    `corpus URL ${JSON.stringify(u)} could make the ingress connect or resolve a name (host ${JSON.stringify(host)})`,
  );
}

/**
 * What a Graph-Deadline value is (epoch ms, a plain decimal integer): `junk` is no number at all (a node ignores it,
 * keeping its own timeout, or refuses it); `odd` is a number in a spelling the contract does not allow (`0x10`,
 * `1e3`, `-1`), which a lenient parser could read as a time in the past; `past` is a plain integer before 2020;
 * `far` is centuries ahead, or too large for a date (clamped to the node's timeout, or refused).
 */
export function deadlineKind(v: string): "junk" | "odd" | "past" | "far" {
  const t = v.trim();
  if (/^[0-9]+$/.test(t)) return Number(t) < Date.UTC(2020, 0, 1) ? "past" : "far";
  if (!/[0-9]/.test(t)) return "junk";
  const n = Number(t);
  return n === Infinity || n > Date.UTC(2100, 0, 1) ? "far" : "odd";
}
