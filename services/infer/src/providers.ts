/**
 * Choosing onnxruntime's execution provider, as a pure function over a session factory (no onnxruntime import),
 * so the policy is tested with fakes and the ORT worker only supplies `create`.
 *
 * `auto` tries CUDA, then WebGPU, then CPU, one at a time and in that order (two providers never initialise a
 * device at once), and keeps the first session that is created; every failed attempt is recorded with its reason
 * in plain words (the error's first line without onnxruntime's source location) and how long it took. A forced
 * provider (`cuda`, `webgpu`, `cpu`) is tried alone: if it cannot start, selection fails with its reason, never a
 * quiet run on another provider. `auto` may also pass over a provider without trying it, for a reason the caller
 * gives (`skip`: WebGPU where only a software adapter exists, ./gpu-devices.ts); that reason is its attempt's.
 */

/** The providers a session can run on. */
export const ExecutionProvider = { cuda: "cuda", webgpu: "webgpu", cpu: "cpu" } as const;
export type ExecutionProvider = (typeof ExecutionProvider)[keyof typeof ExecutionProvider];

/** What the EXECUTION_PROVIDER parameter may say: a provider, or `auto`. */
export const EXECUTION_PROVIDER_CHOICES = ["auto", "cuda", "webgpu", "cpu"] as const;
export type ExecutionProviderChoice = (typeof EXECUTION_PROVIDER_CHOICES)[number];

/** The order `auto` tries. */
export const AUTO_ORDER: readonly ExecutionProvider[] = [
  ExecutionProvider.cuda,
  ExecutionProvider.webgpu,
  ExecutionProvider.cpu,
];

/** One provider that was tried and did not start. */
export interface ProviderAttempt {
  readonly provider: ExecutionProvider;
  /** The error's first line, in plain words. */
  readonly reason: string;
  /** How long the attempt took. */
  readonly ms: number;
}

export interface ProviderSelection<S> {
  readonly provider: ExecutionProvider;
  readonly session: S;
  /** The providers tried before `provider`, in order, with why each did not start (empty: the first one did). */
  readonly fallbacks: readonly ProviderAttempt[];
}

/** No provider could start: a forced one failed, or (`auto`) every one did. */
export class ProviderSelectionError extends Error {
  constructor(
    readonly choice: ExecutionProviderChoice,
    readonly attempts: readonly ProviderAttempt[],
  ) {
    const reason = attempts[0]?.reason ?? "not tried";
    super(
      choice === "auto"
        ? `no execution provider could start (${attempts.map((a) => `${a.provider}: ${a.reason}`).join("; ")})`
        : choice === "cpu"
          ? `could not create an onnxruntime session on cpu: ${reason}`
          : `execution provider ${choice} did not start: ${reason}`,
    );
    this.name = "ProviderSelectionError";
  }
}

export function isExecutionProviderChoice(x: unknown): x is ExecutionProviderChoice {
  return typeof x === "string" && (EXECUTION_PROVIDER_CHOICES as readonly string[]).includes(x);
}

/** The providers tried for `choice`, in order. */
export function providerCandidates(choice: ExecutionProviderChoice): readonly ExecutionProvider[] {
  return choice === "auto" ? AUTO_ORDER : [choice];
}

const MAX_REASON_CHARS = 300;

/**
 * The reason an error gives, in plain words: its first non-empty line, without onnxruntime's source location and
 * failed-check prefix, e.g.
 *   "/onnxruntime_src/.../webgpu_context.cc:136 onnxruntime::...::<lambda()> adapter_result.status == ... was false.
 *    Failed to get a WebGPU adapter: No supported adapters"  ->  "Failed to get a WebGPU adapter: No supported adapters"
 *   "[ONNXRuntimeError] : 1 : FAIL : Load model from x failed: ..."  ->  "Load model from x failed: ..."
 */
export function plainReason(err: unknown): string {
  const raw = err instanceof Error ? err.message : typeof err === "string" ? err : String(err);
  let line =
    raw
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l !== "") ?? "";
  // "<file>.cc:<line> <function> <check> was false. <message>": keep the message.
  const check = /^\S+\.(?:cc|cpp|h|hpp|c):\d+ .*? was (?:false|true)\.\s+(.+)$/.exec(line);
  if (check) line = check[1]!;
  else line = line.replace(/^\S+\.(?:cc|cpp|h|hpp|c):\d+ (?:\S+::\S+ )?/, "");
  line = line.replace(/^\[ONNXRuntimeError\] : \d+ : \w+ : /, "");
  if (line === "") line = err instanceof Error ? err.name : "unknown error";
  return line.length > MAX_REASON_CHARS ? `${line.slice(0, MAX_REASON_CHARS)}...` : line;
}

export interface SelectOptions {
  /** Monotonic milliseconds; default `performance.now`. */
  now?: () => number;
  /**
   * `auto` only: a reason not to try `provider` on this machine (e.g. WebGPU with only a software adapter), recorded
   * as its attempt; undefined tries it. A forced provider is always tried.
   */
  skip?: (provider: ExecutionProvider) => string | undefined;
  /** Called after each failed attempt (e.g. to log it). */
  onFallback?: (attempt: ProviderAttempt) => void;
}

/**
 * Creates a session on the first provider of `choice` that starts (see the top of this file). `create` is called
 * once per candidate, sequentially. Rejects with {@link ProviderSelectionError} when none starts.
 */
export async function selectProvider<S>(
  choice: ExecutionProviderChoice,
  create: (provider: ExecutionProvider) => Promise<S>,
  opts: SelectOptions = {},
): Promise<ProviderSelection<S>> {
  if (!isExecutionProviderChoice(choice))
    throw new TypeError(`unknown execution provider choice ${JSON.stringify(choice)}`);
  const now = opts.now ?? (() => performance.now());
  const failed: ProviderAttempt[] = [];
  for (const provider of providerCandidates(choice)) {
    const skipped = choice === "auto" ? opts.skip?.(provider) : undefined;
    if (skipped !== undefined) {
      const attempt: ProviderAttempt = { provider, reason: skipped, ms: 0 };
      failed.push(attempt);
      opts.onFallback?.(attempt);
      continue;
    }
    const t0 = now();
    try {
      const session = await create(provider);
      return { provider, session, fallbacks: failed };
    } catch (err) {
      const attempt: ProviderAttempt = { provider, reason: plainReason(err), ms: now() - t0 };
      failed.push(attempt);
      opts.onFallback?.(attempt);
    }
  }
  throw new ProviderSelectionError(choice, failed);
}

/** Fallbacks as one short line: `cuda: <reason>; webgpu: <reason>` (empty when there were none). */
export function formatFallbacks(fallbacks: readonly ProviderAttempt[]): string {
  return fallbacks.map((a) => `${a.provider}: ${a.reason}`).join("; ");
}
