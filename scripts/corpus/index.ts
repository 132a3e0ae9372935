/**
 * The bad-input corpus generator (scripts/gen-corpus.ts is its command): every category in a fixed order over one
 * seeded random source, so the same seed (and the same data/images) gives the same cases.
 */
import { bodyLength, type CorpusCase } from "../../test/fixtures/corpus/format.ts";
import { Corpus } from "./builder.ts";
import { S } from "./graph.ts";
import { httpContentTypes } from "./http-content-types.ts";
import { httpImages } from "./http-images.ts";
import { httpJson } from "./http-json.ts";
import { httpLowLevel, httpMethods, httpOversized } from "./http-protocol.ts";
import { loadImages } from "./image-files.ts";
import { natsClassify } from "./nats-classify.ts";
import { natsInfer } from "./nats-infer.ts";
import { natsJsonEndpoint, natsNoInput } from "./nats-json.ts";
import { httpOddQuery } from "./numbers.ts";
import { httpUnicode } from "./unicode.ts";

export { refusedWithoutConnection, topKValid } from "./oracles.ts";

export const DEFAULT_SEED = 20261125;

export function generateCorpus(seed: number = DEFAULT_SEED): CorpusCase[] {
  const c = new Corpus(seed);
  const images = loadImages();
  httpImages(c, images);
  httpContentTypes(c, images);
  httpJson(c);
  httpOddQuery(c, images);
  httpUnicode(c);
  httpOversized(c);
  httpLowLevel(c);
  httpMethods(c);
  natsClassify(c, images);
  natsInfer(c);
  natsJsonEndpoint(c, S.greet, { name: "ada" }, { name: 256 });
  natsJsonEndpoint(c, S.greeting, { name: "ada" }, { name: 256 });
  natsJsonEndpoint(c, S.process, { message: "hi", user_key: "u1" }, { message: 1024, user_key: 256 });
  natsJsonEndpoint(c, S.variantA, { message: "hi" }, { message: 1024 });
  natsJsonEndpoint(c, S.variantB, { message: "hi" }, { message: 1024 });
  natsNoInput(c, S.labels);
  natsNoInput(c, S.info);
  natsNoInput(c, S.endpoints);
  const ids = new Set<string>();
  for (const k of c.cases) {
    if (ids.has(k.id)) throw new Error(`duplicate id ${k.id}`);
    ids.add(k.id);
  }
  return c.cases;
}

export function serialize(cases: readonly CorpusCase[]): string {
  return cases.map((k) => JSON.stringify(k)).join("\n") + "\n";
}

export function summarize(cases: readonly CorpusCase[]): { byCategory: Record<string, number>; bytes: number } {
  const byCategory: Record<string, number> = {};
  let bytes = 0;
  for (const k of cases) {
    byCategory[k.category] = (byCategory[k.category] ?? 0) + 1;
    bytes += bodyLength(k.body);
  }
  return { byCategory, bytes };
}
