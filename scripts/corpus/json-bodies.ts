/** JSON bodies that are wrong for every endpoint: wrong top-level types, malformed text, seeded fuzz, deep and wide values. */
import type { BodySpec } from "../../test/fixtures/corpus/format.ts";
import type { Corpus } from "./builder.ts";
import { text } from "./builder.ts";
import { MIB } from "./graph.ts";

/** Valid JSON, each a wrong top-level type for an object payload. */
export const WRONG_TOP_LEVEL = ["null", "[]", "[{}]", "0", "-1", "1e999", '"a string"', "true", "false", '""'];

/** Text that is not JSON (or not only JSON). */
export const MALFORMED_JSON = [
  "{",
  "}",
  "[",
  "]",
  "{]",
  "[}",
  '{"a":',
  '{"a" 1}',
  "{'a':'b'}",
  "{a:1}",
  '{"a":1,}',
  "[1,2,]",
  '{"a":1}}',
  '{"a":1} x',
  "// comment\n{}",
  "/* c */{}",
  '{"a":NaN}',
  '{"a":Infinity}',
  '{"a":-Infinity}',
  '{"a":0x10}',
  '{"a":+5}',
  '{"a":.5}',
  '{"a":5.}',
  '{"a":05}',
  '{"a":1e}',
  '{"a":--1}',
  "undefined",
  "nul",
  "tru",
  '"unterminated',
  '{"a":"\\x41"}',
  '{"a":"\\u12"}',
  '{"a":"\u0001"}',
  '{"a":"line\nbreak"}',
  '\uFEFF{"a":',
  "   ",
  "\t\n",
  '{"a":1}\u0000',
  '{"a"::1}',
  "{,}",
  "[,]",
  '{"a":[1,2}',
  '{"a":{"b":1]}',
  "\u0000",
  '{"\\ud800":}',
  '{"a":true false}',
  "<xml/>",
  "a=1&b=2",
];

export function jsonFuzz(c: Corpus, n: number): string[] {
  const alphabet = '{}[]":,0123456789.-+eEtruefalsn \\/abc\u00e9\u{1F600}';
  const chars = [...alphabet];
  const out: string[] = [];
  while (out.length < n) {
    const len = c.int(1, 40);
    let s = "";
    for (let i = 0; i < len; i++) s += c.pick(chars);
    let parsed: unknown;
    try {
      parsed = JSON.parse(s);
    } catch {
      out.push(s);
      continue;
    }
    // valid JSON that is not an object with the right keys is still a bad request; keep only non-objects
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) out.push(s);
  }
  return out;
}

/** Deep and wide JSON: bodies that stress a parser or a validator, each wrong for every endpoint. */
export function deepJson(extraValid: Record<string, unknown>): { what: string; body: BodySpec }[] {
  const wrap = (inner: BodySpec): BodySpec => ({
    kind: "concat",
    parts: [
      text(JSON.stringify(extraValid).slice(0, -1) + (Object.keys(extraValid).length ? "," : "") + '"deep":'),
      inner,
      text("}"),
    ],
  });
  const nest = (open: string, close: string, depth: number): BodySpec => ({
    kind: "concat",
    parts: [{ kind: "repeat", text: open, count: depth }, text("0"), { kind: "repeat", text: close, count: depth }],
  });
  return [
    { what: "array nested 1,000 deep", body: nest("[", "]", 1000) },
    { what: "array nested 100,000 deep", body: nest("[", "]", 100_000) },
    { what: "array nested 400,000 deep", body: nest("[", "]", 400_000) },
    { what: "object nested 50,000 deep", body: nest('{"a":', "}", 50_000) },
    { what: "200,000 unclosed brackets", body: { kind: "repeat", text: "[", count: 200_000 } },
    { what: "valid fields plus an extra key holding 100,000-deep arrays", body: wrap(nest("[", "]", 100_000)) },
    { what: "valid fields plus an extra key holding a 50,000-deep object", body: wrap(nest('{"x":', "}", 50_000)) },
    {
      what: "an object with 20,000 unknown keys",
      body: { kind: "concat", parts: [text("{"), { kind: "repeat", text: '"k":1,', count: 20_000 }, text('"z":0}')] },
    },
    {
      what: "an array of 200,000 numbers",
      body: { kind: "concat", parts: [text("["), { kind: "repeat", text: "1,", count: 200_000 }, text("1]")] },
    },
    {
      what: "a 1 MiB string where an object is expected",
      body: { kind: "concat", parts: [text('"'), { kind: "repeat", text: "a", count: MIB }, text('"')] },
    },
  ];
}

/** A private image URL: refused without any connection, so a body carrying it is refused for what else is wrong. */
export const PRIVATE_URL = "http://127.0.0.1/cat.jpg";
