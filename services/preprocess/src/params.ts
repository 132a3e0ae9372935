/** Parameters of the preprocess node. */
import { defineParams, param } from "../../../runtime/params.ts";

export default defineParams({
  INFER_SUBJECT: param.subject("infer's run subject: where image tensors go."),
  LABELS_SUBJECT: param.subject("infer's labels subject: the class names of the model's rows."),
  PREPROCESS_MODE: param
    .oneOf(["fast", "exact"], "fast: sharp (libvips). exact: bit-exact port of Pillow's GaussianBlur + BILINEAR.")
    .default("fast"),
  MAX_INPUT_PIXELS: param
    .number("Largest decoded image, in pixels (a pixel bomb is PAYLOAD_TOO_LARGE).", { int: true, min: 1 })
    .default(50_000_000),
  MAX_INPUT_BYTES: param.number("Largest encoded image, in bytes.", { int: true, min: 1 }).default(8 * 1024 * 1024),
});
