/**
 * Per-user A/B decision for the ab-router node: a Statsig feature gate or experiment parameter, with a
 * deterministic local fallback so a decision is always available.
 *
 * Modes
 * - offline (no `serverKey`): statsig-node in `localMode` with `bootstrapValues` read from a v1
 *   `download_config_specs` JSON (default `gates/default-spec.json`, see ./spec.ts). The SDK makes no network
 *   attempt at all (./statsig-sdk.ts).
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
 * Process model: each evaluator owns its own SDK instance, but the SDK's output logger and diagnostics are
 * process-global, so one live evaluator per process is supported (a second one logs a warning); create a new
 * one only after `shutdown()` of the previous one.
 *
 * Secrets: the server key is never logged. Every message this module logs, including the SDK's own
 * output, which is routed through `log`, has the key replaced with "***" (./redact.ts).
 */
import type { NetworkOverrideFunc } from "statsig-node";
import { createLogger } from "../../../runtime/index.ts";
import { fallbackVariant, type Variant } from "./fallback.ts";
import { createRedact, errorMessage, redactingLog, type GateLogFn } from "./redact.ts";
import type { RoutingRule } from "./rule.ts";
import { loadSpec } from "./spec.ts";
import {
  OFFLINE_SDK_KEY,
  createSdkLogger,
  createStatsigServer,
  evaluateRule,
  installSdkOutputLogger,
  isUninitializedError,
  sdkOptions,
  type StatsigServer,
} from "./statsig-sdk.ts";

// Integration tests predict fallback decisions with it; it is part of what decide() promises.
export { fallbackVariant, type GateLogFn, type Variant };

export type { RoutingRule };

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

export const DEFAULT_INIT_TIMEOUT_MS = 3000;
const SHUTDOWN_TIMEOUT_MS = 3000;
/** Evaluated once after init to surface an unusable rule set at start-up rather than on the first request. */
const PROBE_USER_KEY = "ab-router-init-probe";

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

interface Failure {
  kind: FailureKind;
  detail: string;
}

const NOT_INITIALIZED: Failure = { kind: FailureKind.NOT_INITIALIZED, detail: "init() has not completed" };

/**
 * What an evaluation reason means for routing: null when the SDK decided, otherwise why its answer is only a
 * default and the fallback must route instead.
 */
function failureForReason(reason: string | null, rule: RoutingRule, ruleName: string): Failure | null {
  switch (reason) {
    case null:
      return { kind: FailureKind.EVALUATION_ERROR, detail: "the SDK returned a default after an internal error" };
    case "Uninitialized":
      return { kind: FailureKind.UNINITIALIZED, detail: "the SDK has no rules loaded" };
    case "Unrecognized":
      return { kind: FailureKind.UNRECOGNIZED, detail: `${rule.kind} "${ruleName}" is not in the rules` };
    case "Unsupported":
      return {
        kind: FailureKind.UNSUPPORTED,
        detail: `${rule.kind} "${ruleName}" uses a condition this SDK cannot evaluate`,
      };
    default:
      return null;
  }
}

let liveEvaluators = 0;

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
  const redact = createRedact(serverKey);
  const log = redactingLog(opts.log ?? defaultLog(), redact);
  const sdkLogger = createSdkLogger(redact, (level, text) =>
    log(level, "statsig sdk message", { rule: ruleName, message: text }),
  );
  const evalOptions = mode === "offline" ? { disableExposureLogging: true } : undefined;

  const warned = new Set<FailureKind>();
  const warnOnce = ({ kind, detail }: Failure): void => {
    if (warned.has(kind)) return;
    warned.add(kind);
    log("warn", "ab gate falling back to local hash routing", { rule: ruleName, mode, kind, detail });
  };
  const failed = (kind: FailureKind, err: unknown): Failure => ({ kind, detail: redact(errorMessage(err)) });

  let server: StatsigServer | null = null;
  let initPromise: Promise<void> | null = null;
  let shutdownPromise: Promise<void> | null = null;
  let closed = false;
  /** Why statsig cannot decide, set by init; null while statsig is expected to answer. */
  let initFailure: Failure | null = NOT_INITIALIZED;
  let counted = false;

  const fallback = (userKey: string, why: Failure): Decision => {
    warnOnce(why);
    return {
      variant: fallbackVariant(userKey, ruleName),
      source: "fallback",
      reason: `${why.kind}: ${why.detail}`,
      rule: ruleName,
    };
  };

  /** Starts the SDK; resolves with why it cannot decide, or null. */
  const startSdk = async (bootstrapValues: string | null): Promise<Failure | null> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      installSdkOutputLogger(sdkLogger, serverKey ?? OFFLINE_SDK_KEY);
      const options = sdkOptions({
        offline: mode === "offline",
        bootstrapValues,
        logger: sdkLogger,
        networkOverrideFunc: opts.networkOverrideFunc,
      });
      const s = createStatsigServer(serverKey ?? OFFLINE_SDK_KEY, options);
      server = s;
      // Our own clearable timer instead of the SDK's initTimeoutMs, whose timer is never cleared.
      const timedOut = new Promise<"timeout">((resolve) => {
        // Not unref'd: init() must settle even when nothing else keeps the event loop alive.
        timer = setTimeout(() => resolve("timeout"), initTimeoutMs);
      });
      const outcome = await Promise.race([s.initializeAsync(), timedOut]);
      if (outcome === "timeout")
        return { kind: FailureKind.INIT_TIMEOUT, detail: `statsig init did not finish within ${initTimeoutMs} ms` };
      if (!outcome.success) return failed(FailureKind.INIT_FAILED, outcome.error ?? "statsig init reported failure");
      return null;
    } catch (err) {
      return failed(FailureKind.INIT_FAILED, err);
    } finally {
      clearTimeout(timer);
    }
  };

  const doInit = async (): Promise<void> => {
    const startMs = performance.now();
    liveEvaluators += 1;
    counted = true;
    if (liveEvaluators > 1) {
      log("warn", "more than one ab gate evaluator is live in this process; the statsig SDK logger is process-global", {
        rule: ruleName,
      });
    }

    let bootstrap: string | null;
    try {
      bootstrap = await loadSpec({ specJson: opts.specJson, specPath: opts.specPath, offline: mode === "offline" });
    } catch (err) {
      initFailure = failed(FailureKind.SPEC_INVALID, err);
      warnOnce(initFailure);
      return;
    }
    initFailure = await startSdk(bootstrap);

    // The SDK can report success and still have nothing to evaluate (e.g. an empty online project), or
    // report failure and still serve bootstrap values: one probe evaluation settles what decide() will see.
    if (server !== null && !closed) {
      try {
        const probe = failureForReason(evaluateRule(server, rule, PROBE_USER_KEY, evalOptions).reason, rule, ruleName);
        // A usable probe wins over a reported init failure; otherwise the init failure is the better explanation.
        initFailure = probe === null ? null : (initFailure ?? probe);
      } catch (err) {
        initFailure ??= failed(
          isUninitializedError(err) ? FailureKind.UNINITIALIZED : FailureKind.EVALUATION_ERROR,
          err,
        );
      }
    }
    const initMs = Math.round((performance.now() - startMs) * 100) / 100;
    if (initFailure === null) log("info", "ab gate ready", { rule: ruleName, mode, initMs });
    else warnOnce(initFailure);
  };

  return {
    mode,
    init(): Promise<void> {
      if (closed) return Promise.resolve();
      initPromise ??= doInit().catch((err: unknown) => {
        initFailure = failed(FailureKind.INIT_FAILED, err);
        warnOnce(initFailure);
      });
      return initPromise;
    },

    decide(userKey: string): Decision {
      if (closed) return fallback(userKey, { kind: FailureKind.SHUT_DOWN, detail: "the evaluator was shut down" });
      const s = server;
      if (s === null) return fallback(userKey, initFailure ?? NOT_INITIALIZED);
      try {
        const r = evaluateRule(s, rule, userKey, evalOptions);
        const f = failureForReason(r.reason, rule, ruleName);
        if (f !== null) {
          // Prefer the init failure as the explanation when the SDK merely reports it has no rules.
          return fallback(userKey, f.kind === FailureKind.UNINITIALIZED && initFailure !== null ? initFailure : f);
        }
        return {
          variant: r.b ? "B" : "A",
          source: "statsig",
          reason: `${r.reason}:${r.ruleId || "default"}`,
          rule: ruleName,
        };
      } catch (err) {
        if (isUninitializedError(err)) {
          return fallback(
            userKey,
            initFailure ?? { kind: FailureKind.UNINITIALIZED, detail: "the SDK is not initialised" },
          );
        }
        return fallback(userKey, failed(FailureKind.EVALUATION_ERROR, err));
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
