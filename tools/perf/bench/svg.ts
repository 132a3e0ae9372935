/**
 * A hand-written SVG chart of a bench run: one panel per target, throughput per concurrency as bars on
 * the left axis (req/s), p50 and p99 latency as lines on the right axis (ms), plus an optional
 * horizontal reference line on the throughput axis (a goal, or the limit the stages allow).
 */

export interface ChartLevel {
  concurrency: number;
  rps: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface ChartPanel {
  title: string;
  /** Unit of the throughput axis, e.g. "req/s" or "images/s". */
  rateUnit: string;
  levels: ChartLevel[];
  reference?: { value: number; label: string };
  note?: string;
}

export interface ChartOptions {
  title: string;
  subtitle: string;
  panels: ChartPanel[];
}

const PANEL_W = 470;
const PANEL_H = 330;
const M = { top: 50, right: 58, bottom: 62, left: 64 } as const;
/** A white outline under value labels keeps them readable where they cross a bar or a line. */
const HALO = `paint-order="stroke" stroke="white" stroke-width="3" stroke-linejoin="round"`;
const COLORS = {
  bar: "#6b9bd1",
  barText: "#1f3b5c",
  p50: "#2a9d4a",
  p99: "#d1495b",
  ref: "#555",
  grid: "#e3e3e3",
  axis: "#333",
} as const;

export function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A round axis maximum (1, 2, 2.5 or 5 times a power of ten) at or above `v`, and its tick step. */
export function niceScale(v: number, ticks = 6): { max: number; step: number } {
  if (!(v > 0) || !Number.isFinite(v)) return { max: 1, step: 0.2 };
  const raw = v / ticks;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
  return { max: Math.ceil(v / step - 1e-9) * step, step };
}

function fmt(v: number): string {
  if (v >= 100) return Math.round(v).toLocaleString("en-US");
  if (v >= 10) return v.toFixed(1).replace(/\.0$/, "");
  return v.toFixed(2).replace(/0$/, "").replace(/\.0$/, "");
}

function panel(p: ChartPanel, x0: number, y0: number): string {
  const w = PANEL_W - M.left - M.right;
  const h = PANEL_H - M.top - M.bottom;
  const left = x0 + M.left;
  const top = y0 + M.top;
  const bottom = top + h;
  const out: string[] = [];
  out.push(
    `<text x="${x0 + PANEL_W / 2}" y="${y0 + 22}" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(p.title)}</text>`,
  );
  if (p.note)
    out.push(
      `<text x="${x0 + PANEL_W / 2}" y="${y0 + 39}" text-anchor="middle" font-size="11" fill="#555">${escapeXml(p.note)}</text>`,
    );

  const rateMax = Math.max(...p.levels.map((l) => l.rps), p.reference?.value ?? 0);
  const rs = niceScale(rateMax * 1.08);
  const latMax = Math.max(...p.levels.flatMap((l) => [l.p50Ms ?? 0, l.p99Ms ?? 0]));
  const ls = niceScale(latMax * 1.08);
  const yRate = (v: number): number => bottom - (v / rs.max) * h;
  const yLat = (v: number): number => bottom - (v / ls.max) * h;

  // grid and left axis (throughput)
  for (let v = 0; v <= rs.max + 1e-9; v += rs.step) {
    const y = yRate(v).toFixed(1);
    out.push(`<line x1="${left}" y1="${y}" x2="${left + w}" y2="${y}" stroke="${COLORS.grid}"/>`);
    out.push(
      `<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" font-size="11">${fmt(v)}</text>`,
    );
  }
  // right axis (latency)
  for (let v = 0; v <= ls.max + 1e-9; v += ls.step) {
    const y = yLat(v).toFixed(1);
    out.push(`<line x1="${left + w}" y1="${y}" x2="${left + w + 4}" y2="${y}" stroke="${COLORS.axis}"/>`);
    out.push(`<text x="${left + w + 7}" y="${y}" dominant-baseline="middle" font-size="11">${fmt(v)}</text>`);
  }
  out.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="${COLORS.axis}"/>`);
  out.push(`<line x1="${left + w}" y1="${top}" x2="${left + w}" y2="${bottom}" stroke="${COLORS.axis}"/>`);
  out.push(`<line x1="${left}" y1="${bottom}" x2="${left + w}" y2="${bottom}" stroke="${COLORS.axis}"/>`);
  const midY = top + h / 2;
  out.push(
    `<text transform="translate(${x0 + 16},${midY}) rotate(-90)" text-anchor="middle" font-size="12">throughput (${escapeXml(p.rateUnit)}, bars)</text>`,
  );
  out.push(
    `<text transform="translate(${x0 + PANEL_W - 10},${midY}) rotate(90)" text-anchor="middle" font-size="12">latency (ms, lines)</text>`,
  );
  out.push(
    `<text x="${left + w / 2}" y="${bottom + 36}" text-anchor="middle" font-size="12">concurrency (connections, closed loop)</text>`,
  );

  // bars
  const n = Math.max(1, p.levels.length);
  const slot = w / n;
  const barW = Math.min(70, slot * 0.55);
  const cx = (i: number): number => left + slot * (i + 0.5);
  p.levels.forEach((l, i) => {
    const y = yRate(l.rps);
    out.push(
      `<rect x="${(cx(i) - barW / 2).toFixed(1)}" y="${y.toFixed(1)}" width="${barW.toFixed(1)}" height="${(bottom - y).toFixed(1)}" fill="${COLORS.bar}"><title>${escapeXml(`C=${l.concurrency}: ${fmt(l.rps)} ${p.rateUnit}`)}</title></rect>`,
    );
    out.push(
      `<text x="${cx(i).toFixed(1)}" y="${(y - 4).toFixed(1)}" text-anchor="middle" font-size="11" fill="${COLORS.barText}" ${HALO}>${fmt(l.rps)}</text>`,
    );
    out.push(
      `<text x="${cx(i).toFixed(1)}" y="${bottom + 16}" text-anchor="middle" font-size="12">${l.concurrency}</text>`,
    );
  });

  // reference line
  if (p.reference) {
    const y = yRate(p.reference.value).toFixed(1);
    out.push(`<line x1="${left}" y1="${y}" x2="${left + w}" y2="${y}" stroke="${COLORS.ref}" stroke-dasharray="6 4"/>`);
    out.push(
      `<text x="${left + 4}" y="${(Number(y) - 4).toFixed(1)}" font-size="11" fill="${COLORS.ref}" ${HALO}>${escapeXml(p.reference.label)}</text>`,
    );
  }

  // latency lines
  for (const [key, color, label] of [
    ["p50Ms", COLORS.p50, "p50"],
    ["p99Ms", COLORS.p99, "p99"],
  ] as const) {
    const pts = p.levels
      .map((l, i) => [cx(i), l[key]] as const)
      .filter((q): q is readonly [number, number] => q[1] !== null);
    if (pts.length > 1)
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map(([x, v]) => `${x.toFixed(1)},${yLat(v).toFixed(1)}`).join(" ")}"/>`,
      );
    for (const [x, v] of pts) {
      out.push(
        `<circle cx="${x.toFixed(1)}" cy="${yLat(v).toFixed(1)}" r="3.5" fill="${color}"><title>${label} ${fmt(v)} ms</title></circle>`,
      );
      out.push(
        `<text x="${(x + 6).toFixed(1)}" y="${(yLat(v) - 6).toFixed(1)}" font-size="10" fill="${color}" ${HALO}>${fmt(v)}</text>`,
      );
    }
  }

  // legend
  const ly = bottom + 52;
  let lx = left;
  out.push(
    `<rect x="${lx}" y="${ly - 9}" width="12" height="10" fill="${COLORS.bar}"/><text x="${lx + 16}" y="${ly}" font-size="11">throughput</text>`,
  );
  lx += 88;
  for (const [color, label] of [
    [COLORS.p50, "p50 latency"],
    [COLORS.p99, "p99 latency"],
  ] as const) {
    out.push(
      `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 16}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/><text x="${lx + 20}" y="${ly}" font-size="11">${label}</text>`,
    );
    lx += 96;
  }
  if (p.reference)
    out.push(
      `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 16}" y2="${ly - 4}" stroke="${COLORS.ref}" stroke-dasharray="4 3"/><text x="${lx + 20}" y="${ly}" font-size="11">reference</text>`,
    );
  return out.join("\n");
}

export function renderChart(o: ChartOptions): string {
  const cols = Math.max(1, o.panels.length);
  const gap = 40;
  const span = cols * PANEL_W + (cols - 1) * gap;
  const width = Math.max(span + 20, 860);
  const height = PANEL_H + 70;
  const x0 = (width - span) / 2;
  const body = o.panels.map((p, i) => panel(p, x0 + i * (PANEL_W + gap), 50)).join("\n");
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="17" font-weight="bold">${escapeXml(o.title)}</text>`,
    `<text x="${width / 2}" y="42" text-anchor="middle" font-size="12" fill="#444">${escapeXml(o.subtitle)}</text>`,
    body,
    `</svg>`,
    "",
  ].join("\n");
}
