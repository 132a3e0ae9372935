/** HTTP framing: oversized bodies, low-level header errors (Content-Length, Transfer-Encoding, sizes), wrong methods. */
import type { BodySpec, Expect, HttpCase } from "../../test/fixtures/corpus/format.ts";
import { ANY_4XX, E, json, oneOf, text, type Corpus } from "./builder.ts";
import { MAX_BODY_BYTES, MIB } from "./graph.ts";

export function httpOversized(c: Corpus): void {
  const post = (what: string, o: Partial<HttpCase> & { body: BodySpec; contentType: string; expect: Expect }): void =>
    c.http("oversized", what, {
      method: "POST",
      path: "/classify",
      headers: { "content-type": o.contentType },
      body: o.body,
      expect: o.expect,
      timeoutMs: 30_000,
      ...(o.chunked ? { chunked: true } : {}),
      ...(o.declaredLength ? { declaredLength: o.declaredLength } : {}),
    });
  post("image/jpeg body of 8 MiB + 1", {
    body: { kind: "fill", byte: 0xff, length: MAX_BODY_BYTES + 1 },
    contentType: "image/jpeg",
    expect: E("PAYLOAD_TOO_LARGE"),
  });
  post("chunked JSON body of 8 MiB + 64 KiB", {
    body: {
      kind: "concat",
      parts: [
        text('{"image_url":"http://127.0.0.1/'),
        { kind: "repeat", text: "a", count: MAX_BODY_BYTES + 65_536 },
        text('"}'),
      ],
    },
    contentType: "application/json",
    chunked: true,
    expect: E("PAYLOAD_TOO_LARGE"),
  });
  post("Content-Length of 1 GiB declared, 1 KiB sent", {
    body: { kind: "random", seed: c.seed(), length: 1024 },
    contentType: "image/jpeg",
    declaredLength: String(1024 * MIB),
    expect: E("PAYLOAD_TOO_LARGE"),
  });
  post("random image body of exactly 8 MiB (the limit)", {
    body: c.randomNoMagic(MAX_BODY_BYTES),
    contentType: "image/jpeg",
    expect: oneOf("INVALID_IMAGE", "PAYLOAD_TOO_LARGE"),
  });
}

export function httpLowLevel(c: Corpus): void {
  const body: BodySpec = text("0123456789");
  c.http("low-level", "Content-Length: abc", {
    method: "POST",
    path: "/classify",
    headers: { "content-type": "image/jpeg" },
    declaredLength: "abc",
    body,
    expect: ANY_4XX,
  });
  c.http("low-level", "Content-Length: -1", {
    method: "POST",
    path: "/classify",
    headers: { "content-type": "image/jpeg" },
    declaredLength: "-1",
    body,
    expect: ANY_4XX,
  });
  c.http("low-level", "Content-Length: 10, 20", {
    method: "POST",
    path: "/classify",
    headers: { "content-type": "image/jpeg" },
    declaredLength: "10, 20",
    body,
    expect: ANY_4XX,
  });
  c.http("low-level", "Transfer-Encoding chunked and Content-Length both", {
    method: "POST",
    path: "/classify",
    headers: { "content-type": "image/jpeg", "transfer-encoding": "chunked" },
    declaredLength: "10",
    body,
    expect: ANY_4XX,
  });
  c.http("low-level", "a 20,000-character request target", {
    method: "GET",
    path: `/greeting/${"x".repeat(20_000)}`,
    body: { kind: "empty" },
    expect: ANY_4XX,
  });
  const many: Record<string, string> = {};
  for (let i = 0; i < 120; i++) many[`x-corpus-${i}`] = "v".repeat(200);
  c.http("low-level", "120 headers of 200 bytes (24 KB of headers)", {
    method: "GET",
    path: "/greeting/ada",
    headers: many,
    body: { kind: "empty" },
    expect: ANY_4XX,
  });
}

export function httpMethods(c: Corpus): void {
  for (const [method, path] of [
    ["PUT", "/classify"],
    ["DELETE", "/classify"],
    ["GET", "/classify"],
    ["PATCH", "/greeting/ada"],
    ["POST", "/greeting/ada"],
    ["POST", "/process/hi?user_key=u1"],
    ["PUT", "/labels"],
    ["DELETE", "/process/hi?user_key=u1"],
    ["PROPFIND", "/classify"],
    ["TRACE", "/greeting/ada"],
  ] as const) {
    c.http("wrong-method", `${method} ${path}`, {
      method,
      path,
      headers: method === "GET" || method === "TRACE" ? {} : { "content-type": "application/json" },
      body: method === "GET" || method === "TRACE" ? { kind: "empty" } : json({ name: "ada" }),
      expect: ANY_4XX,
    });
  }
}
