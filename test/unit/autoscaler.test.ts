/** The autoscaler's decision rule (ops/autoscaler.ts desiredCount): what count a reading asks for. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { desiredCount } from "../../ops/autoscaler.ts";

const inFlight = { metric: "inFlight", target: 8 } as const;
const queue = { metric: "queueDepth", target: 32 } as const;
const fill = { metric: "batchFill", target: 0.8 } as const;

test("autoscaler - inFlight and queueDepth ask for ceil(total / target) replicas, within [min, max]", () => {
  const r = { current: 1, floor: 1, max: 4, active: true };
  assert.equal(desiredCount(inFlight, { ...r, value: 0 }), 1, "never below min");
  assert.equal(desiredCount(inFlight, { ...r, value: 8 }), 1, "exactly the target per replica: no change");
  assert.equal(desiredCount(inFlight, { ...r, value: 9 }), 2);
  assert.equal(desiredCount(inFlight, { ...r, value: 23 }), 3);
  assert.equal(desiredCount(inFlight, { ...r, value: 1000 }), 4, "never above max");
  assert.equal(desiredCount(queue, { ...r, current: 2, value: 33 }), 2, "the total over all replicas, not per replica");
  assert.equal(desiredCount(queue, { ...r, current: 2, value: 10 }), 1, "down to what the load needs");
});

test("autoscaler - a min-0 node goes to zero only when it had nothing to do at all", () => {
  const r = { current: 1, floor: 0, max: 2 };
  assert.equal(desiredCount(inFlight, { ...r, value: 0, active: false }), 0, "idle: zero");
  assert.equal(
    desiredCount(inFlight, { ...r, value: 0, active: true }),
    1,
    "a request started between readings keeps one replica",
  );
  assert.equal(desiredCount(inFlight, { ...r, value: 0.5, active: true }), 1);
  assert.equal(
    desiredCount(inFlight, { ...r, current: 0, value: 3, active: true }),
    1,
    "requests held by the activator wake it",
  );
  assert.equal(
    desiredCount(inFlight, { ...r, value: 0, active: false, floor: 1 }),
    1,
    "without an activator the floor is 1",
  );
});

test("autoscaler - batchFill moves one step: up above the target, down below half of it, else stays", () => {
  const r = { current: 2, floor: 1, max: 4, active: true };
  assert.equal(desiredCount(fill, { ...r, value: 0.95 }), 3, "full batches: one more replica");
  assert.equal(
    desiredCount(fill, { ...r, value: 0.6 }),
    2,
    "between half the target and the target: no change (no flapping)",
  );
  assert.equal(desiredCount(fill, { ...r, value: 0.3 }), 1, "below half the target: one fewer");
  assert.equal(desiredCount(fill, { ...r, current: 4, value: 1 }), 4, "never above max");
  assert.equal(desiredCount(fill, { ...r, current: 1, value: 0 }), 1, "never below min");
  // n replicas at fill f < target/2 become n-1 at about f*n/(n-1) <= target: the step down does not ask to go back up.
  const n = 2;
  const f = 0.39;
  const after = (f * n) / (n - 1);
  assert.ok(after <= fill.target, "after a step down the fill stays at or below the target");
  assert.equal(desiredCount(fill, { ...r, current: n - 1, value: after }), n - 1);
});
