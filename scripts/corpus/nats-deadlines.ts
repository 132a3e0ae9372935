/** Graph-Deadline values on one NATS subject, with a bad body and with a valid one. */
import type { BodySpec, Expect } from "../../test/fixtures/corpus/format.ts";
import { oneOf, type Corpus } from "./builder.ts";
import { DEADLINE_FAR, DEADLINE_JUNK, DEADLINE_ODD, DEADLINE_PAST } from "./nats-values.ts";
import { deadlineKind } from "./oracles.ts";

/**
 * Graph-Deadline on one subject, with a bad body (the body's code, or BAD_REQUEST for the header; DEADLINE_EXCEEDED
 * too where the value could be read as a past time) and with a valid one (served, or refused as malformed or
 * expired as the value allows; never anything else).
 */
export function natsDeadlines(
  c: Corpus,
  subject: string,
  valid: BodySpec,
  bad: { body: BodySpec; code: string; headers?: Record<string, string> },
): void {
  const h = (d: string): Record<string, string> => ({ ...(bad.headers ?? {}), "Graph-Deadline": d });
  const badCodes = (...more: string[]): Expect => oneOf(...new Set([bad.code, "BAD_REQUEST", ...more]));
  const check = (d: string, kind: ReturnType<typeof deadlineKind>): string => {
    if (deadlineKind(d) !== kind) throw new Error(`deadline ${JSON.stringify(d)} is not ${kind}`);
    return d;
  };
  for (const d of DEADLINE_JUNK.filter((_, i) => i % 4 === 0))
    c.nats(subject, "deadline", `Graph-Deadline ${JSON.stringify(check(d, "junk"))} with a bad body`, {
      headers: h(d),
      body: bad.body,
      expect: badCodes(),
    });
  for (const d of DEADLINE_ODD.filter((_, i) => i % 4 === 1))
    c.nats(subject, "deadline", `Graph-Deadline ${JSON.stringify(check(d, "odd"))} with a bad body`, {
      headers: h(d),
      body: bad.body,
      expect: badCodes("DEADLINE_EXCEEDED"),
    });
  for (const d of DEADLINE_FAR.filter((_, i) => i % 3 === 0))
    c.nats(subject, "deadline", `Graph-Deadline ${JSON.stringify(check(d, "far"))} (far future) with a bad body`, {
      headers: h(d),
      body: bad.body,
      expect: badCodes(),
    });
  for (const d of DEADLINE_PAST.filter((_, i) => i % 2 === 0))
    c.nats(subject, "deadline", `Graph-Deadline ${JSON.stringify(check(d, "past"))} (in the past) with a valid body`, {
      headers: h(d),
      body: valid,
      expect: oneOf("DEADLINE_EXCEEDED", "BAD_REQUEST"),
    });
  const odd = check(c.pick(DEADLINE_ODD), "odd");
  c.nats(subject, "deadline-valid-body", `Graph-Deadline ${JSON.stringify(odd)} with a valid body`, {
    headers: h(odd),
    body: valid,
    expect: { oneOf: ["DEADLINE_EXCEEDED", "BAD_REQUEST"], okAllowed: true },
  });
  const far = check(c.pick(DEADLINE_FAR), "far");
  c.nats(subject, "deadline-valid-body", `Graph-Deadline ${JSON.stringify(far)} (far future) with a valid body`, {
    headers: h(far),
    body: valid,
    expect: { oneOf: ["BAD_REQUEST"], okAllowed: true },
  });
  const junk = check(c.pick(DEADLINE_JUNK), "junk");
  c.nats(subject, "deadline-valid-body", `Graph-Deadline ${JSON.stringify(junk)} with a valid body`, {
    headers: h(junk),
    body: valid,
    expect: { oneOf: ["BAD_REQUEST"], okAllowed: true },
  });
}
