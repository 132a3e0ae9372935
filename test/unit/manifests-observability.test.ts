import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadGraph, nodesOfGraphs } from "../../runtime/index.ts";
import {
  buildManifests,
  grafanaDashboard,
  prometheusRules,
  yamlDocument,
  P99_TIMEOUT_SHARE,
} from "../../ops/manifests/index.ts";
import { REPO_ROOT } from "../helpers/graph.ts";

const PROMTOOL = ["/usr/bin/promtool", "/usr/local/bin/promtool"].find((p) => existsSync(p));
const NO_PROMTOOL = PROMTOOL ? false : "promtool is not installed (Debian package prometheus)";

const graph = await loadGraph();
const nodes = nodesOfGraphs(graph, graph.defaultGraphs);
const rules = prometheusRules(graph, nodes);
const alerts = rules.groups.flatMap((g) => g.rules);
const dashboard = grafanaDashboard(graph, nodes);

/** The metric names documented in docs/metrics.md: every name the rules and the dashboard use must be one. */
const DOCUMENTED = new Set(
  [...readFileSync(join(REPO_ROOT, "docs/metrics.md"), "utf8").matchAll(/`(sg_[a-z_]+)`/g)].map((m) => m[1]!),
);
/** Metric names in a PromQL expression (histogram series reduced to the family name). */
const metricsOf = (expr: string): string[] =>
  [...expr.matchAll(/\b(sg_[a-z_]+)/g)].map((m) => m[1]!.replace(/_(bucket|count|sum)$/, ""));

test("manifests-observability - promtool check rules accepts the alert rules", { skip: NO_PROMTOOL }, () => {
  const dir = mkdtempSync(join(tmpdir(), "sg-rules-"));
  try {
    const file = join(dir, "prometheus-rules.yaml");
    writeFileSync(file, yamlDocument(rules));
    const r = spawnSync(PROMTOOL!, ["check", "rules", file], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, new RegExp(`SUCCESS: ${alerts.length} rules found`));
    // the check is not vacuous: a broken expression is refused
    writeFileSync(
      file,
      yamlDocument({
        groups: [{ name: "x", rules: [{ ...alerts[0]!, expr: "sum(rate(sg_requests_in_flight[5m])" }] }],
      }),
    );
    assert.notEqual(spawnSync(PROMTOOL!, ["check", "rules", file], { encoding: "utf8", timeout: 30_000 }).status, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("manifests-observability - the alerts follow the graph: no replica, error ratio, p99 over a share of the timeout, batch queue", () => {
  const of = (alert: string, node?: string) =>
    alerts.filter((r) => r.alert === alert && (node === undefined || r.labels.node === node));
  for (const n of nodes) {
    const node = graph.nodes[n]!;
    assert.equal(of("ServegraphNodeNoReplica", n).length, node.replicas.min > 0 ? 1 : 0, n);
    const slow = of("ServegraphNodeSlowP99", n);
    assert.equal(slow.length, 1, n);
    assert.ok(slow[0]!.expr.endsWith(`> ${(node.timeoutMs * P99_TIMEOUT_SHARE) / 1000}`), `${n}: ${slow[0]!.expr}`);
    assert.match(slow[0]!.expr, new RegExp(`sg_server_request_duration_seconds_bucket\\{node="${n}"\\}`));
    assert.equal(of("ServegraphBatchQueueNearFull", n).length, node.batching ? 1 : 0, n);
  }
  assert.match(
    of("ServegraphBatchQueueNearFull", "infer")[0]!.expr,
    /sg_batch_queue_depth\{node="infer"\} \/ sg_batch_queue_limit\{node="infer"\}/,
  );
  assert.match(of("ServegraphBatchQueueNearFull", "infer")[0]!.annotations.description!, /maxQueueSize 256/);
  const ratio = of("ServegraphErrorRatio");
  assert.equal(ratio.length, 1);
  assert.match(ratio[0]!.expr, /code=~"[A-Z_|]*INTERNAL[A-Z_|]*"/);
  assert.doesNotMatch(ratio[0]!.expr, /BAD_REQUEST/, "client errors are not the node's fault");
  for (const r of alerts)
    for (const m of metricsOf(r.expr)) assert.ok(DOCUMENTED.has(m), `${r.alert} uses ${m}, not in docs/metrics.md`);
  // the same rules go to the cluster as a PrometheusRule
  const pr = buildManifests(graph, graph.defaultGraphs).find((m) => m.object.kind === "PrometheusRule")!;
  assert.deepEqual(pr.object.spec, rules);
});

interface Panel {
  type: string;
  title: string;
  datasource?: { uid: string };
  targets?: { expr: string; datasource: { uid: string } }[];
  gridPos: { x: number; y: number; w: number; h: number };
}

test("manifests-observability - the Grafana dashboard: a $node variable, a datasource input, the panels from the histograms", () => {
  const d = dashboard as {
    __inputs: { name: string; type: string; pluginId: string }[];
    templating: { list: { name: string; query: { query: string } }[] };
    panels: Panel[];
    uid: string;
  };
  assert.deepEqual(
    d.__inputs.map((i) => [i.name, i.type, i.pluginId]),
    [["DS_PROMETHEUS", "datasource", "prometheus"]],
  );
  assert.deepEqual(
    d.templating.list.map((v) => v.name),
    ["node"],
  );
  assert.ok(d.uid.length <= 40);
  const panels = d.panels.filter((p) => p.type !== "row");
  const exprs = panels.flatMap((p) => p.targets!.map((t) => t.expr));
  for (const p of panels) {
    assert.equal(p.datasource?.uid, "${DS_PROMETHEUS}", p.title);
    for (const t of p.targets!) assert.equal(t.datasource.uid, "${DS_PROMETHEUS}");
  }
  const titles = panels.map((p) => p.title);
  for (const t of [
    "Request rate",
    "Latency p50 / p90 / p99",
    "Errors by code",
    "Replicas",
    "Batch size p50 / p90 / p99",
    "Batch queue wait p50 / p90 / p99",
    "Edge request rate by code",
    "Edge latency p50 / p90 / p99",
  ]) {
    assert.ok(titles.includes(t), `panel ${t}`);
  }
  for (const q of ["0.5", "0.9", "0.99"])
    assert.ok(
      exprs.some((e) =>
        e.startsWith(
          `histogram_quantile(${q}, sum by (le, node) (rate(sg_server_request_duration_seconds_bucket{node=~"$node"}`,
        ),
      ),
      `p${q}`,
    );
  assert.ok(
    exprs.some((e) =>
      /sum by \(le, caller, subject\) \(rate\(sg_client_request_duration_seconds_bucket\{caller=~"\$node"\}/.test(e),
    ),
    "per edge",
  );
  assert.ok(
    exprs.some((e) => /sum by \(node, code\) \(rate\(sg_request_errors_total\{node=~"\$node"\}/.test(e)),
    "errors by code",
  );
  for (const e of exprs)
    for (const m of metricsOf(e)) assert.ok(DOCUMENTED.has(m), `the dashboard uses ${m}, not in docs/metrics.md`);
  // no two panels overlap on the grid
  const cells = new Set<string>();
  for (const p of d.panels)
    for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++)
      for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
        assert.ok(!cells.has(`${x},${y}`), `${p.title} overlaps another panel`);
        cells.add(`${x},${y}`);
      }
  // deterministic: the same graph gives the same JSON
  assert.equal(JSON.stringify(grafanaDashboard(graph, nodes)), JSON.stringify(dashboard));
});
