/**
 * bench --baseline (ops/bench/baseline.ts): the figures read from each side's bench result, the ratios over the
 * passes and which of them are called out as regressions; and the baseline checkout made from a commit.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  compareFigures,
  figuresOf,
  formatComparison,
  prepareBaseline,
  BaselineError,
  type BaselineComparison,
} from "../../tools/perf/bench/baseline.ts";

const level = (c: number, rps: number, p50: number, p99: number, extra: Record<string, unknown> = {}) => ({
  concurrency: c,
  ok: 100,
  rps,
  latencyMs: { p50, p90: p50, p99, mean: p50, max: p99 },
  ...extra,
});

const result = (chainRps: number, chainP50: number, inferRps: number) => ({
  chain: { levels: [level(1, chainRps / 4, chainP50, 5), level(16, chainRps, chainP50 * 3, 12)] },
  classify: {
    levels: [level(4, 40, 90, 180)],
    oneProcess: { levels: [level(4, 45, 80, 150)] },
    comparison: { rows: [{ concurrency: 4, fraction: 40 / 45 }] },
  },
  infer: {
    levels: [
      level(16, inferRps, 14, 40, { series: "infer", dtype: "uint8" }),
      level(16, 1900, 7, 24, { series: "bare", dtype: "uint8" }),
    ],
  },
});

test("bench baseline - figures of a bench result: throughput, p50 and p99 per level and target; bare and one-process not judged", () => {
  const f = figuresOf(result(4000, 1, 1000));
  const find = (target: string, lvl: string, metric: string) =>
    f.find((x) => x.target === target && x.level === lvl && x.metric === metric);
  assert.equal(find("chain", "C=16", "req/s")?.value, 4000);
  assert.equal(find("chain", "C=16", "req/s")?.headline, true);
  assert.equal(find("chain", "C=1", "p50 ms")?.higherIsBetter, false);
  assert.equal(find("chain", "C=1", "p99 ms")?.headline, false);
  assert.equal(find("classify", "C=4", "images/s")?.value, 40);
  assert.equal(find("classify one-process", "C=4", "images/s")?.headline, false);
  assert.equal(find("classify graph / one-process", "C=4", "fraction")?.value, 40 / 45);
  assert.equal(find("infer", "uint8 C=16", "images/s")?.value, 1000);
  assert.equal(find("infer bare responder", "uint8 C=16", "req/s")?.headline, false);
  // infer's fraction of the bare responder in the same pass is a headline figure, as the split's cost is.
  assert.equal(find("infer / bare responder", "uint8 C=16", "fraction")?.value, 1000 / 1900);
  assert.equal(find("infer / bare responder", "uint8 C=16", "fraction")?.headline, true);
  const f32 = figuresOf({
    infer: {
      levels: [
        level(16, 300, 40, 90, { series: "infer", dtype: "float32" }),
        level(16, 400, 30, 80, { series: "bare", dtype: "float32" }),
      ],
    },
  }).find((x) => x.target === "infer / bare responder");
  assert.equal(f32?.value, 0.75);
  assert.equal(f32?.headline, false, "float32 (direct callers) is shown, not judged: the goal is uint8's");
  // A level without answers, or a result of an older shape, gives no figure rather than a wrong one.
  assert.deepEqual(figuresOf({ chain: { levels: [{ concurrency: 1, ok: 0, rps: 0, latencyMs: null }] } }), []);
  assert.deepEqual(figuresOf(null), []);
});

test("bench baseline - ratios are over the mean of the passes; a headline figure more than 10% worse is a regression", () => {
  const cur = [figuresOf(result(3400, 1.0, 1000)), figuresOf(result(3600, 1.0, 1000))];
  const base = [figuresOf(result(4000, 0.8, 1000)), figuresOf(result(4000, 0.8, 1080))];
  const c = compareFigures(cur, base);
  const get = (target: string, lvl: string, metric: string) =>
    c.find((x) => x.target === target && x.level === lvl && x.metric === metric)!;
  const rps = get("chain", "C=16", "req/s");
  assert.equal(rps.current, 3500);
  assert.deepEqual(rps.currentPasses, [3400, 3600]);
  assert.equal(rps.ratio, 3500 / 4000);
  assert.equal(rps.regression, true, "0.875x of the baseline's throughput");
  assert.equal(get("chain", "C=1", "p50 ms").regression, true, "p50 1.25x the baseline's");
  assert.equal(get("chain", "C=1", "p99 ms").regression, false);
  assert.equal(get("infer", "uint8 C=16", "images/s").regression, false, "0.96x: within 10%");
  assert.equal(get("infer / bare responder", "uint8 C=16", "fraction").regression, false);
  assert.equal(get("classify", "C=4", "images/s").regression, false);
  // p99 and the control figures are shown, never called out
  const worseP99 = compareFigures(
    [figuresOf({ chain: { levels: [level(1, 100, 1, 50)] } })],
    [figuresOf({ chain: { levels: [level(1, 100, 1, 5)] } })],
  );
  assert.equal(worseP99.find((x) => x.metric === "p99 ms")!.regression, false);
  const table = formatComparison({
    current: { dir: "/a", commit: "1234567890", dirty: true },
    baseline: { dir: "/b", commit: "abcdef0123", rev: "v1" },
    passes: 2,
    order: ["this", "v1", "v1", "this"],
    args: [],
    figures: c,
    regressions: c.filter((x) => x.regression),
    results: { current: [], baseline: [] },
  } satisfies BaselineComparison);
  assert.match(table, /this checkout \(1234567 with uncommitted changes\) against v1 \(abcdef0\)/);
  assert.match(table, /\| chain \| C=16 \| req\/s \| 3500 \(3400-3600\) \| 4000 \| 0\.88x \| REGRESSION \|/);
  assert.match(table, /\| chain \| C=1 \| p99 ms \| 5\.00 \| 5\.00 \| 1\.00x \| \(not judged\) \|/);
  assert.match(
    table,
    /REGRESSION: 4 headline figure\(s\) more than 10% worse than v1: chain C=1 req\/s 0\.88x; chain C=1 p50 ms 1\.25x; chain C=16 req\/s 0\.88x; chain C=16 p50 ms 1\.25x/,
  );
});

test("bench baseline - the baseline checkout: the commit's files, this checkout's node_modules when the lock files match, made once", () => {
  const repo = mkdtempSync(join(tmpdir(), "sg-baseline-"));
  const git = (...args: string[]) => {
    const r = spawnSync("git", ["-C", repo, "-c", "user.email=t@example.invalid", "-c", "user.name=t", ...args], {
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  };
  try {
    git("init", "-q");
    writeFileSync(join(repo, "package-lock.json"), "{}\n");
    writeFileSync(join(repo, "a.txt"), "old\n");
    git("add", "-A");
    git("commit", "-qm", "one");
    git("tag", "v1");
    writeFileSync(join(repo, "a.txt"), "new\n");
    git("commit", "-qam", "two");
    mkdirSync(join(repo, "node_modules"));
    const lines: string[] = [];
    const b = prepareBaseline(repo, "v1", (l) => lines.push(l));
    assert.equal(b.commit, git("rev-parse", "v1"));
    assert.equal(readFileSync(join(b.dir, "a.txt"), "utf8"), "old\n");
    assert.ok(lstatSync(join(b.dir, "node_modules")).isSymbolicLink(), "same lock file: this checkout's node_modules");
    assert.equal(lines.length, 1);
    const again = prepareBaseline(repo, "v1", (l) => lines.push(l));
    assert.equal(again.dir, b.dir);
    assert.equal(lines.length, 1, "made once, then reused");
    assert.throws(
      () => prepareBaseline(repo, "no-such-rev", () => {}),
      (e: unknown) => e instanceof BaselineError && /no such commit/.test(e.message),
    );
    assert.ok(existsSync(join(repo, ".servegraph", "baselines")));
  } finally {
    rmSync(repo, { recursive: true, force: true });
  }
});
