/** The classify JSON body over HTTP: image URLs, wrong JSON types, malformed, deep and wide JSON, odd numbers for top_k. */
import type { BodySpec, Expect } from "../../test/fixtures/corpus/format.ts";
import { E, json, oneOf, text, type Corpus } from "./builder.ts";
import { deepJson, jsonFuzz, MALFORMED_JSON, PRIVATE_URL, WRONG_TOP_LEVEL } from "./json-bodies.ts";
import { refusedWithoutConnection, topKValid } from "./oracles.ts";
import { imageUrls } from "./urls.ts";

export function httpJson(c: Corpus): void {
  const post = (
    category: string,
    what: string,
    body: BodySpec,
    expect: Expect,
    contentType = "application/json",
  ): void =>
    c.http(category, what, {
      method: "POST",
      path: "/classify",
      headers: { "content-type": contentType },
      body,
      expect,
    });

  // URLs
  for (const u of imageUrls(c, 170)) {
    const withTopK = c.rand() < 0.3;
    const body = withTopK ? { image_url: u, top_k: c.int(1, 1000) } : { image_url: u };
    post("private-url", `image_url ${JSON.stringify(u.slice(0, 80))}`, json(body), E(refusedWithoutConnection(u)));
  }

  // wrong JSON types
  const wrongUrl: unknown[] = [
    123,
    -1,
    0,
    1.5,
    true,
    false,
    null,
    [],
    [PRIVATE_URL],
    {},
    { href: PRIVATE_URL },
    "",
    "a".repeat(4097),
    [[]],
    { toString: PRIVATE_URL },
  ];
  for (const v of wrongUrl)
    post("wrong-json-type", `image_url ${JSON.stringify(v).slice(0, 40)}`, json({ image_url: v }), E("BAD_REQUEST"));
  const wrongTopK: unknown[] = [
    true,
    false,
    null,
    [],
    [5],
    {},
    { value: 5 },
    "five",
    "",
    "5.0",
    "5 ",
    " 5",
    "+5",
    "0x10",
    "1e2",
    "-5",
    "٥",
    "５",
    [1, 2],
    "1000000",
  ];
  for (const v of wrongTopK) if (topKValid(v)) throw new Error(`wrong top_k ${JSON.stringify(v)} is valid`);
  for (const v of wrongTopK)
    post(
      "wrong-json-type",
      `top_k ${JSON.stringify(v)}`,
      json({ image_url: c.pick(imageUrls(c, 0).slice(0, 60)), top_k: v }),
      E("BAD_REQUEST"),
    );
  for (const t of WRONG_TOP_LEVEL) post("wrong-json-type", `top-level ${t}`, text(t), E("BAD_REQUEST"));
  const wrongShape: unknown[] = [
    {},
    { top_k: 5 },
    { url: PRIVATE_URL },
    { imageUrl: PRIVATE_URL },
    { image: PRIVATE_URL },
    { image_url: PRIVATE_URL, extra: 1 },
    { image_url: PRIVATE_URL, top_k: 5, model: "x" },
    { IMAGE_URL: PRIVATE_URL },
    { image_url: PRIVATE_URL, top_k: 5, image_url2: PRIVATE_URL },
    [{ image_url: PRIVATE_URL }],
  ];
  for (const v of wrongShape)
    post("wrong-json-type", `object ${JSON.stringify(v).slice(0, 60)}`, json(v), E("BAD_REQUEST"));
  post("wrong-json-type", "__proto__ key", text(`{"__proto__":{"image_url":"${PRIVATE_URL}"}}`), E("BAD_REQUEST"));
  post(
    "wrong-json-type",
    "__proto__ next to image_url",
    text(`{"image_url":"${PRIVATE_URL}","__proto__":{"top_k":5}}`),
    E("BAD_REQUEST"),
  );
  post(
    "wrong-json-type",
    "constructor.prototype key",
    text(`{"image_url":"${PRIVATE_URL}","constructor":{"prototype":{"polluted":1}}}`),
    E("BAD_REQUEST"),
  );
  post(
    "wrong-json-type",
    "duplicate image_url, the last one not a string",
    text(`{"image_url":"${PRIVATE_URL}","image_url":5}`),
    E("BAD_REQUEST"),
  );
  post(
    "wrong-json-type",
    "duplicate top_k, the last one out of range",
    text(`{"image_url":"${PRIVATE_URL}","top_k":5,"top_k":0}`),
    E("BAD_REQUEST"),
  );

  // malformed JSON
  for (const t of [...MALFORMED_JSON, ...jsonFuzz(c, 12)])
    post("malformed-json", `body ${JSON.stringify(t.slice(0, 40))}`, text(t), E("BAD_REQUEST"));
  post(
    "malformed-json",
    "invalid UTF-8 inside a string",
    { kind: "latin1", text: `{"image_url":"${PRIVATE_URL}\xff\xfe\xc0\xaf"}` },
    oneOf("BAD_REQUEST", "URL_NOT_ALLOWED"),
  );
  post(
    "malformed-json",
    "invalid UTF-8 as a key",
    { kind: "latin1", text: `{"\xff\xfe":"${PRIVATE_URL}"}` },
    E("BAD_REQUEST"),
  );
  post(
    "malformed-json",
    "UTF-16LE JSON",
    { kind: "b64", b64: Buffer.from(`{"image_url":"${PRIVATE_URL}"}`, "utf16le").toString("base64") },
    E("BAD_REQUEST"),
  );
  post("malformed-json", "lone surrogate as a key", text(`{"\\ud800":"${PRIVATE_URL}"}`), E("BAD_REQUEST"));

  // deep and wide JSON
  for (const d of deepJson({ image_url: PRIVATE_URL })) post("deep-json", d.what, d.body, E("BAD_REQUEST"));

  // odd numbers for top_k, in JSON: the whole body decides (invalid JSON is BAD_REQUEST; a valid top_k leaves the URL refused)
  const rawTopK = [
    "0x10",
    '"0x10"',
    "1e3",
    '"1e3"',
    "+5",
    '"+5"',
    "-0",
    '"-0"',
    "NaN",
    '"NaN"',
    "Infinity",
    '"Infinity"',
    "-Infinity",
    "1e400",
    "-1e400",
    "1e-400",
    "1.5",
    "5.0",
    "5.5e0",
    "1000.0000000000001",
    "1000.00000000000001",
    "9007199254740993",
    "-9007199254740993",
    "-5",
    "0",
    "1001",
    "0.5",
    '"5"',
    '"0005"',
    '"00005"',
    '"5.0"',
    '" 5"',
    '""',
    '"1000"',
    '"1001"',
    '"0"',
    "05",
    "0.0",
    "-1",
    "1E3",
    "100e1",
    "10e2",
    '"\\u0035"',
    '"\\uff15"',
    "2147483648",
    "4294967297",
    "1.0000000000000002",
  ];
  for (const raw of rawTopK) {
    const body = `{"image_url":"${PRIVATE_URL}","top_k":${raw}}`;
    let expect: Expect;
    try {
      const v = (JSON.parse(body) as { top_k: unknown }).top_k;
      expect = E(topKValid(v) ? "URL_NOT_ALLOWED" : "BAD_REQUEST");
    } catch {
      expect = E("BAD_REQUEST");
    }
    post("odd-number", `JSON top_k ${raw}`, text(body), expect);
  }
}
