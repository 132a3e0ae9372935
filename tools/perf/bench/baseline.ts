/**
 * `servegraph bench --baseline <rev>`: this checkout against another commit of the project, in one run.
 *
 * The commit is extracted once (`git archive`) into `.servegraph/baselines/<sha>/` and reuses this checkout's
 * node_modules when its package-lock.json is the same (else it gets its own `npm ci`). Then each side runs its own
 * `servegraph bench` (its own graph, started and stopped by it, its own load generator and code paths) for the
 * same targets, concurrencies and durations, one side at a time on the same cores and ports, alternating in
 * passes (this, baseline; then baseline, this; ...) so that neither side always runs first or on a warmer
 * machine. The figures of each side are the mean over its passes; the ratio is this over the baseline.
 *
 * Headline figures: throughput and p50 of every level (chain, classify's graph, infer), classify's graph as a
 * fraction of its one-process composition and infer with uint8 input as a fraction of the bare responder (each
 * measured in the same pass). One worse by more than
 * REGRESSION (10%) is called out; p99, the one-process composition and infer's bare responder (the same code on
 * both sides: a measure of the run's own noise) are shown, not judged.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resultJson } from "./shared-cli.ts";

/** A headline figure worse than this fraction of the baseline is a regression. */
export const REGRESSION = 0.1;

export interface BaselineSide {
  /** The checkout's root. */
  dir: string;
  commit: string | null;
  /** The working tree differs from the commit (this checkout only). */
  dirty?: boolean;
}

/** One figure of one bench result: `chain C=16 req/s`. */
export interface Figure {
  target:
    | "chain"
    | "classify"
    | "classify one-process"
    | "classify graph / one-process"
    | "infer"
    | "infer bare responder"
    | "infer / bare responder";
  level: string;
  metric: "req/s" | "images/s" | "p50 ms" | "p99 ms" | "fraction";
  headline: boolean;
  higherIsBetter: boolean;
  value: number;
}

export interface ComparedFigure extends Omit<Figure, "value"> {
  current: number;
  baseline: number;
  /** Each pass's value, in order. */
  currentPasses: number[];
  baselinePasses: number[];
  /** current / baseline. */
  ratio: number;
  regression: boolean;
}

export interface BaselineComparison {
  current: BaselineSide;
  baseline: BaselineSide & { rev: string };
  passes: number;
  order: string[];
  /** Each side's bench command (the same for both). */
  args: string[];
  figures: ComparedFigure[];
  regressions: ComparedFigure[];
  /** Each pass's raw bench result, per side. */
  results: { current: unknown[]; baseline: unknown[] };
}

interface LevelLike {
  concurrency?: number;
  rps?: number;
  ok?: number;
  latencyMs?: { p50?: number; p99?: number } | null;
  series?: string;
  dtype?: string;
}

/** The figures of one `servegraph bench --json` result (any version that has levels with rps and latencyMs). */
export function figuresOf(result: unknown): Figure[] {
  const r = (result ?? {}) as {
    chain?: { levels?: LevelLike[] } | null;
    classify?: {
      levels?: LevelLike[];
      oneProcess?: { levels?: LevelLike[] } | null;
      comparison?: { rows?: { concurrency?: number; fraction?: number | null }[] } | null;
    } | null;
    infer?: { levels?: LevelLike[] } | null;
  };
  const out: Figure[] = [];
  const add = (
    target: Figure["target"],
    unit: "req/s" | "images/s",
    levels: LevelLike[] | undefined,
    headline: boolean,
    label = (l: LevelLike) => `C=${l.concurrency}`,
  ): void => {
    for (const l of levels ?? []) {
      if (typeof l.concurrency !== "number" || typeof l.rps !== "number" || !(l.ok === undefined || l.ok > 0)) continue;
      const level = label(l);
      out.push({ target, level, metric: unit, headline, higherIsBetter: true, value: l.rps });
      if (typeof l.latencyMs?.p50 === "number")
        out.push({ target, level, metric: "p50 ms", headline, higherIsBetter: false, value: l.latencyMs.p50 });
      if (typeof l.latencyMs?.p99 === "number")
        out.push({ target, level, metric: "p99 ms", headline: false, higherIsBetter: false, value: l.latencyMs.p99 });
    }
  };
  add("chain", "req/s", r.chain?.levels, true);
  add("classify", "images/s", r.classify?.levels, true);
  add("classify one-process", "images/s", r.classify?.oneProcess?.levels ?? undefined, false);
  // The split's cost as each side measured it against its own one-process composition in the same pass.
  for (const row of r.classify?.comparison?.rows ?? []) {
    if (typeof row.concurrency === "number" && typeof row.fraction === "number") {
      out.push({
        target: "classify graph / one-process",
        level: `C=${row.concurrency}`,
        metric: "fraction",
        headline: true,
        higherIsBetter: true,
        value: row.fraction,
      });
    }
  }
  const inferLabel = (l: LevelLike) => `${l.dtype ?? "?"} C=${l.concurrency}`;
  add(
    "infer",
    "images/s",
    r.infer?.levels?.filter((l) => l.series !== "bare"),
    true,
    inferLabel,
  );
  add(
    "infer bare responder",
    "req/s",
    r.infer?.levels?.filter((l) => l.series === "bare"),
    false,
    inferLabel,
  );
  // infer's ceiling as each side measured it against the bare responder on the same wire in the same pass; judged
  // for uint8, the input of infer's goal (what preprocess sends), shown for float32 (direct callers).
  for (const l of r.infer?.levels ?? []) {
    if (l.series === "bare" || typeof l.rps !== "number") continue;
    const bare = r.infer!.levels!.find(
      (b) => b.series === "bare" && b.dtype === l.dtype && b.concurrency === l.concurrency,
    );
    if (typeof bare?.rps !== "number" || bare.rps <= 0) continue;
    out.push({
      target: "infer / bare responder",
      level: inferLabel(l),
      metric: "fraction",
      headline: l.dtype === "uint8",
      higherIsBetter: true,
      value: l.rps / bare.rps,
    });
  }
  return out;
}

const keyOf = (f: Pick<Figure, "target" | "level" | "metric">): string => `${f.target}|${f.level}|${f.metric}`;
const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Figures both sides measured, with their ratio and whether a headline one regressed by more than REGRESSION. */
export function compareFigures(current: readonly Figure[][], baseline: readonly Figure[][]): ComparedFigure[] {
  const byKey = (passes: readonly Figure[][]) => {
    const m = new Map<string, { f: Figure; values: number[] }>();
    for (const pass of passes)
      for (const f of pass) {
        const e = m.get(keyOf(f)) ?? { f, values: [] };
        e.values.push(f.value);
        m.set(keyOf(f), e);
      }
    return m;
  };
  const cur = byKey(current);
  const base = byKey(baseline);
  const out: ComparedFigure[] = [];
  for (const [k, c] of cur) {
    const b = base.get(k);
    if (!b) continue;
    const { value: _v, ...meta } = c.f;
    const cm = mean(c.values);
    const bm = mean(b.values);
    const ratio = bm > 0 ? cm / bm : NaN;
    const worse = meta.higherIsBetter ? ratio < 1 - REGRESSION : ratio > 1 + REGRESSION;
    out.push({
      ...meta,
      current: cm,
      baseline: bm,
      currentPasses: c.values,
      baselinePasses: b.values,
      ratio,
      regression: meta.headline && Number.isFinite(ratio) && worse,
    });
  }
  return out;
}

const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const range = (xs: readonly number[]): string => {
  const [lo, hi] = [fmt(Math.min(...xs)), fmt(Math.max(...xs))];
  return lo === hi ? "" : ` (${lo}-${hi})`;
};

export function formatComparison(c: BaselineComparison): string {
  const short = (s: string | null) => (s ? s.slice(0, 7) : "?");
  const lines = [
    `this checkout (${short(c.current.commit)}${c.current.dirty ? " with uncommitted changes" : ""}) against ${c.baseline.rev} (${short(c.baseline.commit)}): ${c.passes} pass(es) each, alternating (${c.order.join(", ")}), each side its own graph`,
    "",
    "| target | level | figure | this | baseline | this / baseline | |",
    "|---|---|---|---|---|---|---|",
    ...c.figures.map(
      (f) =>
        `| ${f.target} | ${f.level} | ${f.metric} | ${fmt(f.current)}${range(f.currentPasses)} | ${fmt(f.baseline)}${range(f.baselinePasses)} | ${Number.isFinite(f.ratio) ? `${f.ratio.toFixed(2)}x` : "-"} | ${f.regression ? "REGRESSION" : f.headline ? "" : "(not judged)"} |`,
    ),
    "",
    c.regressions.length
      ? `REGRESSION: ${c.regressions.length} headline figure(s) more than ${REGRESSION * 100}% worse than ${c.baseline.rev}: ${c.regressions.map((f) => `${f.target} ${f.level} ${f.metric} ${f.ratio.toFixed(2)}x`).join("; ")}`
      : `no headline figure is more than ${REGRESSION * 100}% worse than ${c.baseline.rev}`,
  ];
  return lines.join("\n") + "\n";
}

export class BaselineError extends Error {}

function git(repo: string, args: string[]): string {
  const r = spawnSync("git", ["-C", repo, ...args], { encoding: "utf8" });
  if (r.status !== 0)
    throw new BaselineError(`git ${args.join(" ")}: ${(r.stderr || r.error?.message || "failed").trim()}`);
  return r.stdout.trim();
}

/**
 * The checkout of `rev`, made once under `<repo>/.servegraph/baselines/<sha>`: the commit's files, and node_modules
 * (this checkout's when the lock files are the same, else its own `npm ci`).
 */
export function prepareBaseline(repo: string, rev: string, progress: (line: string) => void): BaselineSide {
  if (!existsSync(join(repo, ".git"))) throw new BaselineError(`--baseline needs a git checkout: ${repo} has no .git`);
  let commit: string;
  try {
    commit = git(repo, ["rev-parse", "--verify", "--quiet", `${rev}^{commit}`]);
  } catch {
    throw new BaselineError(`--baseline ${rev}: no such commit, tag or branch in ${repo}`);
  }
  const dir = join(repo, ".servegraph", "baselines", commit);
  const ready = join(dir, ".servegraph-baseline-ready");
  if (existsSync(ready)) return { dir, commit };
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  progress(`extracting ${rev} (${commit.slice(0, 7)}) into ${dir}`);
  const x = spawnSync("sh", ["-c", 'git -C "$1" archive --format=tar "$2" | tar -x -C "$3"', "sh", repo, commit, dir], {
    encoding: "utf8",
  });
  if (x.status !== 0) throw new BaselineError(`extracting ${rev}: ${x.stderr.trim()}`);
  const lock = (d: string) =>
    existsSync(join(d, "package-lock.json")) ? readFileSync(join(d, "package-lock.json"), "utf8") : undefined;
  if (lock(dir) !== undefined && lock(dir) === lock(repo) && existsSync(join(repo, "node_modules"))) {
    symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"), "dir");
  } else {
    progress(`${rev} has other dependencies: npm ci in its checkout`);
    const ci = spawnSync("npm", ["ci", "--no-audit", "--no-fund", "--prefer-offline"], {
      cwd: dir,
      stdio: ["ignore", 2, 2],
    });
    if (ci.status !== 0) throw new BaselineError(`npm ci for ${rev} failed (exit ${ci.status}); see above`);
  }
  writeFileSync(ready, `${commit}\n`);
  return { dir, commit };
}

/** Whether something answers on host:port (a graph already running there would share the cores and the port). */
export function listening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (v: boolean) => {
      s.destroy();
      resolve(v);
    };
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

/**
 * The bench entry of a checkout: tools/perf/cli.ts, or ops/cli.ts in commits from before the bench left the
 * product CLI (both take `bench <args>`).
 */
export function benchEntryOf(dir: string): string {
  return existsSync(join(dir, "tools/perf/cli.ts")) ? "tools/perf/cli.ts" : "ops/cli.ts";
}

/** Runs the checkout's `bench <args> --json` in `dir` and returns its result; its progress goes to stderr, tagged. */
export function benchIn(dir: string, args: readonly string[], tag: string, signal: AbortSignal): Promise<unknown> {
  const out = mkdtempSync(join(tmpdir(), "sg-bench-side-"));
  return new Promise<unknown>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", benchEntryOf(dir), "bench", ...args, "--json", "--out", out],
      {
        cwd: dir,
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, SG_STATE_FILE: join(out, "no-state.json") },
      },
    );
    let stdout = "";
    let tail = "";
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr!.on("data", (d: Buffer) => {
      const s = d.toString();
      tail = (tail + s).slice(-4000);
      process.stderr.write(
        s
          .split(/(?<=\n)/)
          .map((l) => `[${tag}] ${l}`)
          .join(""),
      );
    });
    const stop = () => child.kill("SIGINT");
    signal.addEventListener("abort", stop, { once: true });
    child.once("exit", (code) => {
      signal.removeEventListener("abort", stop);
      rmSync(out, { recursive: true, force: true });
      if (code !== 0)
        return reject(
          new BaselineError(
            `${tag}: servegraph bench exited ${code}: ${tail.trim().split("\n").slice(-3).join(" / ")}`,
          ),
        );
      try {
        resolve(JSON.parse(stdout));
      } catch {
        reject(new BaselineError(`${tag}: servegraph bench printed no JSON result`));
      }
    });
  });
}

export interface BaselinePlan {
  repo: string;
  rev: string;
  /** The bench arguments both sides get (no --json/--out: the comparison adds its own). */
  args: string[];
  passes: number;
  /** The graph's HTTP origin: nothing may answer there before the run (each side starts its own graph there). */
  ingress?: { host: string; port: number };
  signal: AbortSignal;
  progress: (line: string) => void;
  currentCommit: string | null;
}

export async function runBaseline(p: BaselinePlan): Promise<BaselineComparison> {
  if (p.ingress && (await listening(p.ingress.host, p.ingress.port))) {
    throw new BaselineError(
      `something answers on ${p.ingress.host}:${p.ingress.port}, where each side starts its graph: stop the running graph first (--baseline runs one side at a time on the same cores and ports)`,
    );
  }
  const baseline = prepareBaseline(p.repo, p.rev, p.progress);
  const dirty =
    spawnSync("git", ["-C", p.repo, "status", "--porcelain", "--untracked-files=no"], {
      encoding: "utf8",
    }).stdout.trim() !== "";
  const current: BaselineSide = { dir: p.repo, commit: p.currentCommit, dirty };
  const order: string[] = [];
  const results = { current: [] as unknown[], baseline: [] as unknown[] };
  for (let i = 0; i < p.passes && !p.signal.aborted; i++) {
    const sides = i % 2 === 0 ? (["current", "baseline"] as const) : (["baseline", "current"] as const);
    for (const side of sides) {
      if (p.signal.aborted) break;
      p.progress(`pass ${i + 1}/${p.passes}: ${side === "current" ? "this checkout" : p.rev}`);
      order.push(side === "current" ? "this" : p.rev);
      const r = await benchIn(
        side === "current" ? current.dir : baseline.dir,
        p.args,
        side === "current" ? "this" : p.rev,
        p.signal,
      );
      // The extracted checkout has no .git of its own: its bench would read the commit of the checkout around it.
      if (side === "baseline" && r && typeof r === "object") (r as { commit?: string | null }).commit = baseline.commit;
      results[side].push(r);
    }
  }
  const figures = compareFigures(results.current.map(figuresOf), results.baseline.map(figuresOf));
  return {
    current,
    baseline: { ...baseline, rev: p.rev },
    passes: p.passes,
    order,
    args: p.args,
    figures,
    regressions: figures.filter((f) => f.regression),
    results,
  };
}

/** Writes `<out>/baseline-<stamp>.json` and `<out>/baseline-latest.json`; returns the file name. */
export function writeComparison(outDir: string, c: BaselineComparison): { json: string; file: string } {
  mkdirSync(outDir, { recursive: true });
  const json = resultJson(c);
  const file = `baseline-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
  writeFileSync(join(outDir, file), json);
  writeFileSync(join(outDir, "baseline-latest.json"), json);
  return { json, file };
}
