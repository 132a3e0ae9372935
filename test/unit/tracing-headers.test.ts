import { test } from "node:test";
import assert from "node:assert/strict";
import { headers } from "@nats-io/transport-node";
import { natsHeaderGetter } from "../../runtime/tracing.ts";

test("tracing - trace context headers are read whatever their case (another client may send Traceparent)", () => {
  const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  for (const name of ["traceparent", "Traceparent", "TRACEPARENT"]) {
    const h = headers();
    h.set(name, tp);
    assert.equal(natsHeaderGetter.get(h, "traceparent"), tp, name);
  }
  const none = headers();
  none.set("Other", "x");
  assert.equal(
    natsHeaderGetter.get(none, "traceparent"),
    undefined,
    "a missing header is undefined, not an empty string",
  );
  assert.equal(natsHeaderGetter.get(undefined, "traceparent"), undefined);
});
