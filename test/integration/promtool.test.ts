/**
 * Every process's /metrics passes `promtool check metrics`, Prometheus's own lint (base units in names, `_total`
 * only on counters, HELP on every family...), with all three graphs running and traffic through each so that
 * every histogram has samples; and each process exports the names that dashboards, alert rules and autoscaling
 * read, where they belong, all of them documented in docs/metrics.md. promtool is Debian's `prometheus` package
 * (CI installs it); without it the test skips.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { gather } from "../../runtime/discovery.ts";
import { ProcessReply } from "../../subjects/schemas.ts";
import { startGraph, REPO_ROOT } from "../helpers/graph.ts";

const PROMTOOL = "/usr/bin/promtool";
const SKIP = existsSync(PROMTOOL)
  ? false
  : `${PROMTOOL} not found: install Debian's prometheus package (apt-get install prometheus) to run this test`;

/** `promtool check metrics` with the exposition on stdin: its exit code and everything it printed. */
function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((done, fail) => {
    const p = spawn(PROMTOOL, ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"], timeout: 30_000 });
    let output = "";
    p.stdout.setEncoding("utf8").on("data", (d: string) => (output += d));
    p.stderr.setEncoding("utf8").on("data", (d: string) => (output += d));
    p.on("error", fail);
    p.on("close", (code) => done({ code, output }));
    p.stdin.on("error", () => {}); // promtool exiting early shows in its exit code and output
    p.stdin.end(text);
  });
}

/**
 * The exposition with one zero sample added to each family that has none (a labelled metric before its first
 * observation, e.g. a counter of errors that did not happen): promtool checks the names of families with samples
 * only, and these names must pass too.
 */
function withEmptyFamiliesFilled(text: string): string {
  const sampled = new Set([...text.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)].map((m) => m[1]!));
  return text.replace(/^# TYPE (\S+) (\S+)$/gm, (line, name: string, type: string) => {
    const series =
      type === "histogram"
        ? [`${name}_bucket{le="+Inf"}`, `${name}_sum`, `${name}_count`]
        : type === "summary"
          ? [`${name}_sum`, `${name}_count`]
          : [name];
    return series.some((x) => sampled.has(x.replace(/\{.*/, "")))
      ? line
      : [line, ...series.map((x) => `${x} 0`)].join("\n");
  });
}

/** Families declared in the exposition (`# TYPE <name> <type>`), name -> type. */
function families(text: string): Map<string, string> {
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
}

const HISTOGRAMS = {
  http: "sg_http_request_duration_seconds",
  server: "sg_server_request_duration_seconds",
  client: "sg_client_request_duration_seconds",
  queueWait: "sg_batch_queue_wait_seconds",
  compute: "sg_model_compute_seconds",
} as const;
const ACTIVE = ["sg_nodejs_active_handles", "sg_nodejs_active_requests", "sg_nodejs_active_resources"];
const BATCH_GAUGES = ["sg_batch_queue_depth", "sg_batch_queue_limit", "sg_batch_fill_ratio"];

/** What each node of the three graphs must export, beyond what every process does (histograms with samples). */
const EXPECTED: Record<string, { histograms: string[]; gauges?: string[] }> = {
  ingress: { histograms: [HISTOGRAMS.http, HISTOGRAMS.client] },
  "greeter-proxy": { histograms: [HISTOGRAMS.server, HISTOGRAMS.client] },
  greeter: { histograms: [HISTOGRAMS.server] },
  preprocess: { histograms: [HISTOGRAMS.server, HISTOGRAMS.client] },
  infer: { histograms: [HISTOGRAMS.server, HISTOGRAMS.queueWait, HISTOGRAMS.compute], gauges: BATCH_GAUGES },
  "ab-router": { histograms: [HISTOGRAMS.server, HISTOGRAMS.client] },
  "variant-a": { histograms: [HISTOGRAMS.server] },
  "variant-b": { histograms: [HISTOGRAMS.server] },
};

test(
  "promtool - every process's /metrics passes promtool check metrics, with the expected names",
  { skip: SKIP, timeout: 300_000 },
  async () => {
    await using g = await startGraph({ graphs: ["chain", "classify", "ab"] });
    assert.deepEqual([...g.sup.nodes].sort(), Object.keys(EXPECTED).sort(), "the three graphs' nodes");

    // A little traffic through each graph: every histogram gets samples.
    for (const name of ["ada", "grace"]) assert.equal((await fetch(`${g.ingressUrl}/greeting/${name}`)).status, 200);
    const jpeg = readFileSync(resolve(REPO_ROOT, "data/images/cat-chelsea.jpg"));
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${g.ingressUrl}/classify`, {
        method: "POST",
        headers: { "content-type": "image/jpeg" },
        body: jpeg,
      });
      assert.equal(res.status, 200);
    }
    const variants = new Set<string>();
    for (let i = 0; i < 64 && variants.size < 2; i++) {
      const res = await fetch(`${g.ingressUrl}/process/hello?user_key=user-${i}`);
      assert.equal(res.status, 200);
      variants.add(ProcessReply.parse(await res.json()).response.variant);
    }
    assert.equal(variants.size, 2, "both variants answered");

    // Every replica advertises its metrics URL in $SRV.INFO (the ingress: its HTTP port).
    const infos = await gather<{ name: string; id: string; metadata: Record<string, string> }>(g.nc, "$SRV.INFO", 1000);
    const processes = Object.keys(EXPECTED).reduce((n, node) => n + g.sup.replicas(node).length, 0);
    assert.equal(infos.length, processes, "every process answered $SRV.INFO");
    assert.ok(
      infos.some((i) => i.name === "ingress" && i.metadata.metrics_url === `${g.ingressUrl}/metrics`),
      "the ingress serves /metrics on its HTTP port",
    );

    const failures: string[] = [];
    const seen = new Set<string>();
    for (const info of infos) {
      const url = info.metadata.metrics_url;
      assert.ok(url, `${info.name} (${info.id}) advertises metrics_url`);
      const res = await fetch(url);
      assert.equal(res.status, 200, url);
      const text = await res.text();
      for (const [what, exposition] of [
        ["/metrics", text],
        ["/metrics with its empty families given a sample", withEmptyFamiliesFilled(text)],
      ] as const) {
        const { code, output } = await promtoolCheck(exposition);
        if (code !== 0 || output !== "") failures.push(`${info.name} (${url}), ${what}: exit ${code}\n${output}`);
      }

      const types = families(text);
      for (const name of types.keys()) seen.add(name);
      const expected = EXPECTED[info.name];
      assert.ok(expected, `unexpected node ${info.name}`);
      for (const name of ACTIVE) assert.equal(types.get(name), "gauge", `${info.name}: ${name}`);
      for (const [name, type] of types)
        assert.ok(!(type === "gauge" && name.endsWith("_total")), `${info.name}: gauge ${name} ends with _total`);
      for (const name of expected.histograms) {
        assert.equal(types.get(name), "histogram", `${info.name}: ${name}`);
        assert.match(text, new RegExp(`^${name}_count\\{[^}]*\\} [1-9]`, "m"), `${info.name}: ${name} has samples`);
      }
      for (const name of BATCH_GAUGES) {
        if (expected.gauges?.includes(name))
          assert.match(text, new RegExp(`^${name}\\{[^}]*node="infer"[^}]*\\} \\S+$`, "m"), `${info.name}: ${name}`);
        else assert.equal(types.get(name), undefined, `${info.name} exports no ${name}`);
      }
    }
    assert.deepEqual(failures, [], "promtool check metrics: exit 0 and no output for every process");

    // docs/metrics.md's table lists every metric of ours (prom-client's defaults are named there as a group), and
    // nothing that no process exports.
    const documented = new Set(
      [...readFileSync(resolve(REPO_ROOT, "docs/metrics.md"), "utf8").matchAll(/^\| `(sg_\w+)` \|/gm)].map(
        (m) => m[1]!,
      ),
    );
    const ours = [...seen].filter((n) => ACTIVE.includes(n) || !/^sg_(process|nodejs)_/.test(n)).sort();
    assert.deepEqual(
      ours,
      [...documented].sort(),
      "docs/metrics.md documents exactly the metrics the processes export",
    );
  },
);
