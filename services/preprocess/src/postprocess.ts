/**
 * Logits -> probabilities -> ranked classes, as the reference does it: a float64 softmax and
 * numpy's `argsort(-probs)` order (descending score; equal scores keep the lower class index first).
 */

export interface ScoredClass {
  readonly index: number;
  readonly label: string;
  readonly score: number;
}

/**
 * Softmax in float64 with the maximum subtracted first, so large logits neither overflow nor lose the
 * small probabilities. An empty input gives an empty output. Non-finite logits give NaNs, as numpy
 * would; callers validate logits before ranking them.
 */
export function softmax(logits: Float32Array): Float64Array {
  const n = logits.length;
  const out = new Float64Array(n);
  if (n === 0) return out;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp(logits[i]! - max);
    out[i] = e;
    sum += e;
  }
  for (let i = 0; i < n; i++) out[i]! /= sum;
  return out;
}

/**
 * The `k` highest scores, best first. Ties rank the lower index first (a stable descending sort, as
 * numpy `argsort(-p, kind="stable")`). `k` is clamped to [0, probs.length]; a missing label is
 * reported as `"class <index>"`.
 */
export function topK(probs: ArrayLike<number>, k: number, labels: readonly string[]): ScoredClass[] {
  const n = probs.length;
  const count = Math.max(0, Math.min(Number.isFinite(k) ? Math.floor(k) : n, n));
  if (count === 0) return [];
  // Partial selection: keep a sorted list of the best `count` indices (count is small in practice).
  const best: number[] = [];
  const better = (a: number, b: number): boolean => {
    const pa = probs[a]!,
      pb = probs[b]!;
    return pa > pb || (pa === pb && a < b);
  };
  for (let i = 0; i < n; i++) {
    if (best.length === count && !better(i, best[count - 1]!)) continue;
    let pos = best.length === count ? count - 1 : best.length;
    while (pos > 0 && better(i, best[pos - 1]!)) {
      best[pos] = best[pos - 1]!;
      pos--;
    }
    best[pos] = i;
  }
  return best.map((index) => ({ index, label: labels[index] ?? `class ${index}`, score: probs[index]! }));
}
