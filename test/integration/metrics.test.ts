/**
 * /metrics of the ingress and of node processes (URL from $SRV.INFO metadata): strict Prometheus text
 * exposition format, histogram counts equal to the requests actually made, durations in seconds, and infer's
 * batch gauges equal to what it reports in $SRV.STATS and its info endpoint.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { createClient } from "../../runtime/client.ts";
import { gather } from "../../runtime/discovery.ts";
import { InferInfoEndpoint } from "../../subjects/endpoints.ts";
import { GreetReply } from "../../subjects/schemas.ts";
import { startGraph, REPO_ROOT, type RunningGraph } from "../helpers/graph.ts";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"/y;
const VALUE = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);
const SUFFIXES: Record<string, string[]> = {
  histogram: ["_bucket", "_sum", "_count"],
  summary: ["", "_sum", "_count"],
};

function parseValue(v: string): number {
  return v === "+Inf" || v === "Inf" ? Infinity : v === "-Inf" ? -Infinity : Number(v);
}

/**
 * A strict parser of the Prometheus text format 0.0.4: every line is empty, a HELP, a TYPE or a sample; every sample
 * belongs to a family declared with HELP and TYPE before it; names, labels and values are well-formed;
 * histogram buckets are cumulative and end with le="+Inf" equal to _count.
 */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  assert.ok(text.endsWith("\n"), "the exposition ends with a newline");
  const lines = text.split("\n").slice(0, -1);
  lines.forEach((line, i) => {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    if (line === "") return; // the format ignores empty lines (prom-client separates families with one)
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      assert.ok(m, `malformed comment, ${where}`);
      const [, kind, name, rest] = m;
      assert.match(name!, METRIC_NAME, where);
      const f = families.get(name!) ?? { name: name!, type: "", help: "", samples: [] };
      families.set(name!, f);
      if (kind === "HELP") {
        assert.ok(rest!.length > 0, `empty HELP, ${where}`);
        f.help = rest!;
      } else {
        assert.ok(TYPES.has(rest!), `unknown TYPE, ${where}`);
        assert.equal(f.samples.length, 0, `TYPE after samples, ${where}`);
        f.type = rest!;
      }
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    assert.ok(m, `malformed sample, ${where}`);
    const [, name, , labelText = "", value] = m;
    assert.match(value!, VALUE, `bad value, ${where}`);
    const labels: Record<string, string> = {};
    LABEL.lastIndex = 0;
    let pos = 0;
    while (pos < labelText.length) {
      LABEL.lastIndex = pos;
      const lm = LABEL.exec(labelText);
      assert.ok(lm, `malformed labels, ${where}`);
      assert.ok(!(lm[1]! in labels), `duplicate label ${lm[1]}, ${where}`);
      labels[lm[1]!] = lm[2]!;
      pos = LABEL.lastIndex;
      if (pos < labelText.length) {
        assert.equal(labelText[pos], ",", `labels must be comma-separated, ${where}`);
        pos++;
      }
    }
    const family = [...families.values()].find((f) => (SUFFIXES[f.type] ?? [""]).some((s) => f.name + s === name));
    assert.ok(family, `sample without a HELP/TYPE family declared before it, ${where}`);
    assert.ok(family.help && family.type, `family ${family.name} lacks HELP or TYPE, ${where}`);
    family.samples.push({ name: name!, labels, value: parseValue(value!) });
  });
  for (const f of families.values()) {
    assert.ok(f.help && f.type, `family ${f.name} has HELP and TYPE`);
    if (f.type !== "histogram") continue;
    const series = new Map<string, Sample[]>();
    for (const s of f.samples.filter((x) => x.name.endsWith("_bucket"))) {
      const { le, ...rest } = s.labels;
      assert.ok(le !== undefined, `${f.name} bucket without le`);
      const key = JSON.stringify(rest);
      series.set(key, [...(series.get(key) ?? []), s]);
    }
    for (const [key, buckets] of series) {
      const counts = buckets.map((b) => b.value);
      assert.deepEqual(
        counts,
        [...counts].sort((a, b) => a - b),
        `${f.name}${key} buckets are cumulative`,
      );
      assert.equal(buckets.at(-1)!.labels.le, "+Inf", `${f.name}${key} ends with le="+Inf"`);
      const count = f.samples.find((s) => s.name === `${f.name}_count` && JSON.stringify(s.labels) === key);
      assert.equal(count?.value, counts.at(-1), `${f.name}${key}: _count equals the +Inf bucket`);
    }
  }
  return families;
}

/** The value of the one sample of `name` whose labels include `labels`; 0 when there is none. */
function value(families: Map<string, Family>, name: string, labels: Record<string, string>): number {
  const base = name.replace(/_(count|sum|bucket)$/, "");
  const f = families.get(name) ?? families.get(base);
  const matches = (f?.samples ?? []).filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  assert.ok(matches.length <= 1, `${name} ${JSON.stringify(labels)} matches ${matches.length} series`);
  return matches[0]?.value ?? 0;
}

async function scrape(url: string): Promise<Map<string, Family>> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

async function metricsUrl(g: RunningGraph, node: string): Promise<string> {
  const info = (await g.nc.request(`$SRV.INFO.${node}`, new Uint8Array(0), { timeout: 2000 })).json<{
    metadata: Record<string, string>;
  }>();
  assert.ok(info.metadata.metrics_url, `${node} advertises metrics_url`);
  return info.metadata.metrics_url;
}

test("metrics - ingress and node /metrics parse strictly and count every request", async () => {
  await using g = await startGraph({ graphs: ["chain"] });
  const N = 5;
  const t0 = performance.now();
  for (let i = 0; i < N; i++) assert.equal((await fetch(`${g.ingressUrl}/greeting/ada${i}`)).status, 200);
  const wallSeconds = (performance.now() - t0) / 1000;
  assert.equal((await fetch(`${g.ingressUrl}/greeting/${"x".repeat(300)}`)).status, 400); // refused by the ingress itself
  // an error reply from greeter-proxy, straight over NATS
  const client = createClient(g.nc, { caller: "test", defaultTimeoutMs: 2000 });
  await assert.rejects(client.requestJson("sg.v1.greeter-proxy.greeting", { nom: "x" }, { schema: GreetReply }), {
    code: "BAD_REQUEST",
  });

  const ingress = await scrape(`${g.ingressUrl}/metrics`);
  assert.equal(await metricsUrl(g, "ingress"), `${g.ingressUrl}/metrics`);
  assert.equal(
    value(ingress, "sg_http_request_duration_seconds_count", {
      route: "/greeting/:name",
      method: "GET",
      status: "200",
    }),
    N,
  );
  assert.equal(
    value(ingress, "sg_http_request_duration_seconds_count", {
      route: "/greeting/:name",
      method: "GET",
      status: "400",
    }),
    1,
  );
  assert.equal(
    value(ingress, "sg_client_request_duration_seconds_count", {
      caller: "ingress",
      subject: "sg.v1.greeter-proxy.greeting",
      code: "OK",
    }),
    N,
  );
  assert.equal(value(ingress, "sg_http_requests_in_flight", {}), 0, "the scrape itself is not counted");
  assert.equal(value(ingress, "sg_edge_replicas", { target: "greeter-proxy" }), 1);
  // Seconds, not ms: the N requests' durations, measured inside the ingress, add up to less than the test's wall time.
  const httpSeconds = value(ingress, "sg_http_request_duration_seconds_sum", {
    route: "/greeting/:name",
    method: "GET",
    status: "200",
  });
  assert.ok(httpSeconds > 0 && httpSeconds <= wallSeconds, `${httpSeconds} s of ${wallSeconds} s`);
  const edgeSeconds = value(ingress, "sg_client_request_duration_seconds_sum", {
    caller: "ingress",
    subject: "sg.v1.greeter-proxy.greeting",
    code: "OK",
  });
  assert.ok(edgeSeconds > 0 && edgeSeconds <= httpSeconds, `${edgeSeconds} s within ${httpSeconds} s`);
  const les = ingress
    .get("sg_http_request_duration_seconds")!
    .samples.filter((s) => s.name.endsWith("_bucket") && s.labels.status === "200")
    .map((s) => s.labels.le);
  assert.deepEqual(
    [les[0], les.at(-2), les.at(-1)],
    ["0.00025", "30", "+Inf"],
    "buckets from 0.25 ms to 30 s, in seconds",
  );
  assert.equal(ingress.get("sg_process_cpu_seconds_total")?.type, "counter", "process metrics are exported");
  for (const x of ["handles", "requests", "resources"]) {
    assert.equal(ingress.get(`sg_nodejs_active_${x}`)?.type, "gauge", `sg_nodejs_active_${x}`);
    assert.equal(ingress.get(`sg_nodejs_active_${x}_total`), undefined, `no gauge named sg_nodejs_active_${x}_total`);
  }
  assert.ok(value(ingress, "sg_nodejs_active_handles", {}) >= 1, "the ingress's listening socket is an active handle");

  const proxy = await scrape(await metricsUrl(g, "greeter-proxy"));
  const replica = g.sup.replicas("greeter-proxy")[0]!.id;
  assert.equal(
    value(proxy, "sg_server_request_duration_seconds_count", {
      node: "greeter-proxy",
      replica,
      endpoint: "greeting",
      code: "OK",
    }),
    N,
  );
  assert.equal(
    value(proxy, "sg_server_request_duration_seconds_count", { endpoint: "greeting", code: "BAD_REQUEST" }),
    1,
  );
  assert.equal(value(proxy, "sg_request_errors_total", { endpoint: "greeting", code: "BAD_REQUEST" }), 1);
  assert.equal(
    value(proxy, "sg_client_request_duration_seconds_count", {
      caller: "greeter-proxy",
      subject: "sg.v1.greeter.greet",
      code: "OK",
    }),
    N,
  );
  assert.equal(value(proxy, "sg_requests_in_flight", { node: "greeter-proxy" }), 0);
  assert.equal(value(proxy, "sg_replicas", { node: "greeter-proxy" }), 1);

  const greeter = await scrape(await metricsUrl(g, "greeter"));
  assert.equal(
    value(greeter, "sg_server_request_duration_seconds_count", { node: "greeter", endpoint: "greet", code: "OK" }),
    N,
  );
  const greetSeconds = value(greeter, "sg_server_request_duration_seconds_sum", {
    node: "greeter",
    endpoint: "greet",
    code: "OK",
  });
  assert.ok(greetSeconds > 0 && greetSeconds <= edgeSeconds, `${greetSeconds} s within ${edgeSeconds} s`);
  assert.equal(
    value(greeter, "sg_nodejs_active_handles", { node: "greeter" }) >= 1,
    true,
    "node processes export the active gauges too",
  );
});

test("metrics - infer exports batch size, queue wait, compute time, and its queue and fill gauges", async () => {
  await using g = await startGraph({ graphs: ["classify"] });
  const jpeg = readFileSync(resolve(REPO_ROOT, "data/images/cat-chelsea.jpg"));
  const N = 4;
  const statuses = await Promise.all(
    Array.from({ length: N }, () =>
      fetch(`${g.ingressUrl}/classify`, { method: "POST", headers: { "content-type": "image/jpeg" }, body: jpeg }).then(
        (r) => r.status,
      ),
    ),
  );
  assert.deepEqual(statuses, Array(N).fill(200));

  const infer = await scrape(await metricsUrl(g, "infer"));
  const node = { node: "infer" };
  const batches = value(infer, "sg_batch_size_count", node);
  assert.ok(batches >= 1 && batches <= N, `${batches} forward passes for ${N} requests`);
  assert.equal(value(infer, "sg_batch_size_sum", node), N, "every request was in exactly one batch");
  assert.equal(value(infer, "sg_batch_queue_wait_seconds_count", node), N, "one queue wait per request");
  assert.equal(value(infer, "sg_model_compute_seconds_count", node), batches, "one compute time per batch");
  assert.equal(
    value(infer, "sg_server_request_duration_seconds_count", { node: "infer", endpoint: "run", code: "OK" }),
    N,
  );
  assert.ok(value(infer, "sg_model_compute_seconds_sum", node) > 0);
  assert.equal(value(infer, "sg_batch_queue_depth", node), 0, "nothing waits once every request is answered");
  const client = createClient(g.nc, { caller: "test", defaultTimeoutMs: 5000 });
  const info = await client.call(InferInfoEndpoint, "sg.v1.infer.info", undefined);
  assert.equal(value(infer, "sg_batch_queue_limit", node), info.max_queue_size);
  const [stats] = await gather<{ endpoints: { data?: { batch_fill?: number } }[] }>(g.nc, "$SRV.STATS.infer", 300);
  const fill = stats?.endpoints.find((e) => e.data?.batch_fill !== undefined)?.data?.batch_fill;
  assert.equal(value(infer, "sg_batch_fill_ratio", node), fill, "the batch fill of $SRV.STATS (servegraph status)");
  assert.equal(fill, N / batches / info.max_batch_size);

  const pre = await scrape(await metricsUrl(g, "preprocess"));
  assert.equal(
    value(pre, "sg_client_request_duration_seconds_count", {
      caller: "preprocess",
      subject: "sg.v1.infer.run",
      code: "OK",
    }),
    N,
  );
  const ingress = await scrape(`${g.ingressUrl}/metrics`);
  assert.equal(
    value(ingress, "sg_http_request_duration_seconds_count", { route: "/classify", method: "POST", status: "200" }),
    N,
  );
});
