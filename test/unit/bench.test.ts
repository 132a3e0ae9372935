/**
 * The pure parts of `servegraph bench`: histogram scraping, batch mixes, percentiles, stage limits, targets, passes
 * merged, the graph as a fraction of the one-process composition, infer's ceiling beside the bare responder,
 * table, JSON and chart.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { addBatches, batchMix } from "../../tools/perf/bench/batches.ts";
import { compareWithOneProcess, mergePasses, type PassSample } from "../../tools/perf/bench/compare.ts";
import {
  benchPixels,
  inferGoals,
  inferRows,
  type InferLevel,
  type InferReport,
} from "../../tools/perf/bench/infer-target.ts";
import { startCpuSample } from "../../tools/perf/bench/cpu.ts";
import { percentile, summarize, type PassedLevel } from "../../tools/perf/bench/load.ts";
import { addHistograms, diffHistogram, parseHistogram } from "../../tools/perf/bench/prom.ts";
import { modelRateForMix, stageLimit } from "../../tools/perf/bench/stages.ts";
import { escapeXml, niceScale, renderChart } from "../../tools/perf/bench/svg.ts";
import { servedTargets } from "../../tools/perf/bench/target.ts";
import {
  chartOf,
  comparisonLines,
  formatTable,
  inferLines,
  toJson,
  type BenchResult,
} from "../../tools/perf/bench/report.ts";

const METRICS = (
  c1: number,
  c2: number,
  c4: number,
  c8: number,
  sum: number,
) => `# HELP sg_batch_size Requests per forward pass.
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
  assert.deepEqual(
    d.buckets.map((b) => [b.range, b.count]),
    [
      ["1", 10],
      ["2", 0],
      ["3-4", 10],
      ["5-8", 0],
      ["9+", 0],
    ],
  );
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
  assert.equal(
    modelRateForMix(batches, [
      { size: 1, count: 2 },
      { size: 4, count: 1 },
    ]),
    150,
  );
  assert.equal(modelRateForMix(batches, [{ size: 8, count: 1 }]), undefined);
});

test("bench batches - each bucket stands for its upper end, capped at the batch limit", () => {
  const batches = {
    count: 7,
    requests: 40,
    meanSize: 40 / 7,
    histogram: [
      { range: "1", min: 1, max: 1, count: 2 },
      { range: "3-4", min: 3, max: 4, count: 0 },
      { range: "5-8", min: 5, max: 8, count: 3 },
      { range: "33+", min: 33, max: Infinity, count: 2 },
    ],
  };
  assert.deepEqual(batchMix(batches, 16), [
    { size: 1, count: 2 },
    { size: 8, count: 3 },
    { size: 16, count: 2 },
  ]);
  assert.deepEqual(batchMix(batches, 4), [
    { size: 1, count: 2 },
    { size: 4, count: 3 },
    { size: 4, count: 2 },
  ]);
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

const level = (c: number, rps: number, p50: number) => ({
  concurrency: c,
  durationS: 8,
  ok: Math.round(rps * 8),
  rps,
  latencyMs: { p50, p90: p50 * 2, p99: p50 * 4, mean: p50, max: p50 * 5 },
  non2xx: 0,
  errors: 0,
  timeouts: 0,
  statusCodes: { "200": Math.round(rps * 8) },
  cpu: { machineCores: 2, ownCores: 1.9, otherCores: 0.1 },
});
const passed = (c: number, rps: number, p50: number, cpuMsPerImage: number | null = 50): PassedLevel => ({
  ...level(c, rps, p50),
  cpuMsPerImage,
  passRps: [rps * 0.9, rps * 1.1],
});

function sample(): BenchResult {
  const graphLevels = [passed(1, 20, 40), passed(16, 30, 500)];
  const oneLevels = [passed(1, 22, 38.5), passed(16, 32, 480)];
  return {
    version: 2,
    startedAt: "2026-11-25T07:00:00.000Z",
    finishedAt: "2026-11-25T07:01:00.000Z",
    command: "servegraph bench",
    commit: null,
    machine: {
      cpuModel: "Test CPU <x>",
      logicalCores: 2,
      availableParallelism: 2,
      memoryGiB: 4,
      node: "v20.0.0",
      os: "linux",
      loadAvg1m: { start: 0.1, end: 1 },
      busyCoresBefore: 0.05,
    },
    graph: {
      source: "started",
      ingressUrl: "http://127.0.0.1:1",
      replicas: { "greeter-proxy": 1 },
      tracing: false,
      loadGenerator: "autocannon",
    },
    settings: { durationS: 8, warmupS: 2, maxRequests: 1000, concurrency: [1, 16] },
    chain: {
      route: "GET /greeting/<name>",
      levels: [level(1, 600, 1.2), level(16, 2500, 5)],
      goals: {
        minRpsAtC16: 1484,
        maxP50MsAtC1: 2,
        seedRps: 742,
        rpsAtC16: 2500,
        p50MsAtC1: 1.2,
        rpsMet: true,
        p50Met: true,
      },
    },
    classify: {
      route: "POST /classify",
      imagesDir: "data/images",
      images: ["a.jpg"],
      maxBatchSize: 32,
      schedule: "2 passes of 4 s per level",
      levels: [
        { ...graphLevels[0]!, batches: null, fractionOfLimit: null, limitImagesPerS: null },
        {
          ...graphLevels[1]!,
          batches: { count: 10, requests: 40, meanSize: 4, histogram: [{ range: "3-4", min: 3, max: 4, count: 10 }] },
          fractionOfLimit: 0.6,
          limitImagesPerS: 50,
        },
      ],
      oneProcess: {
        what: "one process",
        url: "http://127.0.0.1:2",
        model: "m.onnx",
        executionProvider: "cpu",
        preprocessMode: "fast",
        intraOpNumThreads: 2,
        levels: oneLevels,
      },
      comparison: compareWithOneProcess(graphLevels, oneLevels),
    },
    stages: null,
    infer: null,
    warnings: [],
  };
}

const inferLevel = (
  series: "infer" | "bare",
  dtype: "uint8" | "float32",
  c: number,
  rps: number,
  serverCpuMsPerRequest: number | null,
): InferLevel => ({
  concurrency: c,
  durationS: 3,
  ok: Math.round(rps * 3),
  rps,
  latencyMs: rps > 0 ? { p50: (1000 * c) / rps, p90: 2, p99: 3, mean: 1, max: 4 } : null,
  errors: 0,
  errorCodes: {},
  series,
  dtype,
  requestBytes: dtype === "uint8" ? 150528 : 602112,
  serverCpuMsPerRequest,
  clientCpuMsPerRequest: 0.5,
  cpu: { machineCores: 2, ownCores: 1.8, otherCores: 0.2 },
  batches: series === "infer" ? { count: 10, requests: 40, meanSize: 4, histogram: [] } : null,
});

function inferReport(): InferReport {
  const levels = [
    inferLevel("infer", "uint8", 1, 300, 1.5),
    inferLevel("bare", "uint8", 1, 600, 0.5),
    inferLevel("infer", "float32", 1, 100, 4),
    inferLevel("bare", "float32", 1, 200, 2),
    inferLevel("infer", "uint8", 16, 900, 0.8),
    inferLevel("bare", "uint8", 16, 1200, 0.4),
    inferLevel("infer", "float32", 16, 150, 3),
    inferLevel("bare", "float32", 16, 0, null),
  ];
  return {
    subject: "sg.v1.infer.run",
    model: "/x/trivial-generated-seed0.onnx",
    executionProvider: "cpu",
    maxBatchSize: 32,
    replicas: 1,
    requestBytes: { uint8: 150528, float32: 602112 },
    replyBytes: 4000,
    client: "call",
    responder: "bare",
    levels,
    goals: inferGoals(levels),
  };
}

test("bench report - the table shows every level, the goals and the batch histogram", () => {
  const t = formatTable(sample());
  assert.match(t, /Test CPU <x>, 2 logical cores/);
  assert.match(t, /goal >= 1484 req\/s at C=16 .*: met \(2500\.0\)/);
  assert.match(t, /p50 < 2 ms at C=1: met \(1\.20 ms\)/);
  assert.match(t, /3-4:10/);
  assert.match(t, /60%/);
  assert.match(t, /graph vs the one-process composition \(cpu, 2 intra-op threads, preprocess fast/);
  assert.match(t, /one-process levels:/);
  assert.match(t, /27\.0 \/ 33\.0/); // the passes of the graph's C=16 level
  assert.doesNotMatch(t, /^infer /m);
});

test("bench report - the comparison rows give the fraction, the p50 difference and CPU per image, then the targets", () => {
  const lines = comparisonLines(sample().classify!.comparison!);
  assert.match(lines[0]!, /conc\s+graph\/s\s+one-proc\/s\s+graph\/one\s+graph p50\s+one p50\s+p50 diff/);
  assert.match(lines[1]!, /^\s+1\s+20\.0\s+22\.0\s+0\.91x\s+40\.00\s+38\.50\s+\+1\.50\s+50\.00\s+50\.00$/);
  assert.match(lines[2]!, /^\s+16\s+30\.0\s+32\.0\s+0\.94x\s+500\.00\s+480\.00\s+\+20\.00/);
  assert.match(lines[3]!, /goal graph >= 0\.9x one-process at C=16: met \(0\.94x\)/);
  assert.match(lines[4]!, /goal p50 at C=1 within 3 ms of one-process: met \(\+1\.50 ms\)/);
  const none = comparisonLines(compareWithOneProcess([passed(4, 10, 5)], [passed(4, 20, 4)]));
  assert.match(none.join("\n"), /C=16: not measured/);
  assert.match(none.join("\n"), /C=1 within 3 ms of one-process: not measured/);
});

test("bench report - infer's rows pair it with the bare responder, uint8 first, and state the targets", () => {
  const lines = inferLines(inferReport());
  assert.equal(lines.length, 1 + 4 + 2);
  assert.match(lines[1]!, /^uint8\s+1 \|\s+300\.0 .*\|\s+600\.0 .*\|\s+50%/);
  assert.match(lines[2]!, /^uint8\s+16 \|\s+900\.0\s+\S+\s+\S+\s+0\.80\s+4\.0 \|\s+1200\.0 .*\|\s+75%/);
  assert.match(lines[3]!, /^float32\s+1 \|/);
  assert.match(lines[4]!, /^float32\s+16 \|\s+150\.0 .*\|\s+0\.0\s+-\s+-\s+- \|\s+- /); // a bare level with no answers: no latency, no fraction
  assert.match(lines[5]!, /goal >= 800 images\/s with uint8 input \(best level, C=16\): met \(900\.0\)/);
  assert.match(lines[6]!, /goal <= 1 ms of infer CPU per image at that level: met \(0\.80 ms\)/);
  const r = sample();
  r.infer = inferReport();
  const t = formatTable(r);
  assert.match(
    t,
    /infer {2}sg\.v1\.infer\.run straight over NATS \(model \/x\/trivial-generated-seed0\.onnx on cpu, max batch 32, 1 replica; 150528 B uint8/,
  );
  assert.match(chartOf(r), /infer: sg\.v1\.infer\.run \(uint8\)/);
});

test("bench infer - the ceiling is the best uint8 level of infer, CPU per image judged there", () => {
  const g = inferReport().goals;
  assert.deepEqual(g, {
    minImagesPerS: 800,
    maxCpuMsPerImage: 1,
    imagesPerS: 900,
    atConcurrency: 16,
    cpuMsPerImage: 0.8,
    rateMet: true,
    cpuMet: true,
  });
  const slow = inferGoals([
    inferLevel("infer", "uint8", 1, 400, 2.5),
    inferLevel("bare", "uint8", 1, 5000, 0.1),
    inferLevel("infer", "float32", 1, 900, 0.5),
  ]);
  assert.equal(slow.imagesPerS, 400);
  assert.equal(slow.rateMet, false);
  assert.equal(slow.cpuMet, false);
  const none = inferGoals([inferLevel("bare", "uint8", 1, 500, 0.1)]);
  assert.equal(none.imagesPerS, null);
  assert.equal(none.rateMet, null);
  assert.equal(inferGoals([inferLevel("infer", "uint8", 1, 900, null)]).cpuMet, null);
});

test("bench infer - rows pair infer with the bare responder at each dtype and concurrency", () => {
  const rows = inferRows(inferReport().levels);
  assert.deepEqual(
    rows.map((r) => [r.dtype, r.concurrency, r.ofBare]),
    [
      ["uint8", 1, 0.5],
      ["uint8", 16, 0.75],
      ["float32", 1, 0.5],
      ["float32", 16, null],
    ],
  );
  assert.equal(inferRows([inferLevel("infer", "uint8", 4, 10, 1)])[0]!.bare, undefined);
});

test("bench infer - the pixels sent are the same bytes every run", () => {
  const a = benchPixels(1000);
  assert.deepEqual(a, benchPixels(1000));
  assert.notDeepEqual(a, benchPixels(1000, 7));
  assert.ok(new Set(a).size > 200, "spread over the byte values");
});

test("bench compare - passes merge: answers and time add, latencies pool, CPU averages over time", () => {
  const pass = (
    rps: number,
    durationS: number,
    lat: number[],
    otherCores: number,
    sutCpuS: number | null,
  ): PassSample => ({
    result: {
      concurrency: 4,
      durationS,
      ok: lat.length,
      rps,
      latencyMs: summarize(Float64Array.from(lat)),
      non2xx: 1,
      errors: 0,
      timeouts: 0,
      statusCodes: { "200": lat.length, "500": 1 },
    },
    latencies: Float64Array.from(lat),
    cpu: { machineCores: 2, ownCores: 2 - otherCores, otherCores },
    sutCpuS,
  });
  const m = mergePasses([pass(2, 1, [10, 20], 0, 0.1), pass(1, 3, [30, 40, 50], 0.4, 0.4)]);
  assert.equal(m.concurrency, 4);
  assert.equal(m.ok, 5);
  assert.equal(m.durationS, 4);
  assert.equal(m.rps, 5 / 4);
  assert.equal(m.latencyMs!.p50, 30);
  assert.equal(m.latencyMs!.max, 50);
  assert.equal(m.non2xx, 2);
  assert.deepEqual(m.statusCodes, { "200": 5, "500": 2 });
  assert.equal(m.cpu!.otherCores, 0.3); // (0 * 1 + 0.4 * 3) / 4
  assert.equal(m.cpuMsPerImage, 100); // 0.5 s over 5 answers
  assert.deepEqual(m.passRps, [2, 1]);
  assert.equal(mergePasses([pass(2, 1, [10], 0, null)]).cpuMsPerImage, null);
  assert.throws(() => mergePasses([]), RangeError);
});

test("bench compare - the graph as a fraction of the one-process composition, and the targets", () => {
  const c = compareWithOneProcess([passed(1, 9, 12), passed(16, 27, 300)], [passed(1, 10, 8), passed(16, 32, 250)]);
  assert.deepEqual(
    c.rows.map((r) => [r.concurrency, r.fraction, r.p50DiffMs]),
    [
      [1, 0.9, 4],
      [16, 27 / 32, 50],
    ],
  );
  assert.deepEqual(c.goals, {
    minFractionAtC16: 0.9,
    maxP50DiffMsAtC1: 3,
    fractionAtC16: 27 / 32,
    p50DiffMsAtC1: 4,
    fractionMet: false,
    p50Met: false,
  });
  const ok = compareWithOneProcess(
    [passed(1, 10, 10), passed(16, 29, 300)],
    [passed(1, 10, 8), passed(16, 32, 250)],
  ).goals;
  assert.equal(ok.fractionMet, true);
  assert.equal(ok.p50Met, true);
  // a one-process level that answered nothing: no fraction
  assert.equal(compareWithOneProcess([passed(16, 10, 1)], [passed(16, 0, 1)]).rows[0]!.fraction, null);
});

test("bench batches - two passes' batches add bucket by bucket", () => {
  const a = {
    count: 3,
    requests: 5,
    meanSize: 5 / 3,
    histogram: [
      { range: "1", min: 1, max: 1, count: 2 },
      { range: "3-4", min: 3, max: 4, count: 1 },
    ],
  };
  const b = {
    count: 2,
    requests: 9,
    meanSize: 4.5,
    histogram: [
      { range: "3-4", min: 3, max: 4, count: 1 },
      { range: "5-8", min: 5, max: 8, count: 1 },
    ],
  };
  const s = addBatches(a, b)!;
  assert.equal(s.count, 5);
  assert.equal(s.requests, 14);
  assert.equal(s.meanSize, 14 / 5);
  assert.deepEqual(
    s.histogram.map((h) => [h.range, h.count]),
    [
      ["1", 2],
      ["3-4", 2],
      ["5-8", 1],
    ],
  );
  assert.equal(a.histogram[1]!.count, 1, "inputs untouched");
  assert.equal(addBatches(null, b), b);
  assert.equal(addBatches(null, null), null);
});

test("bench report - JSON keeps three decimals and writes an open last bucket as null", () => {
  const r = sample();
  r.classify!.levels[1]!.batches!.histogram.push({ range: "33+", min: 33, max: Infinity, count: 0 });
  r.chain!.levels[0]!.rps = 600.123456;
  const back = JSON.parse(toJson(r)) as BenchResult;
  assert.equal(back.chain!.levels[0]!.rps, 600.123);
  assert.equal(back.classify!.levels[1]!.batches!.histogram[1]!.max, null);
  assert.equal(back.classify!.comparison!.rows[0]!.fraction, 0.909);
  assert.deepEqual(Object.keys(back), [
    "version",
    "startedAt",
    "finishedAt",
    "command",
    "commit",
    "machine",
    "graph",
    "settings",
    "chain",
    "classify",
    "stages",
    "infer",
    "warnings",
  ]);
});

test("bench chart - one panel per target, labelled axes, escaped text", () => {
  const svg = chartOf(sample());
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  assert.match(svg, /chain: GET \/greeting\/&lt;name&gt;/);
  assert.match(svg, /classify: POST \/classify/);
  assert.match(svg, /classify: one-process composition/);
  assert.match(svg, /one-process at C=16: 32\/s/);
  assert.match(svg, /throughput \(req\/s, bars\)/);
  assert.match(svg, /throughput \(images\/s, bars\)/);
  assert.match(svg, /latency \(ms, lines\)/);
  assert.match(svg, /concurrency \(connections, closed loop\)/);
  assert.match(svg, /Test CPU &lt;x&gt;/);
  assert.doesNotMatch(svg, /NaN|undefined/);
  const empty = renderChart({
    title: "t",
    subtitle: "s",
    panels: [{ title: "p", rateUnit: "req/s", levels: [{ concurrency: 1, rps: 0, p50Ms: null, p99Ms: null }] }],
  });
  assert.doesNotMatch(empty, /NaN|Infinity/);
});

test(
  "bench cpu - a busy bench process shows up as its own CPU, not as other processes'",
  { skip: existsSync("/proc/stat") ? false : "needs Linux /proc" },
  () => {
    const sample = startCpuSample([]);
    const end = performance.now() + 300;
    let x = 0;
    while (performance.now() < end) x += Math.sqrt(x + 1);
    const use = sample.stop();
    assert.ok(use && x > 0);
    assert.ok(use.ownCores > 0.5, `own ${use.ownCores}`);
    assert.ok(use.machineCores >= use.ownCores);
    assert.ok(Math.abs(use.otherCores - Math.max(0, use.machineCores - use.ownCores)) < 0.02);
  },
);
