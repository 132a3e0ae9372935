/**
 * Per-user A/B decision for the ab-router node: a Statsig feature gate or experiment parameter, with a
 * deterministic local fallback so a decision is always available.
 *
 * Modes
 * - offline (no `serverKey`): statsig-node in `localMode` with `bootstrapValues` read from a v1
 *   `download_config_specs` JSON (default `gates/default-spec.json`). Every sync, logging and diagnostics
 *   path is disabled and the SDK's HTTP function rejects, so the SDK makes no network attempt at all.
 * - online (`serverKey` given): the SDK fetches rules from Statsig. `specJson`/`specPath`, when given, are
 *   used as bootstrap values that serve until the first successful sync. Init waits at most `initTimeoutMs`.
 *
 * Failure handling: `init()` never throws. If loading the spec or initialising the SDK fails or times out,
 * if the SDK reports it is uninitialised, if the rule is not in the rules, or if an evaluation throws,
 * `decide()` answers with {@link fallbackVariant} and `source: "fallback"`, and `reason` says why. Each
 * failure kind is logged once as a warning, not once per request. Decisions are re-evaluated per call, so
 * when the SDK recovers (for example a later background sync succeeds) decisions return to Statsig; a user
 * whose fallback bucket differs from its Statsig bucket switches variant once at that moment.
 *
 * Process model: each evaluator owns a `StatsigServer` instance rather than the `Statsig` facade, because
 * the facade is a process-wide singleton that, re-initialised after `shutdownAsync()`, silently keeps the
 * first instance and its first rule set. The SDK's output logger and diagnostics are still process-global,
 * so one live evaluator per process is supported (a second one logs a warning); create a new one only
 * after `shutdown()` of the previous one.
 *
 * Secrets: the server key is never logged. Every message this module logs, including the SDK's own
 * output, which is routed through `log`, has the key replaced with "***".
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import statsigPkg from "statsig-node";
import outputLoggerPkg from "statsig-node/dist/OutputLogger.js";
import type { LoggerInterface, NetworkOverrideFunc, StatsigOptions, StatsigServer, StatsigUser } from "statsig-node";
import { createLogger } from "../../../runtime/log.ts";

// statsig-node's ESM interop: the named export is undefined at runtime, `.default` is right (DEPENDENCIES T13).
const Statsig = statsigPkg.default;

export type Variant = "A" | "B";

/** Which Statsig entity decides the variant. */
export type RoutingRule =
  | { kind: "gate"; gate: string }
  | {
      kind: "experiment";
      experiment: string;
      parameter: string;
      /** The parameter value that means variant B (e.g. "B"); any other value, or none, means A. */
      valueForB: string;
    };

export interface Decision {
  variant: Variant;
  source: "statsig" | "fallback";
  /** statsig: `<evaluation reason>:<rule id>` (e.g. "Bootstrap:rollout_rule"); fallback: `<kind>: <detail>`. */
  reason: string;
  /** The gate or experiment name. */
  rule: string;
}

export interface GateEvaluator {
  readonly mode: "offline" | "online";
  /** Loads the rules and starts the SDK. Never throws; a failure makes decisions fall back. Idempotent. */
  init(): Promise<void>;
  /** Synchronous, never throws. Before `init()` resolves, or after `shutdown()`, it falls back. */
  decide(userKey: string): Decision;
  /** Stops the SDK (flushes exposures in online mode). Idempotent; never throws. */
  shutdown(): Promise<void>;
}

export type GateLogFn = (level: "info" | "warn" | "error", msg: string, attrs?: Record<string, unknown>) => void;

export interface StatsigEvaluatorOptions {
  rule: RoutingRule;
  /** Statsig server secret key. Selects online mode. Secret: never logged. */
  serverKey?: string;
  /** v1 download_config_specs JSON file. Default: gates/default-spec.json (offline mode only). */
  specPath?: string;
  /** v1 download_config_specs JSON text; takes precedence over `specPath`. */
  specJson?: string;
  /** Upper bound on `init()`. Default 3000. */
  initTimeoutMs?: number;
  /** Online mode only: replaces the SDK's HTTP function (an egress proxy, or a test stub). */
  networkOverrideFunc?: NetworkOverrideFunc;
  log?: GateLogFn;
}

export const DEFAULT_SPEC_PATH = fileURLToPath(new URL("../gates/default-spec.json", import.meta.url));
export const DEFAULT_INIT_TIMEOUT_MS = 3000;
const SHUTDOWN_TIMEOUT_MS = 3000;
const OFFLINE_SDK_KEY = "offline";
/** Evaluated once after init to surface an unusable rule set at start-up rather than on the first request. */
const PROBE_USER_KEY = "ab-router-init-probe";
/** Evaluation reasons for which the SDK's answer is a default, not a decision: route by fallback instead. */
const NON_DECISION_REASONS: ReadonlySet<string> = new Set(["Uninitialized", "Unrecognized", "Unsupported"]);
const MAX_DISTINCT_SDK_MESSAGES = 100;

/**
 * The routing used when Statsig cannot decide. Deterministic and stateless, so every replica and every
 * restart agrees: h = sha256(utf8(rule + "." + userKey)); the first 8 bytes of h read as a big-endian
 * uint64, modulo 10000, below 5000 means "B", otherwise "A" (a 50/50 split).
 * This mirrors Statsig's own bucketing scheme but with different salts, so a user's fallback variant is
 * independent of its Statsig variant.
 */
export function fallbackVariant(userKey: string, rule: string): Variant {
  const h = createHash("sha256").update(`${rule}.${userKey}`, "utf8").digest();
  return h.readBigUInt64BE(0) % 10000n < 5000n ? "B" : "A";
}

const FailureKind = {
  NOT_INITIALIZED: "not_initialized",
  SHUT_DOWN: "shut_down",
  SPEC_INVALID: "spec_invalid",
  INIT_FAILED: "init_failed",
  INIT_TIMEOUT: "init_timeout",
  UNINITIALIZED: "statsig_uninitialized",
  UNRECOGNIZED: "rule_not_found",
  UNSUPPORTED: "rule_unsupported",
  EVALUATION_ERROR: "evaluation_error",
} as const;
type FailureKind = (typeof FailureKind)[keyof typeof FailureKind];

let liveEvaluators = 0;

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  try {
    return typeof err === "string" ? err : JSON.stringify(err) ?? String(err);
  } catch {
    return String(err);
  }
}

/** Throws unless `text` parses to the parts of a v1 spec without which the SDK silently stays uninitialised. */
function checkSpec(text: string): void {
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (err) {
    throw new Error(`spec is not valid JSON (${errorMessage(err)})`);
  }
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) throw new Error("spec is not a JSON object");
  const s = spec as Record<string, unknown>;
  if (s.has_updates !== true) throw new Error("spec.has_updates must be true");
  if (typeof s.time !== "number" || !(s.time > 0)) throw new Error("spec.time must be a positive number");
  for (const k of ["feature_gates", "dynamic_configs", "layer_configs"]) {
    if (!Array.isArray(s[k])) throw new Error(`spec.${k} must be an array`);
  }
}

function defaultLog(): GateLogFn {
  const logger = createLogger("ab-router.gate");
  return (level, msg, attrs) => logger[level](msg, attrs);
}

/** See the module comment for modes, failure handling and the one-evaluator-per-process rule. */
export function createStatsigEvaluator(opts: StatsigEvaluatorOptions): GateEvaluator {
  const { rule } = opts;
  const ruleName = rule.kind === "gate" ? rule.gate : rule.experiment;
  const serverKey = opts.serverKey !== undefined && opts.serverKey.length > 0 ? opts.serverKey : undefined;
  const mode: "offline" | "online" = serverKey === undefined ? "offline" : "online";
  const initTimeoutMs = opts.initTimeoutMs ?? DEFAULT_INIT_TIMEOUT_MS;
  const rawLog = opts.log ?? defaultLog();

  const redact = (s: string): string => (serverKey === undefined ? s : s.split(serverKey).join("***"));
  const log: GateLogFn = (level, msg, attrs) => {
    let safeAttrs: Record<string, unknown> | undefined;
    if (attrs) {
      safeAttrs = {};
      for (const [k, v] of Object.entries(attrs)) {
        safeAttrs[k] = typeof v === "string" ? redact(v) : v instanceof Error ? redact(v.message) : v;
      }
    }
    try {
      rawLog(level, redact(msg), safeAttrs);
    } catch {
      // A broken log sink must not break routing.
    }
  };

  const warned = new Set<FailureKind>();
  const warnOnce = (kind: FailureKind, detail: string): void => {
    if (warned.has(kind)) return;
    warned.add(kind);
    log("warn", "ab gate falling back to local hash routing", { rule: ruleName, mode, kind, detail });
  };

  // The SDK's own warnings and errors, deduplicated by text so a retrying SDK cannot flood the log.
  const sdkSeen = new Set<string>();
  const sdkEmit = (level: "warn" | "error", parts: unknown[]): void => {
    const text = redact(parts.map((p) => (typeof p === "string" ? p : errorMessage(p))).join(" "));
    if (sdkSeen.has(text) || sdkSeen.size >= MAX_DISTINCT_SDK_MESSAGES) return;
    sdkSeen.add(text);
    log(level, "statsig sdk message", { rule: ruleName, message: text });
  };
  const sdkLogger: LoggerInterface = {
    logLevel: "warn",
    debug: () => {},
    info: () => {},
    warn: (m?: unknown, ...p: unknown[]) => sdkEmit("warn", [m, ...p]),
    error: (m?: unknown, ...p: unknown[]) => sdkEmit("error", [m, ...p]),
  };

  let server: StatsigServer | null = null;
  let initPromise: Promise<void> | null = null;
  let shutdownPromise: Promise<void> | null = null;
  let closed = false;
  /** Why statsig cannot decide, set by init; null while statsig is expected to answer. */
  let initFailure: { kind: FailureKind; detail: string } | null = { kind: FailureKind.NOT_INITIALIZED, detail: "init() has not completed" };
  let counted = false;
  const evalOptions = mode === "offline" ? { disableExposureLogging: true } : undefined;

  const fallback = (userKey: string, kind: FailureKind, detail: string): Decision => {
    warnOnce(kind, detail);
    return { variant: fallbackVariant(userKey, ruleName), source: "fallback", reason: `${kind}: ${detail}`, rule: ruleName };
  };

  /** One Statsig evaluation; throws what the SDK throws. */
  const evaluate = (s: StatsigServer, userKey: string): { b: boolean; reason: string | null; ruleId: string } => {
    const user: StatsigUser = { userID: userKey };
    if (rule.kind === "gate") {
      const g = s.getFeatureGate(user, rule.gate, evalOptions);
      return { b: g.value === true, reason: g.evaluationDetails?.reason ?? null, ruleId: g.ruleID };
    }
    const c = s.getExperiment(user, rule.experiment, evalOptions);
    return { b: c.value?.[rule.parameter] === rule.valueForB, reason: c.getEvaluationDetails()?.reason ?? null, ruleId: c.getRuleID() };
  };

  const failureForReason = (reason: string | null): { kind: FailureKind; detail: string } | null => {
    if (reason === null) return { kind: FailureKind.EVALUATION_ERROR, detail: "the SDK returned a default after an internal error" };
    if (!NON_DECISION_REASONS.has(reason)) return null;
    if (reason === "Uninitialized") return { kind: FailureKind.UNINITIALIZED, detail: "the SDK has no rules loaded" };
    if (reason === "Unrecognized") return { kind: FailureKind.UNRECOGNIZED, detail: `${rule.kind} "${ruleName}" is not in the rules` };
    return { kind: FailureKind.UNSUPPORTED, detail: `${rule.kind} "${ruleName}" uses a condition this SDK cannot evaluate` };
  };

  const isUninitializedError = (err: unknown): boolean =>
    typeof Statsig.StatsigUninitializedError === "function" && err instanceof Statsig.StatsigUninitializedError;

  // The SDK prints through a process-global OutputLogger that only the `Statsig` facade's initialize()
  // replaces, and the facade is not used here (see the module comment), so set it directly. Giving it the
  // key also turns on the SDK's own key scrubbing. If a future SDK moves it, output goes to the console.
  const installSdkLogger = (): void => {
    const OutputLogger = (outputLoggerPkg as { default?: { setLogger?: unknown } }).default;
    if (typeof OutputLogger?.setLogger !== "function") return;
    outputLoggerPkg.default.setLogger(sdkLogger, serverKey ?? OFFLINE_SDK_KEY);
  };
  const doInit = async (): Promise<void> => {
    const startMs = performance.now();
    liveEvaluators += 1;
    counted = true;
    if (liveEvaluators > 1) {
      log("warn", "more than one ab gate evaluator is live in this process; the statsig SDK logger is process-global", { rule: ruleName });
    }

    let bootstrap: string | null = null;
    try {
      if (opts.specJson !== undefined) bootstrap = opts.specJson;
      else if (opts.specPath !== undefined || mode === "offline") bootstrap = await readFile(opts.specPath ?? DEFAULT_SPEC_PATH, "utf8");
      if (bootstrap !== null) checkSpec(bootstrap);
    } catch (err) {
      initFailure = { kind: FailureKind.SPEC_INVALID, detail: redact(errorMessage(err)) };
      warnOnce(initFailure.kind, initFailure.detail);
      return;
    }

    const statsigOptions: StatsigOptions =
      mode === "offline"
        ? {
            localMode: true,
            bootstrapValues: bootstrap,
            disableAllLogging: true,
            disableRulesetsSync: true,
            disableIdListsSync: true,
            initStrategyForIDLists: "none",
            initStrategyForIP3Country: "none",
            disableDiagnostics: true,
            logger: sdkLogger,
            // localMode already refuses the network; this makes any path that forgets to check it fail closed.
            networkOverrideFunc: () => Promise.reject(new Error("network is disabled in offline mode")),
          }
        : {
            bootstrapValues: bootstrap,
            logger: sdkLogger,
            ...(opts.networkOverrideFunc ? { networkOverrideFunc: opts.networkOverrideFunc } : {}),
          };

    let timer: NodeJS.Timeout | undefined;
    try {
      installSdkLogger();
      const s = new Statsig.StatsigServer(serverKey ?? OFFLINE_SDK_KEY, statsigOptions);
      server = s;
      // Our own clearable timer instead of the SDK's initTimeoutMs, whose timer is never cleared.
      const timedOut = new Promise<"timeout">((resolve) => {
        // Not unref'd: init() must settle even when nothing else keeps the event loop alive.
        timer = setTimeout(() => resolve("timeout"), initTimeoutMs);
      });
      const outcome = await Promise.race([s.initializeAsync(), timedOut]);
      if (outcome === "timeout") {
        initFailure = { kind: FailureKind.INIT_TIMEOUT, detail: `statsig init did not finish within ${initTimeoutMs} ms` };
      } else if (!outcome.success) {
        initFailure = { kind: FailureKind.INIT_FAILED, detail: redact(outcome.error ? errorMessage(outcome.error) : "statsig init reported failure") };
      } else {
        initFailure = null;
      }
    } catch (err) {
      initFailure = { kind: FailureKind.INIT_FAILED, detail: redact(errorMessage(err)) };
    } finally {
      clearTimeout(timer);
    }

    // The SDK can report success and still have nothing to evaluate (e.g. an empty online project), or
    // report failure and still serve bootstrap values: one probe evaluation settles what decide() will see.
    if (server !== null && !closed) {
      try {
        const probe = failureForReason(evaluate(server, PROBE_USER_KEY).reason);
        // A usable probe wins over a reported init failure; otherwise the init failure is the better explanation.
        initFailure = probe === null ? null : (initFailure ?? probe);
      } catch (err) {
        initFailure ??= { kind: isUninitializedError(err) ? FailureKind.UNINITIALIZED : FailureKind.EVALUATION_ERROR, detail: redact(errorMessage(err)) };
      }
    }
    const initMs = Math.round((performance.now() - startMs) * 100) / 100;
    if (initFailure === null) log("info", "ab gate ready", { rule: ruleName, mode, initMs });
    else warnOnce(initFailure.kind, initFailure.detail);
  };

  return {
    mode,
    init(): Promise<void> {
      if (closed) return Promise.resolve();
      initPromise ??= doInit().catch((err: unknown) => {
        initFailure = { kind: FailureKind.INIT_FAILED, detail: redact(errorMessage(err)) };
        warnOnce(initFailure.kind, initFailure.detail);
      });
      return initPromise;
    },

    decide(userKey: string): Decision {
      if (closed) return fallback(userKey, FailureKind.SHUT_DOWN, "the evaluator was shut down");
      const s = server;
      if (s === null) {
        const f = initFailure ?? { kind: FailureKind.NOT_INITIALIZED, detail: "init() has not completed" };
        return fallback(userKey, f.kind, f.detail);
      }
      try {
        const r = evaluate(s, userKey);
        const f = failureForReason(r.reason);
        if (f !== null) {
          // Prefer the init failure as the explanation when the SDK merely reports it has no rules.
          const why = f.kind === FailureKind.UNINITIALIZED && initFailure !== null ? initFailure : f;
          return fallback(userKey, why.kind, why.detail);
        }
        return { variant: r.b ? "B" : "A", source: "statsig", reason: `${r.reason}:${r.ruleId || "default"}`, rule: ruleName };
      } catch (err) {
        if (isUninitializedError(err)) {
          const why = initFailure ?? { kind: FailureKind.UNINITIALIZED, detail: "the SDK is not initialised" };
          return fallback(userKey, why.kind, why.detail);
        }
        return fallback(userKey, FailureKind.EVALUATION_ERROR, redact(errorMessage(err)));
      }
    },

    shutdown(): Promise<void> {
      shutdownPromise ??= (async () => {
        closed = true;
        if (initPromise !== null) await initPromise;
        const s = server;
        server = null;
        try {
          if (s !== null) await s.shutdownAsync(SHUTDOWN_TIMEOUT_MS);
        } catch (err) {
          log("warn", "statsig shutdown failed", { rule: ruleName, error: redact(errorMessage(err)) });
        } finally {
          // The SDK logger stays ours: requests still in flight in a shut-down SDK report late, and they
          // must stay redacted. The next evaluator in this process installs its own.
          if (counted) {
            counted = false;
            liveEvaluators -= 1;
          }
        }
      })();
      return shutdownPromise;
    },
  };
}
