/** Unicode over HTTP: over-long names in code points, invalid percent-encoding, odd routes, homoglyph keys. */
import type { Expect } from "../../test/fixtures/corpus/format.ts";
import { ANY_4XX, E, oneOf, text, type Corpus } from "./builder.ts";
import { PRIVATE_URL } from "./json-bodies.ts";

export function httpUnicode(c: Corpus): void {
  const enc = encodeURIComponent;
  const get = (what: string, path: string, expect: Expect): void =>
    c.http("unicode", what, { method: "GET", path, body: { kind: "empty" }, expect });
  // names over 256 UTF-16 units (encoded path under the router's 2048-character parameter cap): BAD_REQUEST
  const units: [string, string][] = [
    ["\u00e9", "e-acute"],
    ["\u{1F600}", "emoji"],
    ["e\u0301", "e + combining acute"],
    ["\u200b", "zero-width space"],
    ["\u202e", "RTL override"],
    ["\uff21", "fullwidth A"],
    ["\u4e2d", "CJK"],
    ["\u0928", "Devanagari"],
    ["\u{1F468}\u200d\u{1F469}", "ZWJ sequence"],
  ];
  for (const [u, name] of units) {
    // the limit counts code points (a UTF-16 surrogate pair is one)
    const count = Math.ceil(257 / [...u].length);
    const encoded = enc(u.repeat(count));
    get(
      `greeting name of ${count} x ${name} (${count * [...u].length} code points, ${encoded.length} characters encoded)`,
      `/greeting/${encoded}`,
      encoded.length <= 2048 ? E("BAD_REQUEST") : ANY_4XX,
    );
    const longer = enc(u.repeat(count * 3));
    get(
      `greeting name of ${count * 3} x ${name}, ${longer.length} characters encoded (over the router's parameter cap)`,
      `/greeting/${longer}`,
      ANY_4XX,
    );
  }
  get("greeting name of 257 ASCII letters", `/greeting/${"a".repeat(257)}`, E("BAD_REQUEST"));
  get("greeting name of 3000 ASCII letters", `/greeting/${"b".repeat(3000)}`, ANY_4XX);
  // invalid percent-encoding in a parameter
  for (const p of [
    "%E0%A4%A",
    "%ZZ",
    "%ED%A0%80",
    "%C0%AF",
    "%FF",
    "%F0%9F%98",
    "%",
    "a%2",
    "%C3%28",
    "%F8%88%80%80%80",
  ]) {
    get(
      `greeting name ${JSON.stringify(p)} (not UTF-8 once decoded)`,
      `/greeting/${p}`,
      oneOf("BAD_REQUEST", "NOT_FOUND"),
    );
  }
  // routes that do not exist, in odd spellings
  for (const p of [
    "/gr%C3%BC%C3%9Fen/ada",
    "/%EF%BD%87%EF%BD%92%EF%BD%85%EF%BD%85%EF%BD%94%EF%BD%89%EF%BD%8E%EF%BD%87/ada",
    "/greeting",
    "/%F0%9F%98%80",
    "/classify/%E2%80%AE",
    "/process",
    "/gre%E2%80%8Beting/ada",
    "/GREETING/ada",
    "/greeting%2Fada",
    "/%67reeting%2F",
    "/greeting/ada/extra",
    "/.%2e/.%2e/etc/passwd",
    "/%00",
    "/greeting/ada/%00/x",
  ]) {
    get(`path ${JSON.stringify(p)}`, p, E("NOT_FOUND"));
  }
  // raw bytes over 0x7f in the request target (not percent-encoded): refused by the HTTP parser, or no route
  for (const p of ["/gr\u00e9eting/ada", "/\u00ff\u00fe", "/classify\u00a0", "/greeting/\u00e9"]) {
    get(`raw latin1 bytes in the path ${JSON.stringify(p)}`, p, oneOf("BAD_REQUEST", "NOT_FOUND"));
  }
  // A/B route: message and user_key
  const qk = [
    "\u30e6\u30fc\u30b6\u30fc",
    "user\u200bkey",
    "USER_KEY",
    "user_k\u0435y",
    "user-key",
    "\u{1F511}",
    "user_key\u0000",
    "us%65r_key%00",
  ];
  for (const k of qk)
    get(`process with query key ${JSON.stringify(k)} and no user_key`, `/process/hi?${enc(k)}=u1`, E("BAD_REQUEST"));
  get("process with an empty user_key", "/process/hi?user_key=", E("BAD_REQUEST"));
  get("process with user_key of 257 ASCII", `/process/hi?user_key=${"k".repeat(257)}`, E("BAD_REQUEST"));
  get("process with user_key of 257 emoji", `/process/hi?user_key=${enc("\u{1F511}".repeat(257))}`, E("BAD_REQUEST"));
  get("process with user_key of 600 CJK", `/process/hi?user_key=${enc("\u4e2d".repeat(600))}`, E("BAD_REQUEST"));
  get("process with a message of 1025 ASCII", `/process/${"m".repeat(1025)}?user_key=u1`, E("BAD_REQUEST"));
  get(
    "process with a message of 1025 e-acute (encoded over the parameter cap)",
    `/process/${enc("\u00e9".repeat(1025))}?user_key=u1`,
    ANY_4XX,
  );
  get("process with a message of invalid UTF-8", "/process/%FF%FE?user_key=u1", oneOf("BAD_REQUEST", "NOT_FOUND"));
  get("process with user_key repeated", "/process/hi?user_key=a&user_key=b", E("BAD_REQUEST"));
  // unicode keys in the classify JSON
  for (const k of [
    "im\u00e4ge_url",
    "\uff49\uff4d\uff41\uff47\uff45_\uff55\uff52\uff4c",
    "image_url\u0000",
    "image_url\u200b",
    "image_\u0075rl\u0301",
    "\u0456mage_url",
    "IMAGE_URL",
    "image-url",
    "\u{1F5BC}",
  ]) {
    c.http("unicode", `classify JSON key ${JSON.stringify(k)}`, {
      method: "POST",
      path: "/classify",
      headers: { "content-type": "application/json" },
      body: text(`{${JSON.stringify(k)}:"${PRIVATE_URL}"}`),
      expect: E("BAD_REQUEST"),
    });
  }
  c.http("unicode", "classify JSON with top_k under a homoglyph key", {
    method: "POST",
    path: "/classify",
    headers: { "content-type": "application/json" },
    body: text(`{"image_url":"${PRIVATE_URL}","t\u043ep_k":5}`),
    expect: E("BAD_REQUEST"),
  });
}
