/** Bad NATS header values (Graph-Deadline, Graph-Shape, Graph-Dtype, Content-Type), and stray headers made of them. */
import type { Corpus } from "./builder.ts";
import { ODD_TOP_K } from "./numbers.ts";

export const DEADLINE_JUNK = [
  "abc",
  "NaN",
  "Infinity",
  "-Infinity",
  "deadline",
  "\u0661\u0662\u0663",
  "--",
  "null",
  "\uff11\uff12\uff13",
  "soon",
  "[]",
];
export const DEADLINE_ODD = [
  "0x",
  "0x10",
  "1.5",
  "1e3",
  "+5",
  "0b1",
  "0o7",
  "-1",
  "-0",
  "12 34",
  "1_000",
  "-1577836800000",
  "1e-3",
];
export const DEADLINE_PAST = ["0", "1", "1000000000000", "1577836799999", "000000000000001"];
export const DEADLINE_FAR = [
  "99999999999999",
  "8640000000000001",
  "9007199254740993",
  "1e20",
  "253402300800000",
  "1.7976931348623157e308",
  "1e400",
  "99999999999999999999999",
];
export const BAD_SHAPES = [
  "0x1,3,224,224",
  "1x3x224x224",
  "1,3,224",
  "3,224,224",
  "1,3,224,224,1",
  "2,3,224,224",
  "1,224,224,3",
  "0,3,224,224",
  "-1,3,224,224",
  "1.0,3,224,224",
  "1e0,3,224,224",
  "+1,3,224,224",
  "1,3,224,224,",
  ",1,3,224,224",
  "1,,3,224,224",
  "1;3;224;224",
  "[1,3,224,224]",
  "\uff11,3,224,224",
  "1,3,224,224,1,1,1,1,1",
  "9999999999,3,224,224",
  "4294967297,3,224,224",
  "NaN,3,224,224",
  "Infinity,3,224,224",
  "1,3,224,224 extra",
  "1,3,224,225",
  "1,3,0,224",
  "1,3,224,224\u0000",
  "224",
  "1",
  ",",
  "1,3,224,2\u0662\u0664",
  `1,3,224,${"9".repeat(300)}`,
];
export const BAD_DTYPES = [
  "float64",
  "float16",
  "FLOAT32",
  "Float32",
  "fp32",
  "f32",
  "int8",
  "UINT8",
  "uint16",
  "u8",
  "bfloat16",
  "float32;",
  "float",
  "double",
  "float32,float32",
  "\u0066loat32\u0301",
];
export const BAD_CONTENT_TYPES = [
  "text/plain",
  "application/json",
  "image",
  "image/",
  "/jpeg",
  "imagejpeg",
  "image/jpeg, image/png",
  `image/jpeg;${"a".repeat(300)}`,
  "application/octet-streamx",
  "multipart/form-data",
  "video/mp4",
  "x-image/jpeg",
  "image/j\u00e9peg",
  "image/*",
  "*/*",
  "image/jp eg",
  "application/x-www-form-urlencoded",
  "text/html; charset=utf-8",
  "image\\jpeg",
  "image/jpeg\u0000",
];

export function tensorHeaders(shape: string | undefined, dtype: string | undefined): Record<string, string> {
  const h: Record<string, string> = {};
  if (shape !== undefined) h["Graph-Shape"] = shape;
  if (dtype !== undefined) h["Graph-Dtype"] = dtype;
  return h;
}

/** Stray headers that mean nothing to a JSON endpoint; a bad body's code must not change. */
export function strayHeaders(c: Corpus): Record<string, string> {
  const h: Record<string, string> = {};
  if (c.rand() < 0.5) h["Graph-Top-K"] = c.pick(ODD_TOP_K.filter(Boolean));
  if (c.rand() < 0.5) h["Graph-Shape"] = c.pick(BAD_SHAPES);
  if (c.rand() < 0.5) h["Graph-Dtype"] = c.pick(BAD_DTYPES);
  if (c.rand() < 0.5) h["Content-Type"] = c.pick(BAD_CONTENT_TYPES);
  if (c.rand() < 0.4) h["Graph-Deadline"] = c.pick([...DEADLINE_JUNK, ...DEADLINE_FAR]);
  return h;
}
