/** JSON endpoints over NATS (greeter, A/B router, variants) and the endpoints that take no input (labels, info, endpoints). */
import type { BodySpec } from "../../test/fixtures/corpus/format.ts";
import { E, json, oneOf, text, type Corpus } from "./builder.ts";
import { MIB } from "./graph.ts";
import { deepJson, jsonFuzz, MALFORMED_JSON, WRONG_TOP_LEVEL } from "./json-bodies.ts";
import { natsDeadlines } from "./nats-deadlines.ts";
import { strayHeaders } from "./nats-values.ts";

/** Bad JSON bodies for an endpoint whose valid request is `valid` (a strict object of string fields). */
export function natsJsonEndpoint(
  c: Corpus,
  subject: string,
  valid: Record<string, string>,
  limits: Record<string, number>,
): void {
  const cat = "json";
  const send = (category: string, what: string, body: BodySpec): void =>
    c.nats(subject, category, what, { headers: strayHeaders(c), body, expect: E("BAD_REQUEST") });
  send(cat, "empty body", { kind: "empty" });
  for (const t of WRONG_TOP_LEVEL.filter((_, i) => i % 2 === 0)) send(cat, `top-level ${t}`, text(t));
  for (const t of [...MALFORMED_JSON.filter(() => c.rand() < 0.2), ...jsonFuzz(c, 3)])
    send("malformed-json", `body ${JSON.stringify(t.slice(0, 40))}`, text(t));
  send("malformed-json", "invalid UTF-8", { kind: "latin1", text: '{"\xff\xfe":1}' });
  send("malformed-json", "UTF-16LE JSON", {
    kind: "b64",
    b64: Buffer.from(JSON.stringify(valid), "utf16le").toString("base64"),
  });
  send("malformed-json", "BOM then truncated JSON", text(`\uFEFF${JSON.stringify(valid).slice(0, -2)}`));
  const fields = Object.keys(valid);
  for (const f of fields) {
    for (const v of [5, null, true, [], {}, [valid[f]], { v: valid[f] }])
      send(cat, `${f}: ${JSON.stringify(v)}`, json({ ...valid, [f]: v }));
    const { [f]: _, ...missing } = valid;
    send(cat, `${f} missing`, json(missing));
    send(
      cat,
      `${f} duplicated, the last one a number`,
      text(`${JSON.stringify(valid).slice(0, -1)},${JSON.stringify(f)}:7}`),
    );
    const max = limits[f];
    if (max !== undefined) {
      send(cat, `${f} of ${max + 1} ASCII`, json({ ...valid, [f]: "a".repeat(max + 1) }));
      send(cat, `${f} of ${max + 1} emoji`, json({ ...valid, [f]: "\u{1F600}".repeat(max + 1) }));
      send(
        cat,
        `${f} of ${Math.ceil((max + 1) / 2)} x e + combining acute (${2 * Math.ceil((max + 1) / 2)} code points)`,
        json({ ...valid, [f]: "e\u0301".repeat(Math.ceil((max + 1) / 2)) }),
      );
      send("oversized", `${f} of 1 MiB`, {
        kind: "concat",
        parts: [
          text(`${JSON.stringify({ ...valid, [f]: "" }).slice(0, -2)}`),
          { kind: "repeat", text: "z", count: MIB },
          text('"}'),
        ],
      });
    }
    if (f === "name" || f === "user_key") send(cat, `${f} empty`, json({ ...valid, [f]: "" }));
  }
  for (const k of [
    "extra",
    "__proto__",
    "constructor",
    "n\u0101me",
    "\u0000",
    "\u{1F600}",
    "\uff4e\uff41\uff4d\uff45",
    "\ud800",
  ]) {
    send(
      "unicode-key",
      `extra key ${JSON.stringify(k)}`,
      text(`${JSON.stringify(valid).slice(0, -1)},${JSON.stringify(k)}:1}`),
    );
  }
  for (const d of deepJson(valid).filter((_, i) => [1, 3, 4, 6, 7].includes(i))) send("deep-json", d.what, d.body);
  natsDeadlines(c, subject, json(valid), { body: text("{"), code: "BAD_REQUEST" });
}

export function natsNoInput(c: Corpus, subject: string): void {
  for (const t of ['{"x":1}', "[]", "null", "5", '""', "{", "true", '{"__proto__":{}}', "[{}]", '{"\u{1F600}":0}']) {
    c.nats(subject, "json", `body ${t}`, { headers: strayHeaders(c), body: text(t), expect: E("BAD_REQUEST") });
  }
  c.nats(subject, "deep-json", "array nested 100,000 deep", { body: deepJson({})[1]!.body, expect: E("BAD_REQUEST") });
  c.nats(subject, "deadline", 'Graph-Deadline "1" (in the past)', {
    headers: { "Graph-Deadline": "1" },
    body: { kind: "empty" },
    expect: oneOf("DEADLINE_EXCEEDED", "BAD_REQUEST"),
  });
  c.nats(subject, "deadline", 'Graph-Deadline "abc" with a bad body', {
    headers: { "Graph-Deadline": "abc" },
    body: text("[]"),
    expect: E("BAD_REQUEST"),
  });
}
