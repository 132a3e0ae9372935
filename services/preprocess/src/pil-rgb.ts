/** Interleaved 8-bit RGB images (HWC, 3 bytes per pixel, rows packed), as the Pillow ports take them. */

export function assertRgb(data: Uint8Array, width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`image dimensions must be positive integers, got ${width}x${height}`);
  }
  if (data.length !== width * height * 3) {
    throw new RangeError(`RGB data has ${data.length} bytes, expected ${width * height * 3} for ${width}x${height}`);
  }
}
