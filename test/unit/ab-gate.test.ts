// The statsig SDK keeps process-global state (output logger, diagnostics), so these tests run one after
// another (node:test runs top-level tests of a file sequentially) and every evaluator is shut down.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import dns from "node:dns";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import statsigPkg from "statsig-node";
import { fallbackVariant } from "../../services/ab-router/src/fallback.ts";
import {
  createStatsigEvaluator,
  type GateEvaluator,
  type GateLogFn,
  type RoutingRule,
} from "../../services/ab-router/src/gate.ts";
import { DEFAULT_SPEC_PATH } from "../../services/ab-router/src/spec.ts";

const N_USERS = 10_000;
const GATE: RoutingRule = { kind: "gate", gate: "variant_b" };
const EXPERIMENT: RoutingRule = {
  kind: "experiment",
  experiment: "my_experiment",
  parameter: "variant",
  valueForB: "B",
};

type LogLine = { level: string; msg: string; attrs?: Record<string, unknown> };
function captureLog(): { lines: LogLine[]; log: GateLogFn } {
  const lines: LogLine[] = [];
  return {
    lines,
    log: (level, msg, attrs) => lines.push(attrs === undefined ? { level, msg } : { level, msg, attrs }),
  };
}

/** Variants of user-0..user-(n-1), one character each, plus the sources seen. */
function decideAll(
  ev: GateEvaluator,
  n = N_USERS,
): { variants: string; bCount: number; sources: Set<string>; reasons: Set<string> } {
  let variants = "";
  let bCount = 0;
  const sources = new Set<string>();
  const reasons = new Set<string>();
  for (let i = 0; i < n; i++) {
    const d = ev.decide(`user-${i}`);
    variants += d.variant;
    if (d.variant === "B") bCount++;
    sources.add(d.source);
    reasons.add(d.reason);
  }
  return { variants, bCount, sources, reasons };
}

function assertNearHalf(bCount: number, n = N_USERS): void {
  const share = (100 * bCount) / n;
  assert.ok(Math.abs(share - 50) <= 2, `share of B is ${share.toFixed(2)}%, expected 50% +- 2 points`);
}

function specWithRollout(passPercentage: number): string {
  const spec = JSON.parse(fs.readFileSync(DEFAULT_SPEC_PATH, "utf8")) as {
    feature_gates: { rules: { passPercentage: number }[] }[];
  };
  const rule = spec.feature_gates[0]?.rules[0];
  assert.ok(rule, "default spec has a gate rule");
  rule.passPercentage = passPercentage;
  return JSON.stringify(spec);
}

/** What a refused request was aimed at, for the failure message. */
function target(arg: unknown): string {
  if (typeof arg === "string") return arg;
  if (arg instanceof URL) return arg.href;
  if (typeof arg === "object" && arg !== null) {
    const o = arg as { hostname?: unknown; host?: unknown; path?: unknown; port?: unknown };
    return `${String(o.hostname ?? o.host ?? "")}${o.path === undefined ? (o.port === undefined ? "" : `:${String(o.port)}`) : String(o.path)}`;
  }
  return String(arg);
}

/** Replaces every way out of the process with a stub that records and refuses. Restored when the test ends. */
function blockNetwork(t: TestContext): { calls: () => number; attempts: string[] } {
  const attempts: string[] = [];
  const refuse = (name: string) => (arg?: unknown) => {
    attempts.push(`${name} ${target(arg)}`);
    throw new Error(`network blocked by test (${name})`);
  };
  t.mock.method(net.Socket.prototype, "connect", refuse("net.Socket#connect"));
  t.mock.method(dns, "lookup", refuse("dns.lookup"));
  t.mock.method(dns.promises, "lookup", refuse("dns.promises.lookup"));
  t.mock.method(globalThis, "fetch", refuse("fetch"));
  t.mock.method(http, "request", refuse("http.request"));
  t.mock.method(http, "get", refuse("http.get"));
  t.mock.method(https, "request", refuse("https.request"));
  t.mock.method(https, "get", refuse("https.get"));
  return { calls: () => attempts.length, attempts };
}

test("ab gate - 50% gate splits 10k users near 50/50, stable on re-evaluation and across a restart", async () => {
  const first = createStatsigEvaluator({ rule: GATE, log: captureLog().log });
  let run1: ReturnType<typeof decideAll>;
  try {
    assert.equal(first.mode, "offline");
    await first.init();
    run1 = decideAll(first);
    assert.deepEqual([...run1.sources], ["statsig"]);
    assertNearHalf(run1.bCount);
    // Statsig's bucketing (sha256 of gate salt, rule salt and user id) with the salts of the committed spec puts
    // exactly 4928 of user-0..user-9999 in B; Statsig's Rust core SDK buckets the same users.
    assert.equal(run1.bCount, 4928);
    assert.equal(decideAll(first).variants, run1.variants, "second evaluation differs");
  } finally {
    await first.shutdown();
  }
  const restarted = createStatsigEvaluator({ rule: GATE, log: captureLog().log });
  try {
    await restarted.init();
    const run2 = decideAll(restarted);
    assert.deepEqual([...run2.sources], ["statsig"]);
    assert.equal(run2.variants, run1.variants, "a restarted evaluator routes users differently");
  } finally {
    await restarted.shutdown();
  }
});

test("ab gate - offline mode makes no network attempt during init, 10k decisions and shutdown", async (t) => {
  const blocked = blockNetwork(t);
  const ev = createStatsigEvaluator({ rule: GATE, log: captureLog().log });
  try {
    await ev.init();
    const run = decideAll(ev);
    assert.deepEqual([...run.sources], ["statsig"]);
  } finally {
    await ev.shutdown();
  }
  // Let anything the SDK scheduled during shutdown run while the stubs are still in place.
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(blocked.calls(), 0, `network attempts: ${blocked.attempts.join(", ")}`);
});

test("ab gate - 0% rollout routes everyone to A and 100% routes everyone to B", async () => {
  const none = createStatsigEvaluator({ rule: GATE, specJson: specWithRollout(0), log: captureLog().log });
  try {
    await none.init();
    const run = decideAll(none);
    assert.deepEqual([...run.sources], ["statsig"]);
    assert.equal(run.bCount, 0);
  } finally {
    await none.shutdown();
  }

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-gate-"));
  const specPath = path.join(dir, "spec-100.json");
  fs.writeFileSync(specPath, specWithRollout(100));
  const all = createStatsigEvaluator({ rule: GATE, specPath, log: captureLog().log });
  try {
    await all.init();
    const run = decideAll(all);
    assert.deepEqual([...run.sources], ["statsig"]);
    assert.equal(run.bCount, N_USERS);
  } finally {
    await all.shutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("ab gate - experiment parameter splits 10k users near 50/50 and is stable across a restart", async () => {
  const ev = createStatsigEvaluator({ rule: EXPERIMENT, log: captureLog().log });
  let run1: ReturnType<typeof decideAll>;
  try {
    await ev.init();
    run1 = decideAll(ev);
    assert.deepEqual([...run1.sources], ["statsig"]);
    assertNearHalf(run1.bCount);
    assert.equal(ev.decide("user-0").rule, "my_experiment");
    assert.equal(decideAll(ev).variants, run1.variants);
    // The experiment buckets independently of the gate: the two splits are different.
    assert.notEqual(run1.bCount, 4928);
  } finally {
    await ev.shutdown();
  }
  const restarted = createStatsigEvaluator({ rule: EXPERIMENT, log: captureLog().log });
  try {
    await restarted.init();
    assert.equal(decideAll(restarted).variants, run1.variants);
  } finally {
    await restarted.shutdown();
  }
});

test("ab gate - corrupt spec falls back to the deterministic hash split, warning once", async () => {
  const { lines, log } = captureLog();
  const ev = createStatsigEvaluator({ rule: GATE, specJson: '{"has_updates": true, "feature_gates": [', log });
  try {
    await ev.init();
    const run = decideAll(ev);
    assert.deepEqual([...run.sources], ["fallback"]);
    assert.equal(run.reasons.size, 1);
    assert.match([...run.reasons][0] ?? "", /^spec_invalid: spec is not valid JSON/);
    assertNearHalf(run.bCount);
    assert.equal(decideAll(ev).variants, run.variants, "fallback is not deterministic");
    for (let i = 0; i < 100; i++) assert.equal(run.variants[i], fallbackVariant(`user-${i}`, "variant_b"));
    assert.equal(lines.filter((l) => l.level === "warn").length, 1, JSON.stringify(lines));
  } finally {
    await ev.shutdown();
  }
});

test("ab gate - a gate missing from the rules and an evaluation that throws both fall back", async (t) => {
  const { lines, log } = captureLog();
  const missing = createStatsigEvaluator({ rule: { kind: "gate", gate: "no_such_gate" }, log });
  try {
    await missing.init();
    const d = missing.decide("user-7");
    assert.equal(d.source, "fallback");
    assert.match(d.reason, /^rule_not_found: gate "no_such_gate"/);
    assert.equal(d.variant, fallbackVariant("user-7", "no_such_gate"));
  } finally {
    await missing.shutdown();
  }

  const ev = createStatsigEvaluator({ rule: GATE, log });
  try {
    await ev.init();
    assert.equal(ev.decide("user-1").source, "statsig");
    t.mock.method(statsigPkg.default.StatsigServer.prototype, "getFeatureGate", () => {
      throw new Error("evaluator exploded");
    });
    const run = decideAll(ev, 1000);
    assert.deepEqual([...run.sources], ["fallback"]);
    assert.deepEqual([...run.reasons], ["evaluation_error: evaluator exploded"]);
    assert.equal(lines.filter((l) => l.attrs?.kind === "evaluation_error").length, 1);
    t.mock.restoreAll();
    assert.equal(ev.decide("user-1").source, "statsig", "decisions do not return to statsig once it works again");
  } finally {
    await ev.shutdown();
  }
});

test("ab gate - an init that outlasts initTimeoutMs resolves on time and decisions fall back", async (t) => {
  const blocked = blockNetwork(t);
  const hung: Array<(err: Error) => void> = [];
  // The rules download never answers; everything else is refused at once.
  const networkOverrideFunc = (url: string): Promise<Response> =>
    url.includes("download_config_specs")
      ? new Promise<Response>((_resolve, reject) => hung.push(reject))
      : Promise.reject(new Error("refused by test"));
  const { lines, log } = captureLog();
  const ev = createStatsigEvaluator({
    rule: GATE,
    serverKey: "secret-timeout-test",
    initTimeoutMs: 50,
    networkOverrideFunc,
    log,
  });
  try {
    const startMs = performance.now();
    await ev.init();
    const initMs = performance.now() - startMs;
    assert.ok(initMs < 1000, `init took ${initMs.toFixed(0)} ms with initTimeoutMs 50`);
    assert.equal(hung.length, 1, "the rules download was not attempted");
    const run = decideAll(ev, 1000);
    assert.deepEqual([...run.sources], ["fallback"]);
    assert.deepEqual([...run.reasons], ["init_timeout: statsig init did not finish within 50 ms"]);
    assert.equal(lines.filter((l) => l.attrs?.kind === "init_timeout").length, 1);
  } finally {
    await ev.shutdown();
    for (const reject of hung) reject(new Error("test finished"));
  }
  const unexpected = blocked.attempts.filter((a) => !/^https\.request statsigapi\.net\/v1\/sdk_exception/.test(a));
  assert.deepEqual(unexpected, []);
});

test("ab gate - decide before init and after shutdown falls back; init and shutdown are idempotent", async () => {
  const ev = createStatsigEvaluator({ rule: GATE, log: captureLog().log });
  const early = ev.decide("user-3");
  assert.equal(early.source, "fallback");
  assert.match(early.reason, /^not_initialized/);
  await Promise.all([ev.init(), ev.init()]);
  assert.equal(ev.decide("user-3").source, "statsig");
  await ev.shutdown();
  await ev.shutdown();
  const late = ev.decide("user-3");
  assert.equal(late.source, "fallback");
  assert.match(late.reason, /^shut_down/);
  assert.equal(late.variant, fallbackVariant("user-3", "variant_b"));
});

test("ab gate - the server key never appears in logs, console output or decisions", async (t) => {
  const secret = "secret-SHOULD-NOT-LEAK-123";
  const captured: string[] = [];
  const { lines, log } = captureLog();
  const blocked = blockNetwork(t);
  for (const name of ["log", "info", "warn", "error", "debug"] as const) {
    t.mock.method(console, name, (...args: unknown[]) => captured.push(args.map(String).join(" ")));
  }
  for (const stream of [process.stdout, process.stderr]) {
    const original = stream.write.bind(stream) as (...a: unknown[]) => boolean;
    t.mock.method(stream, "write", (chunk: unknown, ...rest: unknown[]) => {
      captured.push(typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString("utf8"));
      return original(chunk, ...rest);
    });
  }
  // The SDK's HTTP function fails at once, and its error echoes the key, as a careless proxy error might.
  let sdkRequests = 0;
  const networkOverrideFunc = (url: string, init: RequestInit): Promise<Response> => {
    sdkRequests++;
    const key = (init.headers as Record<string, string> | undefined)?.["STATSIG-API-KEY"] ?? "";
    return Promise.reject(new Error(`connection refused: ${url} (api key ${key})`));
  };

  const ev = createStatsigEvaluator({ rule: GATE, serverKey: secret, initTimeoutMs: 1000, networkOverrideFunc, log });
  let reasons: Set<string>;
  try {
    assert.equal(ev.mode, "online");
    await ev.init();
    const run = decideAll(ev, 1000);
    reasons = run.reasons;
    assert.deepEqual([...run.sources], ["fallback"]);
    assertNearHalf(run.bCount, 1000);
  } finally {
    await ev.shutdown();
  }
  t.mock.restoreAll();

  assert.ok(sdkRequests > 0, "the SDK never tried the network, so the test proves nothing");
  // statsig-node's exception reporter (ErrorBoundary -> POST statsigapi.net/v1/sdk_exception) ignores
  // networkOverrideFunc and goes straight to node-fetch; here it reports the failed exposure flush at
  // shutdown. The stubs refused it. Anything else leaving the process unasked is a bug.
  const unexpected = blocked.attempts.filter((a) => !/^https\.request statsigapi\.net\/v1\/sdk_exception/.test(a));
  assert.deepEqual(
    unexpected,
    [],
    `real network attempts besides the SDK exception reporter: ${unexpected.join(", ")}`,
  );
  const logged = lines.map((l) => JSON.stringify(l));
  assert.ok(
    logged.some((l) => l.includes("init_failed")),
    `the init failure was not logged: ${logged.join("\n")}`,
  );
  assert.ok(
    [...reasons].some((r) => r.includes("(api key ***)")),
    `the key was not redacted from the reason: ${[...reasons].join("; ")}`,
  );
  for (const text of [...logged, ...captured, ...reasons]) {
    assert.ok(!text.includes(secret), `server key leaked: ${text}`);
  }
});
