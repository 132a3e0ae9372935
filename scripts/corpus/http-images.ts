/** HTTP image bodies: random bytes (with and without a signature), truncated images, pixel bombs. */
import type { BodySpec, Expect } from "../../test/fixtures/corpus/format.ts";
import { b64, E, oneOf, text, type Corpus } from "./builder.ts";
import { MAX_INPUT_PIXELS } from "./graph.ts";
import { fileSpec, mediaOf, type ImageFile } from "./image-files.ts";
import { crc32, gifBomb, MAGICS, pngBomb, startsWithMagic, tiffBomb, u16be, u32be, webpBomb } from "./image-forgery.ts";

export function httpImages(c: Corpus, images: ImageFile[]): void {
  const post = (
    category: string,
    what: string,
    body: BodySpec,
    contentType: string,
    expect: Expect,
    query = "",
  ): void =>
    c.http(category, what, {
      method: "POST",
      path: `/classify${query}`,
      headers: { "content-type": contentType },
      body,
      expect,
    });
  const types = ["image/jpeg", "image/png", "image/webp", "application/octet-stream", "image/gif", "image/tiff"];

  // random bytes, no signature
  for (const length of [1, 2, 3, 4, 7, 16, 64, 100, 511, 1000, 4096, 10_000, 65_536, 100_000, 250_000]) {
    post("random-image", `${length} random bytes`, c.randomNoMagic(length), c.pick(types), E("INVALID_IMAGE"));
  }
  for (let i = 0; i < 9; i++) {
    const length = c.int(5, 300_000);
    post("random-image", `${length} random bytes`, c.randomNoMagic(length), c.pick(types), E("INVALID_IMAGE"));
  }
  // a signature, then random bytes
  for (const m of MAGICS) {
    const length = c.int(16, 50_000);
    post(
      "random-image",
      `${m.name} then ${length} random bytes`,
      { kind: "concat", parts: [b64(m.bytes), { kind: "random", seed: c.seed(), length }] },
      c.pick(types),
      m.accepted ? oneOf("INVALID_IMAGE", "PAYLOAD_TOO_LARGE") : E("INVALID_IMAGE"),
    );
  }
  for (const t of [
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "<html><body>not an image</body></html>",
    '{"image_url":"http://127.0.0.1/"}',
    "%!PS-Adobe-3.0\n",
    "#!/bin/sh\necho hi\n",
  ]) {
    post(
      "random-image",
      `text as an image: ${JSON.stringify(t.slice(0, 24))}`,
      text(t),
      c.pick(types),
      E("INVALID_IMAGE"),
    );
  }

  // truncated, cut from the front, signature smashed
  for (const img of images) {
    for (let k = 0; k < 5; k++) {
      const end = c.int(Math.max(8, Math.floor(img.safeEnd * 0.02)), Math.floor(img.safeEnd * 0.95));
      post(
        "truncated-image",
        `${img.path} cut to ${end} of ${img.bytes.length} bytes`,
        fileSpec(img, 0, end),
        c.pick([mediaOf(img), "application/octet-stream"]),
        E("INVALID_IMAGE"),
      );
    }
  }
  for (const img of images.filter((_, i) => i % 3 === 0)) {
    const n = c.pick([1, 2, 3, 4, 8, 20, 100, 300]);
    post(
      "truncated-image",
      `${img.path}: first ${n} bytes only`,
      fileSpec(img, 0, n),
      mediaOf(img),
      E("INVALID_IMAGE"),
    );
    let start = c.int(1, 200);
    while (startsWithMagic(img.bytes.subarray(start, start + 32))) start++;
    post(
      "truncated-image",
      `${img.path} without its first ${start} bytes`,
      fileSpec(img, start),
      mediaOf(img),
      E("INVALID_IMAGE"),
    );
    post(
      "truncated-image",
      `${img.path} with its signature zeroed`,
      {
        kind: "file",
        path: img.path,
        patches: [{ offset: 0, b64: Buffer.alloc(img.type === "png" ? 8 : 2).toString("base64") }],
      },
      mediaOf(img),
      E("INVALID_IMAGE"),
    );
  }

  // pixel bombs: tiny files declaring huge dimensions
  const bombDims: [number, number][] = [
    [30_000, 30_000],
    [7072, 7072],
    [65_535, 65_535],
    [50_001, 1000],
    [1000, 50_001],
    [10_000, 10_000],
  ];
  while (bombDims.length < 12) {
    const w = c.int(7072, 60_000);
    const h = c.int(Math.ceil((MAX_INPUT_PIXELS + 1) / w), 60_000);
    bombDims.push([w, h]);
  }
  for (const [w, h] of bombDims)
    post("pixel-bomb", `PNG header declaring ${w}x${h}`, b64(pngBomb(w, h)), "image/png", E("PAYLOAD_TOO_LARGE"));
  for (const [w, h] of [
    [1_000_000, 1_000_000],
    [2_147_483_647, 2_147_483_647],
    [4_000_000, 100],
  ] as const) {
    post(
      "pixel-bomb",
      `PNG header declaring ${w}x${h} (past some decoders' own limits)`,
      b64(pngBomb(w, h)),
      "image/png",
      oneOf("PAYLOAD_TOO_LARGE", "INVALID_IMAGE"),
    );
  }
  for (const img of images) {
    const w = c.int(7072, 65_535);
    const h = c.int(Math.ceil((MAX_INPUT_PIXELS + 1) / w), 65_535);
    if (img.type === "png") {
      const ihdr = Buffer.from(img.bytes.subarray(12, 29));
      ihdr.writeUInt32BE(w, 4);
      ihdr.writeUInt32BE(h, 8);
      const crc = u32be(crc32(ihdr));
      post(
        "pixel-bomb",
        `${img.path} with IHDR patched to ${w}x${h}`,
        {
          kind: "file",
          path: img.path,
          patches: [
            { offset: 16, b64: Buffer.concat([u32be(w), u32be(h)]).toString("base64") },
            { offset: 29, b64: crc.toString("base64") },
          ],
        },
        "image/png",
        E("PAYLOAD_TOO_LARGE"),
      );
    } else if (images.indexOf(img) % 2 === 0) {
      post(
        "pixel-bomb",
        `${img.path} with its SOF patched to ${w}x${h}`,
        {
          kind: "file",
          path: img.path,
          patches: [{ offset: img.dimsAt, b64: Buffer.concat([u16be(h), u16be(w)]).toString("base64") }],
        },
        "image/jpeg",
        E("PAYLOAD_TOO_LARGE"),
      );
    }
  }
  for (const [w, h] of [
    [65_535, 65_535],
    [10_000, 10_000],
    [8000, 7000],
  ] as const) {
    post(
      "pixel-bomb",
      `GIF declaring ${w}x${h}`,
      b64(gifBomb(w, h)),
      "image/gif",
      oneOf("PAYLOAD_TOO_LARGE", "INVALID_IMAGE"),
    );
  }
  for (const [w, h] of [
    [16_383, 16_383],
    [10_000, 10_000],
    [16_000_000, 16_000_000],
  ] as const) {
    post(
      "pixel-bomb",
      `WebP VP8X declaring ${w}x${h}`,
      b64(webpBomb(w, h)),
      "image/webp",
      oneOf("PAYLOAD_TOO_LARGE", "INVALID_IMAGE"),
    );
  }
  for (const [w, h] of [
    [100_000, 100_000],
    [20_000, 20_000],
    [4_294_967_295, 4_294_967_295],
  ] as const) {
    post(
      "pixel-bomb",
      `TIFF declaring ${w}x${h}`,
      b64(tiffBomb(w, h)),
      "image/tiff",
      oneOf("PAYLOAD_TOO_LARGE", "INVALID_IMAGE"),
    );
  }
}
