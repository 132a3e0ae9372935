/** The routing used when Statsig cannot decide: a stateless hash of the rule name and the user key. */
import { createHash } from "node:crypto";

export type Variant = "A" | "B";

/**
 * Deterministic and stateless, so every replica and every restart agrees: h = sha256(utf8(rule + "." + userKey));
 * the first 8 bytes of h read as a big-endian uint64, modulo 10000, below 5000 means "B", otherwise "A" (a 50/50
 * split). This mirrors Statsig's own bucketing scheme but with different salts, so a user's fallback variant is
 * independent of its Statsig variant.
 */
export function fallbackVariant(userKey: string, rule: string): Variant {
  const h = createHash("sha256").update(`${rule}.${userKey}`, "utf8").digest();
  return h.readBigUInt64BE(0) % 10000n < 5000n ? "B" : "A";
}
