/**
 * Reading one Prometheus histogram (e.g. infer's `sg_batch_size`) out of /metrics text, summing it over
 * replicas, and turning the difference of two scrapes into the histogram of what happened in between.
 */

/** Cumulative bucket counts by upper bound (`le`), plus `_sum` and `_count`, summed over label sets. */
export interface HistogramSnapshot {
  /** Upper bounds in ascending order, `Infinity` last when present. */
  bounds: number[];
  /** Cumulative counts, one per bound. */
  cumulative: number[];
  sum: number;
  count: number;
}

/** One bucket of a de-cumulated histogram of integer observations (batch sizes): `range` reads "1", "3-4", "33+". */
export interface HistogramBucket {
  range: string;
  /** Smallest and largest integer value the bucket holds (`max` is Infinity for the last one; null in JSON). */
  min: number;
  max: number;
  count: number;
}

const SAMPLE = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
const LE = /(?:^|,)\s*le="([^"]*)"/;

function parseValue(v: string): number {
  if (v === "+Inf") return Infinity;
  if (v === "-Inf") return -Infinity;
  return Number(v);
}

/** Parses `<name>_bucket`, `<name>_sum`, `<name>_count` samples; undefined when the metric is absent. */
export function parseHistogram(text: string, name: string): HistogramSnapshot | undefined {
  const buckets = new Map<number, number>();
  let sum = 0;
  let count = 0;
  let seen = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line.startsWith(name)) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const [, metric, labels = "", raw] = m;
    const value = parseValue(raw!);
    if (!Number.isFinite(value)) continue;
    if (metric === `${name}_bucket`) {
      const le = LE.exec(labels);
      if (!le) continue;
      const bound = parseValue(le[1]!);
      buckets.set(bound, (buckets.get(bound) ?? 0) + value);
      seen = true;
    } else if (metric === `${name}_sum`) {
      sum += value;
      seen = true;
    } else if (metric === `${name}_count`) {
      count += value;
      seen = true;
    }
  }
  if (!seen) return undefined;
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  return { bounds, cumulative: bounds.map((b) => buckets.get(b)!), sum, count };
}

/** Adds snapshots of several replicas (same buckets expected; a bound missing on one counts as 0 there). */
export function addHistograms(snaps: readonly HistogramSnapshot[]): HistogramSnapshot | undefined {
  if (snaps.length === 0) return undefined;
  const bounds = [...new Set(snaps.flatMap((s) => s.bounds))].sort((a, b) => a - b);
  const cumulative = bounds.map((b) =>
    snaps.reduce((acc, s) => {
      // cumulative count at bound b = count of the largest bound <= b
      let v = 0;
      for (let i = 0; i < s.bounds.length && s.bounds[i]! <= b; i++) v = s.cumulative[i]!;
      return acc + v;
    }, 0),
  );
  return {
    bounds,
    cumulative,
    sum: snaps.reduce((a, s) => a + s.sum, 0),
    count: snaps.reduce((a, s) => a + s.count, 0),
  };
}

/**
 * What was observed between two scrapes, as non-cumulative buckets of integer values. A replica
 * restarted in between makes counts go down: those are clamped at 0 (the result is then a lower bound).
 */
export function diffHistogram(
  before: HistogramSnapshot | undefined,
  after: HistogramSnapshot,
): { buckets: HistogramBucket[]; count: number; sum: number } {
  const at = (s: HistogramSnapshot | undefined, b: number): number => {
    if (!s) return 0;
    let v = 0;
    for (let i = 0; i < s.bounds.length && s.bounds[i]! <= b; i++) v = s.cumulative[i]!;
    return v;
  };
  const buckets: HistogramBucket[] = [];
  let prevBound = 0;
  let prevCum = 0;
  for (const b of after.bounds) {
    const cum = Math.max(0, at(after, b) - at(before, b));
    const min = Math.floor(prevBound) + 1;
    const max = b === Infinity ? Infinity : Math.floor(b);
    const range = max === Infinity ? `${min}+` : min === max ? `${max}` : `${min}-${max}`;
    if (max >= min) buckets.push({ range, min, max, count: Math.max(0, cum - prevCum) });
    prevBound = b;
    prevCum = Math.max(prevCum, cum);
  }
  return {
    buckets,
    count: Math.max(0, after.count - (before?.count ?? 0)),
    sum: Math.max(0, after.sum - (before?.sum ?? 0)),
  };
}
