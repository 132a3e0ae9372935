/** HTTP Content-Types no parser takes, or that the classify endpoint's media type rule refuses. */
import type { BodySpec } from "../../test/fixtures/corpus/format.ts";
import { E, json, oneOf, type Corpus } from "./builder.ts";
import { fileSpec, smallJpeg, type ImageFile } from "./image-files.ts";

export function httpContentTypes(c: Corpus, images: ImageFile[]): void {
  const small = smallJpeg(images);
  const bodies: [string, BodySpec][] = [
    ["a valid JPEG", fileSpec(small)],
    ["random bytes", c.randomNoMagic(2048)],
    ["a JSON request", json({ image_url: "http://127.0.0.1/cat.jpg" })],
  ];
  const noParser = [
    "text/plain",
    "text/plain; charset=utf-8",
    "text/csv",
    "text/html",
    "application/xml",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=----corpus",
    "application/pdf",
    "video/mp4",
    "audio/wav",
    "application/javascript",
    "font/woff2",
    "imagejpeg",
    "image",
    "jpeg",
    "application/octet",
    "application/octet-streamx",
    "x-image/jpeg",
    "*/*",
    "application/problem+json",
    "application/jsonx",
    "application/ld+json",
    "application/x-ndjson",
    "message/http",
  ];
  for (const ct of noParser) {
    const [what, body] = c.pick(bodies);
    c.http("wrong-content-type", `${what} sent as ${JSON.stringify(ct)}`, {
      method: "POST",
      path: "/classify",
      headers: { "content-type": ct },
      body,
      expect: E("UNSUPPORTED_MEDIA_TYPE"),
    });
  }
  // parsed as an image by the ingress, then refused by the endpoint's media type rule
  for (const ct of [
    "image/*",
    "image/",
    "image/jp eg",
    "image/jpeg, image/png",
    `image/jpeg; x=${"y".repeat(300)}`,
    "image/j\u00e9peg",
    "image/jpeg\u00a0",
  ]) {
    c.http("wrong-content-type", `a valid JPEG sent as ${JSON.stringify(ct.slice(0, 40))}`, {
      method: "POST",
      path: "/classify",
      headers: { "content-type": ct },
      body: fileSpec(small),
      expect: E("UNSUPPORTED_MEDIA_TYPE"),
    });
  }
  // declared JSON, not JSON
  for (const ct of ["application/json", "application/json; charset=utf-8", "Application/JSON"]) {
    c.http("wrong-content-type", `a JPEG sent as ${ct}`, {
      method: "POST",
      path: "/classify",
      headers: { "content-type": ct },
      body: fileSpec(small),
      expect: E("BAD_REQUEST"),
    });
  }
  c.http("wrong-content-type", "an empty application/json body", {
    method: "POST",
    path: "/classify",
    headers: { "content-type": "application/json" },
    body: { kind: "empty" },
    expect: E("BAD_REQUEST"),
  });
  c.http("wrong-content-type", "an empty image/jpeg body", {
    method: "POST",
    path: "/classify",
    headers: { "content-type": "image/jpeg" },
    body: { kind: "empty" },
    expect: E("INVALID_IMAGE"),
  });
  c.http("wrong-content-type", "a JPEG with no Content-Type", {
    method: "POST",
    path: "/classify",
    body: fileSpec(small),
    expect: oneOf("UNSUPPORTED_MEDIA_TYPE", "BAD_REQUEST"),
  });
  c.http("wrong-content-type", "a JPEG with an empty Content-Type", {
    method: "POST",
    path: "/classify",
    headers: { "content-type": "" },
    body: fileSpec(small),
    expect: oneOf("UNSUPPORTED_MEDIA_TYPE", "BAD_REQUEST"),
  });
  c.http("wrong-content-type", "no body and no Content-Type", {
    method: "POST",
    path: "/classify",
    body: { kind: "empty" },
    expect: E("BAD_REQUEST"),
  });
}
