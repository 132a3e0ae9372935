/**
 * Image bytes -> the pixels the model sees: uint8 RGB, CHW, shape (3, 224, 224), which is what travels to infer
 * (a quarter of the bytes of float32; infer normalises them). {@link Preprocessor.toTensor} also gives the
 * normalised float32 tensor, with the same arithmetic (subjects/image-normalization.ts).
 *
 * The reference (Python, Pillow 9.4) is
 *   Image.open(bytes).convert("RGB") -> GaussianBlur(1.0) -> resize((224, 224), BILINEAR)
 *   -> float32 / 255 -> CHW -> (x - mean) / std
 * and everything up to the resize is integer (uint8) work, so the pixels carry all of it.
 *
 * Two modes:
 * - `exact`: sharp decodes; a TypeScript port of Pillow's blur and resize (./pil-exact.ts) runs in a pool
 *   of worker threads (./exact-pool.ts). The tensor is bit-identical to the reference (golden sha256 in
 *   test/fixtures/golden). ~10-15 ms of CPU per photo.
 * - `fast`: sharp does everything: decode + Gaussian blur (sigma 1) in one pipeline, then the
 *   antialiased linear resize in a second one (sharp runs operations in a fixed order, resize before
 *   blur, so one pipeline would blur the small image). Not bit-exact (uint8 levels off by a few; libvips'
 *   Gaussian is not Pillow's extended box blur), but on the golden set the model's top-5 is the
 *   reference's, in order, with scores within 0.0073. About half the CPU of `exact`, all of it in
 *   libvips on libuv's thread pool (only the 224x224 HWC -> CHW reordering runs on the event loop).
 *
 * Decoding matches `Image.open().convert("RGB")`: first frame only (GIF, animated WebP, multi-page
 * TIFF), alpha dropped without compositing, grey / palette / 16-bit inputs become 8-bit RGB, no EXIF
 * auto-orientation and no ICC colour management (Pillow applies neither; sharp converts through an
 * embedded profile unless `ignoreIcc`, which moved one golden image, a camera JPEG, off the reference).
 * Known differences from Pillow: CMYK JPEGs (Pillow's naive CMYK->RGB vs libvips) and 16-bit grey PNGs
 * (scaled to 8 bits here, clipped by Pillow).
 *
 * Errors are {@link GraphError}s: PAYLOAD_TOO_LARGE (bytes or header pixel count over the limits; a
 * decompression bomb is refused from its header, never decoded), INVALID_IMAGE (empty, corrupt,
 * truncated or unsupported bytes), DEADLINE_EXCEEDED (the signal aborted), UNAVAILABLE (closed).
 * No decoder message escapes: the library error is kept as `cause` only.
 */
import { availableParallelism } from "node:os";
import sharp, { type Metadata, type OutputInfo, type Sharp, type SharpOptions } from "sharp";
import { GraphError } from "../../../subjects/errors.ts";
import { hwcToChw, normalizeChw } from "../../../subjects/image-normalization.ts";
import { createExactPool, deadlineExceeded } from "./exact-pool.ts";
import { MODEL_INPUT_SIZE } from "./pil-exact.ts";

sharp.cache(false);

export const PreprocessMode = {
  FAST: "fast",
  EXACT: "exact",
} as const;
export type PreprocessMode = (typeof PreprocessMode)[keyof typeof PreprocessMode];

/** Shape of one output tensor: channels, height, width. */
export const TENSOR_SHAPE = [3, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE] as const;
/** Number of values in one output tensor (3 * 224 * 224): bytes of the pixels, floats of the normalised tensor. */
export const TENSOR_LENGTH = 3 * MODEL_INPUT_SIZE * MODEL_INPUT_SIZE;

/** Gaussian standard deviation of the reference blur (`GaussianBlur(radius=1.0)`: Pillow's radius is sigma). */
const BLUR_SIGMA = 1.0;

/**
 * Container formats accepted. Pillow 9.4 (the reference) reads all of them; others that sharp could
 * read are refused: SVG and PDF are documents to render rather than images (and an XML attack
 * surface), HEIF/AVIF and JPEG XL have no Pillow 9.4 decoder, the rest are not photo formats.
 */
const ACCEPTED_FORMATS: ReadonlySet<string> = new Set(["jpeg", "png", "webp", "gif", "tiff"]);

export interface PreprocessorOptions {
  readonly mode: PreprocessMode;
  /** Largest accepted width * height, read from the header before decoding. */
  readonly maxInputPixels: number;
  /** Largest accepted encoded size in bytes. */
  readonly maxInputBytes: number;
  /** Worker threads of the `exact` mode; defaults to the number of CPUs. Ignored in `fast` mode. */
  readonly exactWorkers?: number;
}

export interface Preprocessor {
  readonly mode: PreprocessMode;
  /**
   * Decodes and transforms one encoded image into fresh uint8 RGB pixels, CHW (3, 224, 224): what infer's `run`
   * takes as a uint8 tensor. Rejects with a GraphError only.
   */
  toPixels(bytes: Uint8Array, signal?: AbortSignal): Promise<Uint8Array>;
  /**
   * {@link toPixels}, normalised: a fresh (3, 224, 224) float32 tensor (its own ArrayBuffer, byteOffset 0, so
   * `new Uint8Array(t.buffer)` is a float32 wire payload). Rejects with a GraphError only.
   */
  toTensor(bytes: Uint8Array, signal?: AbortSignal): Promise<Float32Array>;
  /** Stops the worker pool; pending and later calls reject with UNAVAILABLE. Idempotent. */
  close(): Promise<void>;
}

function validateOptions(opts: PreprocessorOptions): void {
  if (opts.mode !== PreprocessMode.FAST && opts.mode !== PreprocessMode.EXACT) {
    throw new TypeError(`unknown preprocess mode: ${String(opts.mode)}`);
  }
  for (const key of ["maxInputPixels", "maxInputBytes"] as const) {
    const v = opts[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`${key} must be a positive integer, got ${v}`);
  }
  if (opts.exactWorkers !== undefined && (!Number.isSafeInteger(opts.exactWorkers) || opts.exactWorkers < 1)) {
    throw new TypeError(`exactWorkers must be a positive integer, got ${opts.exactWorkers}`);
  }
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw deadlineExceeded(signal);
}

/** Maps a sharp/libvips failure to a GraphError with a safe message; the original stays as `cause`. */
function decodeError(err: unknown, maxInputPixels: number): GraphError {
  if (err instanceof GraphError) return err;
  const message = err instanceof Error ? err.message : "";
  if (/pixel limit/i.test(message)) {
    return new GraphError("PAYLOAD_TOO_LARGE", "image has more pixels than allowed", {
      details: { maxInputPixels },
      cause: err,
    });
  }
  return new GraphError(
    "INVALID_IMAGE",
    "the bytes are not a decodable image (corrupt, truncated or unsupported format)",
    { cause: err },
  );
}

interface DecodeLimits {
  readonly maxInputPixels: number;
  readonly maxInputBytes: number;
}

interface OpenedImage {
  /** Decodes to 8-bit sRGB, alpha removed. */
  readonly image: Sharp;
  readonly hasAlpha: boolean;
}

/**
 * Size checks on the encoded bytes and on the header (no pixel is decoded), then a sharp pipeline
 * that decodes the first frame to 8-bit sRGB without alpha.
 */
async function openImage(
  bytes: Uint8Array,
  limits: DecodeLimits,
  signal: AbortSignal | undefined,
): Promise<OpenedImage> {
  throwIfAborted(signal);
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) {
    throw new GraphError("INVALID_IMAGE", "the image is empty");
  }
  if (bytes.length > limits.maxInputBytes) {
    throw new GraphError("PAYLOAD_TOO_LARGE", "image is larger than allowed", {
      details: { bytes: bytes.length, maxInputBytes: limits.maxInputBytes },
    });
  }
  const inputOptions: SharpOptions = {
    failOn: "error",
    limitInputPixels: limits.maxInputPixels,
    pages: 1,
    page: 0,
    autoOrient: false,
    ignoreIcc: true,
  };
  let meta: Metadata;
  try {
    // Header only: the pixel limit is checked below with the dimensions in the error details.
    meta = await sharp(bytes, { ...inputOptions, limitInputPixels: false }).metadata();
  } catch (err) {
    throw decodeError(err, limits.maxInputPixels);
  }
  throwIfAborted(signal);
  if (meta.format === undefined || !ACCEPTED_FORMATS.has(meta.format)) {
    throw new GraphError("INVALID_IMAGE", "unsupported image format", {
      details: { format: meta.format ?? "unknown" },
    });
  }
  const width = meta.width;
  const height = meta.pageHeight ?? meta.height;
  if (!width || !height) throw new GraphError("INVALID_IMAGE", "the image header has no dimensions");
  if (width * height > limits.maxInputPixels) {
    throw new GraphError("PAYLOAD_TOO_LARGE", "image has more pixels than allowed", {
      details: { width, height, maxInputPixels: limits.maxInputPixels },
    });
  }
  return { image: sharp(bytes, inputOptions).removeAlpha().toColourspace("srgb"), hasAlpha: meta.hasAlpha === true };
}

interface RawRgb {
  readonly data: Buffer;
  readonly width: number;
  readonly height: number;
}

async function toRawRgb(pipeline: Sharp, maxInputPixels: number): Promise<RawRgb> {
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await pipeline.raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw decodeError(err, maxInputPixels);
  }
  const { data, info } = out;
  if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
    throw new GraphError("INTERNAL", "decoder produced an unexpected pixel layout", {
      details: { channels: info.channels, width: info.width, height: info.height, bytes: data.length },
    });
  }
  return { data, width: info.width, height: info.height };
}

const rawInput = (img: RawRgb): SharpOptions => ({
  raw: { width: img.width, height: img.height, channels: 3 },
  limitInputPixels: false,
});

/**
 * `fast`: sharp blur, then (second pipeline) sharp's antialiased linear resize, then HWC -> CHW.
 * An image with alpha is decoded to RGB first: sharp blurs premultiplied RGBA and removes the alpha
 * only at the end, which would change the colours (10 -> 7 at alpha 0.25) where Pillow just drops it.
 */
async function fastPixels(
  bytes: Uint8Array,
  limits: DecodeLimits,
  signal: AbortSignal | undefined,
): Promise<Uint8Array> {
  const { image, hasAlpha } = await openImage(bytes, limits, signal);
  let blurred: RawRgb;
  if (hasAlpha) {
    const rgb = await toRawRgb(image, limits.maxInputPixels);
    throwIfAborted(signal);
    blurred = await toRawRgb(sharp(rgb.data, rawInput(rgb)).blur(BLUR_SIGMA), limits.maxInputPixels);
  } else {
    blurred = await toRawRgb(image.blur(BLUR_SIGMA), limits.maxInputPixels);
  }
  throwIfAborted(signal);
  let resized: Buffer;
  try {
    resized = await sharp(blurred.data, rawInput(blurred))
      .resize({ width: MODEL_INPUT_SIZE, height: MODEL_INPUT_SIZE, fit: "fill", kernel: "linear" })
      .raw()
      .toBuffer();
  } catch (err) {
    throw new GraphError("INTERNAL", "resize failed", { cause: err });
  }
  throwIfAborted(signal);
  if (resized.length !== TENSOR_LENGTH) {
    throw new GraphError("INTERNAL", "resize produced an unexpected pixel layout", {
      details: { bytes: resized.length },
    });
  }
  return hwcToChw(resized, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE);
}

/** Creates a preprocessor; in `exact` mode its worker threads start now (they load in the background). */
export function createPreprocessor(opts: PreprocessorOptions): Preprocessor {
  validateOptions(opts);
  const limits: DecodeLimits = { maxInputPixels: opts.maxInputPixels, maxInputBytes: opts.maxInputBytes };
  const mode = opts.mode;
  let closed = false;
  const pool = mode === PreprocessMode.EXACT ? createExactPool(opts.exactWorkers ?? availableParallelism()) : undefined;

  const exactPixels = async (bytes: Uint8Array, signal: AbortSignal | undefined): Promise<Uint8Array> => {
    const rgb = await toRawRgb((await openImage(bytes, limits, signal)).image, limits.maxInputPixels);
    throwIfAborted(signal);
    return pool!.run(rgb.data, rgb.width, rgb.height, signal);
  };

  const toPixels = async (bytes: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> => {
    if (closed) throw new GraphError("UNAVAILABLE", "preprocessor is closed");
    try {
      return mode === PreprocessMode.EXACT ? await exactPixels(bytes, signal) : await fastPixels(bytes, limits, signal);
    } catch (err) {
      throw err instanceof GraphError ? err : new GraphError("INTERNAL", "preprocessing failed", { cause: err });
    }
  };

  return {
    mode,
    toPixels,
    async toTensor(bytes, signal) {
      const pixels = await toPixels(bytes, signal);
      return normalizeChw(pixels, new Float32Array(pixels.length));
    },
    async close() {
      closed = true;
      await pool?.close();
    },
  };
}
