/** Image bytes made from nothing: pixel bombs (tiny files declaring huge dimensions) and the signatures of image formats. */

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export const u16be = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
export const u32be = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const u16le = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
};
const u32le = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};

function pngChunk(type: string, body: Buffer): Buffer {
  const t = Buffer.from(type, "ascii");
  return Buffer.concat([u32be(body.length), t, body, u32be(crc32(Buffer.concat([t, body])))]);
}

/** A PNG that is a header claiming width x height and a token IDAT: a pixel bomb of ~80 bytes. */
export function pngBomb(width: number, height: number): Buffer {
  const ihdr = Buffer.concat([u32be(width), u32be(height), Buffer.from([8, 2, 0, 0, 0])]);
  // zlib stream of 64 zero bytes (stored block), enough for a decoder to start
  const idat = Buffer.concat([
    Buffer.from([0x78, 0x01, 0x01, 0x40, 0x00, 0xbf, 0xff]),
    Buffer.alloc(64),
    u32be(0x00400001),
  ]);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr),
    pngChunk("IDAT", idat),
    pngChunk("IEND", Buffer.alloc(0)),
  ]);
}

export function gifBomb(width: number, height: number): Buffer {
  return Buffer.concat([
    Buffer.from("GIF89a", "ascii"),
    u16le(width),
    u16le(height),
    Buffer.from([0x00, 0x00, 0x00]),
    Buffer.from([0x2c]),
    u16le(0),
    u16le(0),
    u16le(width),
    u16le(height),
    Buffer.from([0x00]),
    Buffer.from([0x02, 0x02, 0x44, 0x01, 0x00]),
    Buffer.from([0x3b]),
  ]);
}

export function webpBomb(width: number, height: number): Buffer {
  const u24 = (n: number) => Buffer.from([n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff]);
  const vp8x = Buffer.concat([
    Buffer.from("VP8X", "ascii"),
    u32le(10),
    Buffer.from([0, 0, 0, 0]),
    u24(width - 1),
    u24(height - 1),
  ]);
  const vp8l = Buffer.concat([
    Buffer.from("VP8L", "ascii"),
    u32le(6),
    Buffer.from([0x2f, 0x00, 0x00, 0x00, 0x00, 0x00]),
  ]);
  const body = Buffer.concat([Buffer.from("WEBP", "ascii"), vp8x, vp8l]);
  return Buffer.concat([Buffer.from("RIFF", "ascii"), u32le(body.length), body]);
}

export function tiffBomb(width: number, height: number): Buffer {
  const entries: [number, number, number, number][] = [
    [256, 4, 1, width],
    [257, 4, 1, height],
    [258, 3, 1, 8],
    [259, 3, 1, 1],
    [262, 3, 1, 1],
    [273, 4, 1, 8],
    [277, 3, 1, 1],
    [278, 4, 1, height],
    [279, 4, 1, 64],
  ];
  const ifd = Buffer.concat([
    u16le(entries.length),
    ...entries.map(([tag, type, count, value]) =>
      Buffer.concat([
        u16le(tag),
        u16le(type),
        u32le(count),
        type === 3 ? Buffer.concat([u16le(value), u16le(0)]) : u32le(value),
      ]),
    ),
    u32le(0),
  ]);
  return Buffer.concat([Buffer.from("II*\0", "latin1"), u32le(8 + 64), Buffer.alloc(64), ifd]);
}

export const MAGICS: { name: string; bytes: Buffer; accepted: boolean }[] = [
  { name: "JPEG SOI/JFIF", bytes: Buffer.from([0xff, 0xd8, 0xff, 0xe0]), accepted: true },
  { name: "JPEG SOI/DQT", bytes: Buffer.from([0xff, 0xd8, 0xff, 0xdb]), accepted: true },
  { name: "PNG signature", bytes: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), accepted: true },
  {
    name: "PNG signature + IHDR tag",
    bytes: Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]),
      Buffer.from("IHDR"),
    ]),
    accepted: true,
  },
  { name: "GIF89a", bytes: Buffer.from("GIF89a"), accepted: true },
  { name: "GIF87a", bytes: Buffer.from("GIF87a"), accepted: true },
  { name: "RIFF/WEBP VP8", bytes: Buffer.from("RIFF\x00\x10\x00\x00WEBPVP8 ", "latin1"), accepted: true },
  { name: "TIFF little-endian", bytes: Buffer.from("II*\0", "latin1"), accepted: true },
  { name: "TIFF big-endian", bytes: Buffer.from("MM\0*", "latin1"), accepted: true },
  { name: "BMP", bytes: Buffer.from("BM"), accepted: false },
  { name: "ICO", bytes: Buffer.from([0, 0, 1, 0]), accepted: false },
  { name: "HEIC ftyp", bytes: Buffer.from("\0\0\0\x18ftypheic\0\0\0\0", "latin1"), accepted: false },
  { name: "AVIF ftyp", bytes: Buffer.from("\0\0\0\x1cftypavif\0\0\0\0", "latin1"), accepted: false },
  { name: "PDF", bytes: Buffer.from("%PDF-1.7\n"), accepted: false },
  { name: "JPEG XL", bytes: Buffer.from([0xff, 0x0a]), accepted: false },
  { name: "JPEG 2000", bytes: Buffer.from("\0\0\0\x0cjP  \r\n\x87\n", "latin1"), accepted: false },
  { name: "PSD", bytes: Buffer.from("8BPS"), accepted: false },
  { name: "PPM", bytes: Buffer.from("P6\n64 64\n255\n"), accepted: false },
  { name: "Radiance HDR", bytes: Buffer.from("#?RADIANCE\n"), accepted: false },
  { name: "OpenEXR", bytes: Buffer.from([0x76, 0x2f, 0x31, 0x01]), accepted: false },
  {
    name: "SVG",
    bytes: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000">'),
    accepted: false,
  },
];

/** Whether `b` starts with an image signature, or with a prefix of one (short buffers). */
export function startsWithMagic(b: Buffer): boolean {
  const prefixOf = (m: Buffer): boolean =>
    b.length > 0 && b.subarray(0, m.length).equals(m.subarray(0, Math.min(b.length, m.length)));
  return MAGICS.some((m) => prefixOf(m.bytes)) || prefixOf(Buffer.from([0xff, 0xd8])) || b[0] === 0x3c;
}
