import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { deflateSync } from "node:zlib";
import sharp, { type Colour } from "sharp";
import { GraphError } from "../../subjects/errors.ts";
import { createPreprocessor, TENSOR_LENGTH, type Preprocessor } from "../../services/preprocess/src/pipeline.ts";
import { normalizeToChw, pilPreprocessRgb } from "../../services/preprocess/src/pil-exact.ts";

const LIMITS = { maxInputPixels: 4_000_000, maxInputBytes: 2_000_000 };
const PLANE = 224 * 224;

async function rejectsWith(p: Promise<unknown>, code: string): Promise<GraphError> {
  const err = await p.then(
    () => assert.fail(`expected a ${code} rejection`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof GraphError, `expected a GraphError, got ${String(err)}`);
  assert.equal(err.code, code);
  // The decoder's own words never reach the caller's message.
  assert.doesNotMatch(err.message, /vips|sharp|input buffer|jpeg|png/i);
  return err;
}

/** CRC-32 (IEEE) as PNG chunks use it; zlib.crc32 needs Node >= 20.15. */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** A PNG that is only a header (IHDR) claiming width x height, plus a few bytes of IDAT: a pixel bomb. */
function pngHeaderOnly(width: number, height: number): Buffer {
  const chunk = (type: string, body: Buffer): Buffer => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(body.length, 0);
    head.write(type, 4, "ascii");
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])), 0);
    return Buffer.concat([head, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, adaptive filtering, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.alloc(64))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

function noiseRgb(width: number, height: number, seed: number): Buffer {
  let s = seed >>> 0;
  const out = Buffer.alloc(width * height * 3);
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

const raw = (width: number, height: number, channels: 3 | 4 = 3) => ({ raw: { width, height, channels } }) as const;
const solid = (width: number, height: number, background: Colour, channels: 3 | 4 = 3) =>
  sharp({ create: { width, height, channels, background } });

/** The tensor every pixel of a solid (r, g, b) image becomes, whatever the blur and resize. */
function solidTensor(r: number, g: number, b: number): Float32Array {
  return normalizeToChw(new Uint8Array([r, g, b]), 1, 1);
}

function assertSolid(t: Float32Array, rgb: readonly [number, number, number], what: string): void {
  const expected = solidTensor(...rgb);
  for (let c = 0; c < 3; c++) {
    const plane = t.subarray(c * PLANE, (c + 1) * PLANE);
    assert.ok(
      plane.every((v) => v === expected[c]),
      `${what}: channel ${c} is not ${rgb[c]}`,
    );
  }
}

let jpeg: Buffer;
let inputs: { name: string; bytes: Buffer; solid?: readonly [number, number, number] }[];

before(async () => {
  jpeg = await sharp(noiseRgb(320, 240, 1), raw(320, 240))
    .jpeg({ quality: 90 })
    .toBuffer();
  const twoFrames = Buffer.concat([
    await solid(40, 30, "#ff0000").raw().toBuffer(),
    await solid(40, 30, "#00ff00").raw().toBuffer(),
  ]);
  const animated = { raw: { width: 40, height: 60, channels: 3 as const, pageHeight: 30 } };
  inputs = [
    {
      name: "grayscale JPEG",
      bytes: await sharp(noiseRgb(64, 48, 2), raw(64, 48))
        .grayscale()
        .jpeg()
        .toBuffer(),
    },
    { name: "grayscale PNG", bytes: await solid(50, 40, "#404040").grayscale().png().toBuffer(), solid: [64, 64, 64] },
    {
      name: "grey + alpha PNG",
      bytes: await solid(50, 40, { r: 90, g: 90, b: 90, alpha: 0.5 }, 4).grayscale().png().toBuffer(),
      solid: [90, 90, 90],
    },
    {
      name: "RGBA PNG",
      bytes: await solid(50, 40, { r: 10, g: 120, b: 250, alpha: 0.25 }, 4).png().toBuffer(),
      solid: [10, 120, 250],
    },
    {
      name: "16-bit RGB PNG",
      bytes: await solid(50, 40, "#c86432").toColourspace("rgb16").png().toBuffer(),
      solid: [200, 100, 50],
    },
    { name: "16-bit grey PNG", bytes: await solid(50, 40, "#1e1e1e").toColourspace("grey16").png().toBuffer() },
    {
      name: "palette PNG",
      bytes: await sharp(noiseRgb(64, 48, 3), raw(64, 48))
        .png({ palette: true, colours: 16 })
        .toBuffer(),
    },
    { name: "GIF", bytes: await solid(30, 20, "#0000ff").gif().toBuffer(), solid: [0, 0, 255] },
    {
      name: "animated GIF (first frame)",
      bytes: await sharp(twoFrames, animated).gif({ loop: 0 }).toBuffer(),
      solid: [255, 0, 0],
    },
    {
      name: "WebP",
      bytes: await sharp(noiseRgb(64, 48, 4), raw(64, 48))
        .webp()
        .toBuffer(),
    },
    {
      name: "animated WebP (first frame)",
      bytes: await sharp(twoFrames, animated).webp({ lossless: true, loop: 0 }).toBuffer(),
      solid: [255, 0, 0],
    },
    {
      name: "TIFF",
      bytes: await solid(30, 20, "#336699").tiff({ compression: "lzw" }).toBuffer(),
      solid: [0x33, 0x66, 0x99],
    },
    { name: "1x1 PNG", bytes: await solid(1, 1, "#ffffff").png().toBuffer(), solid: [255, 255, 255] },
  ];
});

for (const mode of ["fast", "exact"] as const) {
  describe(`preprocess (${mode})`, () => {
    let pre: Preprocessor;
    before(() => {
      pre = createPreprocessor({ mode, ...LIMITS, exactWorkers: 1 });
    });
    after(() => pre.close());

    test("preprocess - empty input is INVALID_IMAGE", async () => {
      await rejectsWith(pre.toTensor(new Uint8Array(0)), "INVALID_IMAGE");
    });

    test("preprocess - random bytes and text are INVALID_IMAGE", async () => {
      await rejectsWith(pre.toTensor(noiseRgb(1000, 1, 5)), "INVALID_IMAGE");
      await rejectsWith(
        pre.toTensor(new TextEncoder().encode("GET / HTTP/1.1\r\nhost: example\r\n\r\n")),
        "INVALID_IMAGE",
      );
    });

    test("preprocess - a truncated JPEG is INVALID_IMAGE", async () => {
      await rejectsWith(pre.toTensor(jpeg.subarray(0, Math.floor(jpeg.length / 2))), "INVALID_IMAGE");
    });

    test("preprocess - SVG is refused as an unsupported format", async () => {
      const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>';
      const err = await rejectsWith(pre.toTensor(new TextEncoder().encode(svg)), "INVALID_IMAGE");
      assert.deepEqual(err.details, { format: "svg" });
    });

    test("preprocess - bytes over maxInputBytes are PAYLOAD_TOO_LARGE", async () => {
      const err = await rejectsWith(pre.toTensor(new Uint8Array(LIMITS.maxInputBytes + 1)), "PAYLOAD_TOO_LARGE");
      assert.deepEqual(err.details, { bytes: LIMITS.maxInputBytes + 1, maxInputBytes: LIMITS.maxInputBytes });
    });

    test("preprocess - a 30000x30000 header is refused by the pixel limit without decoding", async () => {
      const bomb = pngHeaderOnly(30_000, 30_000);
      assert.ok(bomb.length < 200);
      const started = performance.now();
      await rejectsWith(pre.toTensor(bomb), "PAYLOAD_TOO_LARGE");
      // Decoding 900 MP would take seconds and ~2.7 GB; reading the header takes milliseconds.
      assert.ok(performance.now() - started < 2000, `took ${performance.now() - started} ms`);
    });

    test("preprocess - a real image over the pixel limit is PAYLOAD_TOO_LARGE", async () => {
      const big = await solid(2100, 2000, "#808080").png().toBuffer();
      const err = await rejectsWith(pre.toTensor(big), "PAYLOAD_TOO_LARGE");
      assert.deepEqual(err.details, { width: 2100, height: 2000, maxInputPixels: LIMITS.maxInputPixels });
    });

    test("preprocess - grey, alpha, 16-bit, palette, GIF, WebP and TIFF inputs give a (3,224,224) tensor", async () => {
      for (const input of inputs) {
        const t = await pre.toTensor(input.bytes);
        assert.ok(t instanceof Float32Array, input.name);
        assert.equal(t.length, TENSOR_LENGTH, input.name);
        assert.equal(t.byteOffset, 0, input.name);
        assert.equal(t.buffer.byteLength, TENSOR_LENGTH * 4, input.name);
        assert.ok(t.every(Number.isFinite), input.name);
        if (input.solid !== undefined) assertSolid(t, input.solid, input.name);
      }
    });

    test("preprocess - an aborted signal is DEADLINE_EXCEEDED", async () => {
      await rejectsWith(pre.toTensor(jpeg, AbortSignal.abort()), "DEADLINE_EXCEEDED");
    });

    test("preprocess - a view into a larger buffer is read at its offset", async () => {
      const padded = new Uint8Array(jpeg.length + 7);
      padded.set(jpeg, 3);
      const direct = await pre.toTensor(jpeg);
      const viaView = await pre.toTensor(padded.subarray(3, 3 + jpeg.length));
      assert.deepEqual(viaView, direct);
    });
  });
}

test("preprocess - exact mode equals the Pillow port on sharp's decode, under concurrency", async () => {
  const pre = createPreprocessor({ mode: "exact", ...LIMITS, exactWorkers: 2 });
  try {
    const images = await Promise.all(
      [1, 2, 3, 4, 5].map((seed) =>
        sharp(noiseRgb(150 + seed * 7, 90 + seed, seed), raw(150 + seed * 7, 90 + seed))
          .jpeg()
          .toBuffer(),
      ),
    );
    const tensors = await Promise.all(images.map((b) => pre.toTensor(b)));
    for (const [i, bytes] of images.entries()) {
      const { data, info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
      assert.deepEqual(tensors[i], pilPreprocessRgb(data, info.width, info.height), `image ${i}`);
    }
  } finally {
    await pre.close();
  }
});

test("preprocess - exact mode: aborting one of several requests in flight rejects only that one", async () => {
  const pre = createPreprocessor({ mode: "exact", ...LIMITS, exactWorkers: 1 });
  try {
    const ac = new AbortController();
    const first = pre.toTensor(jpeg);
    const second = pre.toTensor(jpeg, ac.signal);
    const third = pre.toTensor(jpeg);
    ac.abort();
    await rejectsWith(second, "DEADLINE_EXCEEDED");
    assert.equal((await first).length, TENSOR_LENGTH);
    assert.equal((await third).length, TENSOR_LENGTH);
  } finally {
    await pre.close();
  }
});

test("preprocess - a closed preprocessor answers UNAVAILABLE", async () => {
  for (const mode of ["fast", "exact"] as const) {
    const pre = createPreprocessor({ mode, ...LIMITS, exactWorkers: 1 });
    await pre.close();
    await rejectsWith(pre.toTensor(jpeg), "UNAVAILABLE");
    await pre.close();
  }
});

test("preprocess - invalid options are rejected at creation", () => {
  assert.throws(() => createPreprocessor({ mode: "slow" as "fast", ...LIMITS }), TypeError);
  assert.throws(() => createPreprocessor({ mode: "fast", maxInputPixels: 0, maxInputBytes: 1 }), TypeError);
  assert.throws(() => createPreprocessor({ mode: "exact", ...LIMITS, exactWorkers: 0 }), TypeError);
});
