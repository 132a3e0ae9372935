/** The images of data/images as the corpus cuts and patches them: where their data ends, where their dimensions sit. */
import { readdirSync, readFileSync } from "node:fs";
import { extname, resolve } from "node:path";
import { REPO_ROOT, type BodySpec } from "../../test/fixtures/corpus/format.ts";

export interface ImageFile {
  path: string;
  bytes: Buffer;
  type: "jpeg" | "png";
  /** Cutting anywhere before this offset leaves the image data incomplete. */
  safeEnd: number;
  /** JPEG: offset of the SOF segment's height field; PNG: offset of IHDR's width field. */
  dimsAt: number;
}

/** The SOF segment's height field, walking the marker segments (so an EXIF thumbnail's SOF is never taken). */
function jpegSofHeightAt(b: Buffer): number {
  let i = 2;
  while (i + 4 < b.length) {
    if (b[i] !== 0xff) throw new Error("bad JPEG marker walk");
    const m = b[i + 1]!;
    if (m === 0xff) {
      i++;
      continue;
    }
    const len = b.readUInt16BE(i + 2);
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) return i + 5;
    i += 2 + len;
  }
  throw new Error("no SOF segment");
}

export function loadImages(): ImageFile[] {
  const dir = resolve(REPO_ROOT, "data/images");
  return readdirSync(dir)
    .filter((f) => /\.(jpe?g|png)$/i.test(f))
    .sort()
    .map((f) => {
      const bytes = readFileSync(resolve(dir, f));
      const path = `data/images/${f}`;
      if (extname(f).toLowerCase() === ".png") {
        const iend = bytes.lastIndexOf(Buffer.from("IEND", "ascii"));
        return { path, bytes, type: "png" as const, safeEnd: iend - 4 - 12, dimsAt: 16 };
      }
      const eoi = bytes.lastIndexOf(Buffer.from([0xff, 0xd9]));
      return { path, bytes, type: "jpeg" as const, safeEnd: eoi - 16, dimsAt: jpegSofHeightAt(bytes) };
    });
}

export const fileSpec = (img: ImageFile, start?: number, end?: number): BodySpec => ({
  kind: "file",
  path: img.path,
  ...(start !== undefined ? { start } : {}),
  ...(end !== undefined ? { end } : {}),
});
export const mediaOf = (img: ImageFile) => (img.type === "png" ? "image/png" : "image/jpeg");

/** The small JPEG most cases send where a valid image is wanted. */
export function smallJpeg(images: readonly ImageFile[]): ImageFile {
  return images.find((i) => i.path.endsWith("kite-sky-small.jpg")) ?? images[0]!;
}
