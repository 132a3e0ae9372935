import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { headers as natsHeaders, type Msg } from "@nats-io/transport-node";
import { ErrorCodes, ERROR_CODE_LIST, GraphError, codeForStatus, isErrorCode } from "../../subjects/errors.ts";
import { fromMsg, toBody, toHeaders } from "../../runtime/errors-wire.ts";

const docs = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");

test("errors - docs/errors.md documents every code with its status, and nothing else", () => {
  const documented = [...docs.matchAll(/^## ([A-Z_]+)$/gm)].map((m) => m[1]);
  assert.deepEqual(documented, ERROR_CODE_LIST);
  for (const code of ERROR_CODE_LIST) {
    const row = new RegExp(
      `\\| \\[${code}\\]\\(#${code.toLowerCase()}\\) \\| ${ErrorCodes[code].status} \\| ${ErrorCodes[code].retryable ? "yes" : "no"} \\|`,
    );
    assert.match(docs, row, `table row for ${code}`);
  }
});

test("errors - each section of docs/errors.md states its code's status, retryability and description", () => {
  for (const code of ERROR_CODE_LIST) {
    const { status, retryable, description } = ErrorCodes[code];
    const section = new RegExp(`^## ${code}\\n\\n(.*)$`, "m").exec(docs)?.[1];
    assert.equal(section, `Status ${status}${retryable ? ", retryable" : ""}. ${description}`, `section ${code}`);
  }
});

test("errors - every status is an HTTP error status and every code maps back from its own status family", () => {
  for (const code of ERROR_CODE_LIST) {
    const { status } = ErrorCodes[code];
    assert.ok(status >= 400 && status <= 599, `${code} ${status}`);
    assert.equal(ErrorCodes[codeForStatus(status)].status, status, `codeForStatus(${status}) keeps the status`);
  }
  assert.ok(isErrorCode("QUEUE_FULL"));
  assert.ok(!isErrorCode("toString"));
});

function asMsg(data: Uint8Array, h: ReturnType<typeof natsHeaders> | undefined): Msg {
  return {
    data,
    headers: h,
    subject: "x",
    sid: 1,
    reply: "",
    json: () => JSON.parse(new TextDecoder().decode(data)),
    string: () => new TextDecoder().decode(data),
    respond: () => true,
  } as unknown as Msg;
}

test("errors - toHeaders/fromMsg round-trip every code with details", () => {
  for (const code of ERROR_CODE_LIST) {
    const err = new GraphError(code, `bad\nthing ${code}`, { details: { n: 1 } });
    const h = toHeaders(err);
    assert.equal(h.get("Nats-Service-Error-Code"), String(ErrorCodes[code].status));
    assert.equal(h.get("Graph-Error"), code);
    assert.ok(!h.get("Nats-Service-Error").includes("\n"), "header values are single-line");
    const back = fromMsg(asMsg(toBody(err), h));
    assert.ok(back);
    assert.equal(back.code, code);
    assert.equal(back.status, err.status);
    assert.equal(back.retryable, err.retryable);
    assert.deepEqual(back.details, { n: 1 });
  }
});

test("errors - a reply without error headers is not an error; foreign ADR-32 errors map by status", () => {
  assert.equal(fromMsg(asMsg(new Uint8Array([1]), undefined)), undefined);
  assert.equal(fromMsg(asMsg(new Uint8Array([1]), natsHeaders())), undefined);
  const h = natsHeaders();
  h.set("Nats-Service-Error-Code", "429");
  h.set("Nats-Service-Error", "slow down");
  const e = fromMsg(asMsg(new TextEncoder().encode("not json"), h))!;
  assert.equal(e.code, "QUEUE_FULL");
  assert.equal(e.message, "slow down");
  // a Graph-Error code that disagrees with the numeric status is not trusted
  h.set("Graph-Error", "BAD_REQUEST");
  assert.equal(fromMsg(asMsg(new Uint8Array(0), h))!.code, "QUEUE_FULL");
});

test("errors - GraphError.from normalises unknown throwables without leaking their message", () => {
  const e = GraphError.from(new Error("password=hunter2 in stack"));
  assert.equal(e.code, "INTERNAL");
  assert.equal(e.message, "internal error");
  assert.equal(GraphError.from("a string").code, "INTERNAL");
  const same = new GraphError("NOT_FOUND", "x");
  assert.equal(GraphError.from(same), same);
  const abort = new Error("aborted");
  abort.name = "AbortError";
  assert.equal(GraphError.from(abort).code, "DEADLINE_EXCEEDED");
  assert.deepEqual(new GraphError("BAD_REQUEST", "m").toJSON(), { code: "BAD_REQUEST", message: "m" });
});
