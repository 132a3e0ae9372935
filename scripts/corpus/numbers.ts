/** top_k spelled in every way that is not a plain decimal integer in 1..1000, in the query string. */
import { E, type Corpus } from "./builder.ts";
import { fileSpec, smallJpeg, type ImageFile } from "./image-files.ts";
import { topKValid } from "./oracles.ts";

/** top_k spellings that are not a plain decimal integer in 1..1000 (checked against the oracle). */
export const ODD_TOP_K = [
  "0x10",
  "0X10",
  "1e3",
  "1E3",
  "+5",
  "-0",
  "-1",
  "0",
  "00",
  "000",
  "NaN",
  "Infinity",
  "-Infinity",
  "inf",
  "1.5",
  "5.0",
  "5.",
  ".5",
  "1001",
  "1000000",
  "99999999999999999999",
  "1e400",
  "9007199254740993",
  "-9007199254740993",
  "0b101",
  "0o7",
  "5abc",
  "abc",
  "",
  "5,6",
  "[5]",
  "{}",
  "true",
  "null",
  "0.0000001",
  "1e-7",
  "2e2",
  "00005",
  "10000",
  "\u0665",
  "\uff15",
  "5\u0000",
  "\u00bd",
  "\u2164",
  "1_000",
  "1,000",
  "0x3E8",
];

export function httpOddQuery(c: Corpus, images: ImageFile[]): void {
  const small = smallJpeg(images);
  for (const v of ODD_TOP_K) {
    if (topKValid(v)) throw new Error(`odd top_k ${v} is valid`);
    c.http("odd-number", `?top_k=${JSON.stringify(v)}`, {
      method: "POST",
      path: `/classify?top_k=${encodeURIComponent(v)}`,
      headers: { "content-type": "image/jpeg" },
      body: fileSpec(small),
      expect: E("BAD_REQUEST"),
    });
  }
  for (const q of [
    "top_k=5&top_k=6",
    "top_k=1&top_k=1",
    "top_k=%20%205",
    "top_k=5%20",
    "top_k=%ZZ",
    "top_k=%",
    "top_k=5%00",
    "top_k",
  ]) {
    c.http("odd-number", `?${q}`, {
      method: "POST",
      path: `/classify?${q}`,
      headers: { "content-type": "image/jpeg" },
      body: fileSpec(small),
      expect: E("BAD_REQUEST"),
    });
  }
}
