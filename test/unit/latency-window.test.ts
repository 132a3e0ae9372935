import { test } from "node:test";
import assert from "node:assert/strict";
import { createLatencyWindow } from "../../runtime/latency-window.ts";

test("latency window - nearest-rank p50/p99 of the most recent durations; an empty window has none", () => {
  const w = createLatencyWindow(100);
  assert.deepEqual(w.percentiles(), { p50_ms: null, p99_ms: null });
  for (let i = 1; i <= 100; i++) w.record(i);
  assert.deepEqual(w.percentiles(), { p50_ms: 51, p99_ms: 100 });
  for (let i = 0; i < 100; i++) w.record(1000); // the old ones leave
  assert.deepEqual(w.percentiles(), { p50_ms: 1000, p99_ms: 1000 });
  assert.equal(w.count(), 100);
});
