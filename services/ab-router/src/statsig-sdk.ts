/**
 * Everything that touches statsig-node: its ESM interop, the options of each mode, its process-global output
 * logger (reached through a private module of the package) and one evaluation of a routing rule.
 *
 * Each evaluator owns a `StatsigServer` instance rather than the `Statsig` facade, because the facade is a
 * process-wide singleton that, re-initialised after `shutdownAsync()`, silently keeps the first instance and its
 * first rule set.
 */
import statsigPkg from "statsig-node";
import outputLoggerPkg from "statsig-node/dist/OutputLogger.js";
import type { LoggerInterface, NetworkOverrideFunc, StatsigOptions, StatsigServer, StatsigUser } from "statsig-node";
import type { RoutingRule } from "./rule.ts";
import { errorMessage, type Redact } from "./redact.ts";

export type { StatsigServer };

// Under ESM the package's named export `Statsig` is undefined at runtime; the default export is the facade.
const Statsig = statsigPkg.default;

/** Any key works in localMode; this one is used whenever no server key is given. */
export const OFFLINE_SDK_KEY = "offline";
const MAX_DISTINCT_SDK_MESSAGES = 100;

/**
 * A logger for the SDK's own warnings and errors: redacted, deduplicated by text (at most
 * {@link MAX_DISTINCT_SDK_MESSAGES} distinct texts) so a retrying SDK cannot flood the log; debug and info dropped.
 */
export function createSdkLogger(
  redact: Redact,
  emit: (level: "warn" | "error", text: string) => void,
): LoggerInterface {
  const seen = new Set<string>();
  const forward = (level: "warn" | "error", parts: unknown[]): void => {
    const text = redact(parts.map((p) => (typeof p === "string" ? p : errorMessage(p))).join(" "));
    if (seen.has(text) || seen.size >= MAX_DISTINCT_SDK_MESSAGES) return;
    seen.add(text);
    emit(level, text);
  };
  return {
    logLevel: "warn",
    debug: () => {},
    info: () => {},
    warn: (m?: unknown, ...p: unknown[]) => forward("warn", [m, ...p]),
    error: (m?: unknown, ...p: unknown[]) => forward("error", [m, ...p]),
  };
}

/**
 * Points the SDK's process-global OutputLogger at `logger`. Only the `Statsig` facade's initialize() does this,
 * and the facade is not used (see the module comment), so it is set directly. Giving it the key also turns on the
 * SDK's own key scrubbing. If a future SDK moves the module, SDK output goes to the console instead.
 */
export function installSdkOutputLogger(logger: LoggerInterface, sdkKey: string): void {
  const OutputLogger = (outputLoggerPkg as { default?: { setLogger?: unknown } }).default;
  if (typeof OutputLogger?.setLogger !== "function") return;
  outputLoggerPkg.default.setLogger(logger, sdkKey);
}

export interface SdkOptionsInput {
  readonly offline: boolean;
  readonly bootstrapValues: string | null;
  readonly logger: LoggerInterface;
  /** Online mode only. */
  readonly networkOverrideFunc?: NetworkOverrideFunc | undefined;
}

/**
 * Offline: localMode with every sync, logging and diagnostics path disabled, and an HTTP function that rejects,
 * so the SDK makes no network attempt at all. Online: the SDK's defaults, bootstrapped from the spec if one is given.
 */
export function sdkOptions(input: SdkOptionsInput): StatsigOptions {
  if (input.offline) {
    return {
      localMode: true,
      bootstrapValues: input.bootstrapValues,
      disableAllLogging: true,
      disableRulesetsSync: true,
      disableIdListsSync: true,
      initStrategyForIDLists: "none",
      initStrategyForIP3Country: "none",
      disableDiagnostics: true,
      logger: input.logger,
      // localMode already refuses the network; this makes any path that forgets to check it fail closed.
      networkOverrideFunc: () => Promise.reject(new Error("network is disabled in offline mode")),
    };
  }
  return {
    bootstrapValues: input.bootstrapValues,
    logger: input.logger,
    ...(input.networkOverrideFunc ? { networkOverrideFunc: input.networkOverrideFunc } : {}),
  };
}

export function createStatsigServer(sdkKey: string, options: StatsigOptions): StatsigServer {
  return new Statsig.StatsigServer(sdkKey, options);
}

export function isUninitializedError(err: unknown): boolean {
  return typeof Statsig.StatsigUninitializedError === "function" && err instanceof Statsig.StatsigUninitializedError;
}

export interface RuleEvaluation {
  /** Whether the answer means variant B. */
  readonly b: boolean;
  /** The SDK's evaluation reason (e.g. "Bootstrap", "Unrecognized"); null after an internal SDK error. */
  readonly reason: string | null;
  readonly ruleId: string;
}

/** One Statsig evaluation of `rule` for `userKey`; throws what the SDK throws. */
export function evaluateRule(
  server: StatsigServer,
  rule: RoutingRule,
  userKey: string,
  options: { disableExposureLogging: boolean } | undefined,
): RuleEvaluation {
  const user: StatsigUser = { userID: userKey };
  if (rule.kind === "gate") {
    const g = server.getFeatureGate(user, rule.gate, options);
    return { b: g.value === true, reason: g.evaluationDetails?.reason ?? null, ruleId: g.ruleID };
  }
  const c = server.getExperiment(user, rule.experiment, options);
  return {
    b: c.value?.[rule.parameter] === rule.valueForB,
    reason: c.getEvaluationDetails()?.reason ?? null,
    ruleId: c.getRuleID(),
  };
}
