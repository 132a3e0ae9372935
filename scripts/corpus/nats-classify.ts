/** The preprocess classify subject over NATS: top-k and Content-Type headers, bad images, pixel bombs, deadlines. */
import { b64, E, oneOf, type Corpus } from "./builder.ts";
import { MIB, S } from "./graph.ts";
import { fileSpec, mediaOf, smallJpeg, type ImageFile } from "./image-files.ts";
import { gifBomb, MAGICS, pngBomb, tiffBomb } from "./image-forgery.ts";
import { natsDeadlines } from "./nats-deadlines.ts";
import { BAD_CONTENT_TYPES, BAD_DTYPES, BAD_SHAPES } from "./nats-values.ts";
import { ODD_TOP_K } from "./numbers.ts";
import { topKValid } from "./oracles.ts";

export function natsClassify(c: Corpus, images: ImageFile[]): void {
  const small = smallJpeg(images);
  const valid = fileSpec(small);
  for (const v of ODD_TOP_K.filter((x) => x.trim() !== "" && !topKValid(x.trim()))) {
    c.nats(S.classify, "top-k", `Graph-Top-K ${JSON.stringify(v)}`, {
      headers: { "Graph-Top-K": v, "Content-Type": "image/jpeg" },
      body: valid,
      expect: E("BAD_REQUEST"),
    });
  }
  c.nats(S.classify, "top-k", "Graph-Top-K of 10,000 digits", {
    headers: { "Graph-Top-K": "5".repeat(10_000) },
    body: valid,
    expect: E("BAD_REQUEST"),
  });
  for (const ct of BAD_CONTENT_TYPES) {
    c.nats(S.classify, "content-type", `Content-Type ${JSON.stringify(ct.slice(0, 40))}`, {
      headers: { "Content-Type": ct },
      body: valid,
      expect: E("UNSUPPORTED_MEDIA_TYPE"),
    });
  }
  c.nats(S.classify, "image", "empty body", { body: { kind: "empty" }, expect: E("INVALID_IMAGE") });
  c.nats(S.classify, "image", "empty body with image/png", {
    headers: { "Content-Type": "image/png" },
    body: { kind: "empty" },
    expect: E("INVALID_IMAGE"),
  });
  for (let i = 0; i < 8; i++) {
    const length = c.int(1, 200_000);
    c.nats(S.classify, "image", `${length} random bytes`, {
      headers: { "Content-Type": c.pick(["image/jpeg", "application/octet-stream"]) },
      body: c.randomNoMagic(length),
      expect: E("INVALID_IMAGE"),
    });
  }
  for (const m of MAGICS.filter((_, i) => i % 2 === 0)) {
    c.nats(S.classify, "image", `${m.name} then random bytes`, {
      body: { kind: "concat", parts: [b64(m.bytes), { kind: "random", seed: c.seed(), length: c.int(16, 20_000) }] },
      expect: m.accepted ? oneOf("INVALID_IMAGE", "PAYLOAD_TOO_LARGE") : E("INVALID_IMAGE"),
    });
  }
  for (const img of images.filter((_, i) => i % 2 === 1)) {
    const end = c.int(Math.max(8, Math.floor(img.safeEnd * 0.02)), Math.floor(img.safeEnd * 0.95));
    c.nats(S.classify, "image", `${img.path} cut to ${end} bytes`, {
      headers: { "Content-Type": mediaOf(img) },
      body: fileSpec(img, 0, end),
      expect: E("INVALID_IMAGE"),
    });
  }
  for (const [w, h] of [
    [30_000, 30_000],
    [7072, 7072],
    [65_535, 65_535],
    [c.int(8000, 60_000), c.int(8000, 60_000)],
  ] as const) {
    c.nats(S.classify, "pixel-bomb", `PNG header declaring ${w}x${h}`, {
      headers: { "Content-Type": "image/png", "Graph-Top-K": "5" },
      body: b64(pngBomb(w, h)),
      expect: E("PAYLOAD_TOO_LARGE"),
    });
  }
  c.nats(S.classify, "pixel-bomb", "GIF declaring 65535x65535", {
    body: b64(gifBomb(65_535, 65_535)),
    expect: oneOf("PAYLOAD_TOO_LARGE", "INVALID_IMAGE"),
  });
  c.nats(S.classify, "pixel-bomb", "TIFF declaring 100000x100000", {
    body: b64(tiffBomb(100_000, 100_000)),
    expect: oneOf("PAYLOAD_TOO_LARGE", "INVALID_IMAGE"),
  });
  c.nats(S.classify, "oversized", "8 MiB + 1 random bytes (over MAX_INPUT_BYTES)", {
    body: { kind: "random", seed: c.seed(), length: 8 * MIB + 1 },
    expect: E("PAYLOAD_TOO_LARGE"),
    timeoutMs: 20_000,
  });
  // tensor headers on the image endpoint change nothing
  for (let i = 0; i < 4; i++) {
    c.nats(S.classify, "stray-headers", "Graph-Shape and Graph-Dtype on an image request with random bytes", {
      headers: { "Graph-Shape": c.pick(BAD_SHAPES), "Graph-Dtype": c.pick(BAD_DTYPES) },
      body: c.randomNoMagic(c.int(10, 5000)),
      expect: E("INVALID_IMAGE"),
    });
  }
  natsDeadlines(c, S.classify, valid, { body: c.randomNoMagic(512), code: "INVALID_IMAGE" });
}
