/**
 * How one request's tensor becomes row `i` of a batch: uint8 pixels (CHW) are normalised straight into the batch
 * with the reference's float32 arithmetic (subjects/image-normalization.ts, bit-identical to the golden tensors);
 * float32 values, already normalised by the caller, are copied as they are. Both read the request bytes at any
 * byteOffset (nats.js hands out views into its read buffer) and write nothing outside the row.
 */
import { normalizeChw, TensorDtype } from "../../../subjects/index.ts";

/** Writes `data` (a checked tensor of `rowElems` elements of `dtype`) as row `i` of `batch`. */
export function writeBatchRow(
  batch: Float32Array,
  i: number,
  rowElems: number,
  data: Uint8Array,
  dtype: TensorDtype,
): void {
  const at = i * rowElems;
  if (at < 0 || at + rowElems > batch.length)
    throw new RangeError(`row ${i} is outside a batch of ${batch.length / rowElems} rows`);
  if (dtype === TensorDtype.uint8) {
    if (data.length !== rowElems) throw new RangeError(`uint8 row has ${data.length} bytes, expected ${rowElems}`);
    normalizeChw(data, batch, at);
  } else {
    if (data.length !== rowElems * 4)
      throw new RangeError(`float32 row has ${data.length} bytes, expected ${rowElems * 4}`);
    new Uint8Array(batch.buffer, batch.byteOffset + at * 4, rowElems * 4).set(data);
  }
}
