/** The pure parts of `servegraph bench`: histogram scraping, batch mixes, percentiles, stage limits, targets, table, JSON and chart. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { batchMix } from "../../ops/bench/batches.ts";
import { startCpuSample } from "../../ops/bench/cpu.ts";
import { percentile, summarize } from "../../ops/bench/load.ts";
import { addHistograms, diffHistogram, parseHistogram } from "../../ops/bench/prom.ts";
import { modelRateForMix, stageLimit } from "../../ops/bench/stages.ts";
import { escapeXml, niceScale, renderChart } from "../../ops/bench/svg.ts";
import { servedTargets } from "../../ops/bench/target.ts";
import { chartOf, formatTable, toJson, type BenchResult } from "../../ops/bench/report.ts";

const METRICS = (c1: number, c2: number, c4: number, c8: number, sum: number) => `# HELP sg_batch_size Requests per forward pass.
# TYPE sg_batch_size histogram
sg_batch_size_bucket{le="1",node="infer",replica="infer-1"} ${c1}
sg_batch_size_bucket{le="2",node="infer",replica="infer-1"} ${c2}
sg_batch_size_bucket{le="4",node="infer",replica="infer-1"} ${c4}
sg_batch_size_bucket{le="8",node="infer",replica="infer-1"} ${c8}
sg_batch_size_bucket{le="+Inf",node="infer",replica="infer-1"} ${c8}
sg_batch_size_sum{node="infer",replica="infer-1"} ${sum}
sg_batch_size_count{node="infer",replica="infer-1"} ${c8}
# HELP sg_batch_size_other not this one
sg_batch_size_other_bucket{le="1"} 99
`;

test("bench prom - parses a histogram and ignores metrics that only share its prefix", () => {
  const h = parseHistogram(METRICS(3, 5, 6, 7, 20), "sg_batch_size");
  assert.ok(h);
  assert.deepEqual(h.bounds, [1, 2, 4, 8, Infinity]);
  assert.deepEqual(h.cumulative, [3, 5, 6, 7, 7]);
  assert.equal(h.sum, 20);
  assert.equal(h.count, 7);
  assert.equal(parseHistogram("sg_other 1\n", "sg_batch_size"), undefined);
});

test("bench prom - the difference of two scrapes is a non-cumulative histogram of integer ranges", () => {
  const before = parseHistogram(METRICS(3, 5, 6, 7, 20), "sg_batch_size");
  const after = parseHistogram(METRICS(13, 15, 26, 27, 120), "sg_batch_size")!;
  const d = diffHistogram(before, after);
  assert.deepEqual(d.buckets.map((b) => [b.range, b.count]), [["1", 10], ["2", 0], ["3-4", 10], ["5-8", 0], ["9+", 0]]);
  assert.equal(d.count, 20);
  assert.equal(d.sum, 100);
});

test("bench prom - replicas add up bucket by bucket", () => {
  const a = parseHistogram(METRICS(1, 2, 3, 4, 10), "sg_batch_size")!;
  const b = parseHistogram(METRICS(10, 10, 10, 10, 10), "sg_batch_size")!;
  const s = addHistograms([a, b])!;
  assert.deepEqual(s.cumulative, [11, 12, 13, 14, 14]);
  assert.equal(s.count, 14);
  assert.equal(addHistograms([]), undefined);
});

test("bench load - nearest-rank percentiles and the latency summary", () => {
  const xs = Float64Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
  const s = summarize(xs)!;
  assert.equal(s.p50, 50);
  assert.equal(s.p90, 90);
  assert.equal(s.p99, 99);
  assert.equal(s.max, 100);
  assert.equal(s.mean, 50.5);
  assert.equal(percentile([7], 0.99), 7);
  assert.equal(summarize(new Float64Array(0)), null);
});

test("bench stages - CPU stages add their times, a GPU model overlaps with preprocessing", () => {
  assert.equal(Math.round(stageLimit(100, 100, false).imagesPerS), 50);
  assert.equal(stageLimit(100, 400, true).imagesPerS, 100);
  const batches = [
    { batchSize: 1, runs: 5, medianMs: 10, imagesPerS: 100 },
    { batchSize: 4, runs: 5, medianMs: 20, imagesPerS: 200 },
  ];
  // 2 batches of 1 (20 ms) + 1 batch of 4 (20 ms): 6 images in 40 ms
  assert.equal(modelRateForMix(batches, [{ size: 1, count: 2 }, { size: 4, count: 1 }]), 150);
  assert.equal(modelRateForMix(batches, [{ size: 8, count: 1 }]), undefined);
});

test("bench batches - each bucket stands for its upper end, capped at the batch limit", () => {
  const batches = {
    count: 7, requests: 40, meanSize: 40 / 7,
    histogram: [
      { range: "1", min: 1, max: 1, count: 2 },
      { range: "3-4", min: 3, max: 4, count: 0 },
      { range: "5-8", min: 5, max: 8, count: 3 },
      { range: "33+", min: 33, max: Infinity, count: 2 },
    ],
  };
  assert.deepEqual(batchMix(batches, 16), [{ size: 1, count: 2 }, { size: 8, count: 3 }, { size: 16, count: 2 }]);
  assert.deepEqual(batchMix(batches, 4), [{ size: 1, count: 2 }, { size: 4, count: 3 }, { size: 4, count: 2 }]);
  assert.deepEqual(batchMix(null, 16), []);
});

test("bench target - a target is served when the node behind its route has a replica", () => {
  assert.deepEqual(servedTargets({ ingress: 1, "greeter-proxy": 2, preprocess: 0 }), { chain: true, classify: false });
  assert.deepEqual(servedTargets({}), { chain: false, classify: false });
});

test("bench chart - niceScale rounds up to 1, 2, 2.5 or 5 steps", () => {
  assert.deepEqual(niceScale(2580), { max: 3000, step: 500 });
  assert.deepEqual(niceScale(43), { max: 50, step: 10 });
  assert.deepEqual(niceScale(0), { max: 1, step: 0.2 });
  assert.equal(escapeXml(`a<b & "c">`), "a&lt;b &amp; &quot;c&quot;&gt;");
});

function sample(): BenchResult {
  const level = (c: number, rps: number, p50: number) => ({
    concurrency: c, durationS: 8, ok: Math.round(rps * 8), rps, latencyMs: { p50, p90: p50 * 2, p99: p50 * 4, mean: p50, max: p50 * 5 },
    non2xx: 0, errors: 0, timeouts: 0, statusCodes: { "200": Math.round(rps * 8) },
    cpu: { machineCores: 2, ownCores: 1.9, otherCores: 0.1 },
  });
  return {
    version: 1, startedAt: "2026-11-25T07:00:00.000Z", finishedAt: "2026-11-25T07:01:00.000Z", command: "servegraph bench", commit: null,
    machine: { cpuModel: "Test CPU <x>", logicalCores: 2, availableParallelism: 2, memoryGiB: 4, node: "v20.0.0", os: "linux", loadAvg1m: { start: 0.1, end: 1 }, busyCoresBefore: 0.05 },
    graph: { source: "started", ingressUrl: "http://127.0.0.1:1", replicas: { "greeter-proxy": 1 }, tracing: false, loadGenerator: "autocannon" },
    settings: { durationS: 8, warmupS: 2, maxRequests: 1000, concurrency: [1, 16] },
    chain: {
      route: "GET /greeting/<name>", levels: [level(1, 600, 1.2), level(16, 2500, 5)],
      goals: { minRpsAtC16: 1484, maxP50MsAtC1: 2, seedRps: 742, rpsAtC16: 2500, p50MsAtC1: 1.2, rpsMet: true, p50Met: true },
    },
    classify: {
      route: "POST /classify", imagesDir: "data/images", images: ["a.jpg"], maxBatchSize: 32,
      levels: [{ ...level(16, 30, 500), batches: { count: 10, requests: 40, meanSize: 4, histogram: [{ range: "3-4", min: 3, max: 4, count: 10 }] }, fractionOfLimit: 0.6, limitImagesPerS: 50 }],
    },
    stages: null,
    warnings: [],
  };
}

test("bench report - the table shows every level, the goals and the batch histogram", () => {
  const t = formatTable(sample());
  assert.match(t, /Test CPU <x>, 2 logical cores/);
  assert.match(t, /goal >= 1484 req\/s at C=16 .*: met \(2500\.0\)/);
  assert.match(t, /p50 < 2 ms at C=1: met \(1\.20 ms\)/);
  assert.match(t, /3-4:10/);
  assert.match(t, /60%/);
});

test("bench report - JSON keeps three decimals and writes an open last bucket as null", () => {
  const r = sample();
  r.classify!.levels[0]!.batches!.histogram.push({ range: "33+", min: 33, max: Infinity, count: 0 });
  r.chain!.levels[0]!.rps = 600.123456;
  const back = JSON.parse(toJson(r)) as BenchResult;
  assert.equal(back.chain!.levels[0]!.rps, 600.123);
  assert.equal(back.classify!.levels[0]!.batches!.histogram[1]!.max, null);
  assert.deepEqual(Object.keys(back), ["version", "startedAt", "finishedAt", "command", "commit", "machine", "graph", "settings", "chain", "classify", "stages", "warnings"]);
});

test("bench chart - one panel per target, labelled axes, escaped text", () => {
  const svg = chartOf(sample());
  assert.ok(svg.startsWith("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  assert.match(svg, /chain: GET \/greeting\/&lt;name&gt;/);
  assert.match(svg, /classify: POST \/classify/);
  assert.match(svg, /throughput \(req\/s, bars\)/);
  assert.match(svg, /throughput \(images\/s, bars\)/);
  assert.match(svg, /latency \(ms, lines\)/);
  assert.match(svg, /concurrency \(connections, closed loop\)/);
  assert.match(svg, /Test CPU &lt;x&gt;/);
  assert.doesNotMatch(svg, /NaN|undefined/);
  const empty = renderChart({ title: "t", subtitle: "s", panels: [{ title: "p", rateUnit: "req/s", levels: [{ concurrency: 1, rps: 0, p50Ms: null, p99Ms: null }] }] });
  assert.doesNotMatch(empty, /NaN|Infinity/);
});

test("bench cpu - a busy bench process shows up as its own CPU, not as other processes'", { skip: existsSync("/proc/stat") ? false : "needs Linux /proc" }, () => {
  const sample = startCpuSample([]);
  const end = performance.now() + 300;
  let x = 0;
  while (performance.now() < end) x += Math.sqrt(x + 1);
  const use = sample.stop();
  assert.ok(use && x > 0);
  assert.ok(use.ownCores > 0.5, `own ${use.ownCores}`);
  assert.ok(use.machineCores >= use.ownCores);
  assert.ok(Math.abs(use.otherCores - Math.max(0, use.machineCores - use.ownCores)) < 0.02);
});
