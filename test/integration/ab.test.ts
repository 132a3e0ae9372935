/** A/B routing end to end: ingress -> ab-router -> variant-a | variant-b, offline Statsig spec. */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "../../runtime/client.ts";
import { collectStatus } from "../../runtime/graph-status.ts";
import { ProcessReply } from "../../subjects/schemas.ts";
import { startGraph, type RunningGraph } from "../helpers/graph.ts";
import { createStatsigEvaluator } from "../../services/ab-router/src/gate.ts";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = async (r: Response): Promise<any> => r.json();
let g: RunningGraph;

before(async () => {
  g = await startGraph({ graphs: ["ab"], replicas: { "ab-router": 2 } });
});
after(async () => g?.stop());

test("ab - /process routes each user key to the variant the gate picks, the same across router replicas", async () => {
  const evaluator = createStatsigEvaluator({ rule: { kind: "gate", gate: "variant_b" }, log: () => {} });
  await evaluator.init();
  try {
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const key = `user-${i}`;
      const res = await fetch(`${g.ingressUrl}/process/hello%20world?user_key=${key}`);
      assert.equal(res.status, 200);
      const body = ProcessReply.parse(await json(res));
      const expected = evaluator.decide(key).variant;
      assert.equal(body.ab_test_result.selected_variant, expected, key);
      assert.equal(body.ab_test_result.user_key, key);
      assert.equal(body.ab_test_result.gate_name, "variant_b");
      assert.equal(body.ab_test_result.decided_by, "statsig");
      assert.equal(body.response.variant, expected);
      assert.equal(
        body.response.message,
        expected === "A" ? "Processed by variant A: hello world" : "Processed by variant B: HELLO WORLD",
      );
      seen.add(expected);
    }
    assert.deepEqual([...seen].sort(), ["A", "B"], "both variants are used");
  } finally {
    await evaluator.shutdown();
  }
});

test("ab - the same request works as a direct NATS request to the router's subject", async () => {
  const client = createClient(g.nc, { caller: "test", defaultTimeoutMs: 5000 });
  const viaNats = await client.requestJson(
    "sg.v1.ab-router.process",
    { message: "hi", user_key: "user-7" },
    { schema: ProcessReply },
  );
  const viaHttp = ProcessReply.parse(await json(await fetch(`${g.ingressUrl}/process/hi?user_key=user-7`)));
  assert.deepEqual(viaNats, viaHttp);
});

test("ab - the A/B split is the router's own decisions: unchanged while variant-b scales to zero and back", async () => {
  const decisions = async (): Promise<Record<string, number>> => {
    const st = await collectStatus(g.nc, "", ["ab-router"], 300);
    return st.nodes.find((n) => n.node === "ab-router")?.ab_decisions ?? {};
  };
  const send = async (keys: string[]): Promise<Record<string, number>> => {
    const by: Record<string, number> = {};
    for (const key of keys) {
      const body = ProcessReply.parse(await json(await fetch(`${g.ingressUrl}/process/x?user_key=${key}`)));
      by[body.ab_test_result.selected_variant] = (by[body.ab_test_result.selected_variant] ?? 0) + 1;
    }
    return by;
  };
  const plus = (a: Record<string, number>, b: Record<string, number>) =>
    Object.fromEntries(["A", "B"].map((v) => [v, (a[v] ?? 0) + (b[v] ?? 0)]));
  const before = await decisions();
  const sent = await send(Array.from({ length: 20 }, (_, i) => `split-${i}`));
  assert.ok((sent.A ?? 0) > 0 && (sent.B ?? 0) > 0, JSON.stringify(sent));
  const after = await decisions();
  assert.deepEqual(after, plus(before, sent), "both router replicas' decisions, summed");
  await g.sup.scale("variant-b", 0);
  const atZero = await collectStatus(g.nc, "", ["ab-router", "variant-b"], 300);
  assert.equal(atZero.nodes.find((n) => n.node === "variant-b")?.replicas, 0);
  assert.deepEqual(
    atZero.nodes.find((n) => n.node === "ab-router")?.ab_decisions,
    after,
    "variant-b's share stays while it has no replica",
  );
  await g.sup.scale("variant-b", 1);
  const more = await send(Array.from({ length: 10 }, (_, i) => `split-more-${i}`));
  assert.deepEqual(await decisions(), plus(after, more));
});

test("ab - bad input is a 400 with a JSON error", async () => {
  for (const q of ["", "?user_key=", `?user_key=${"k".repeat(300)}`]) {
    const res = await fetch(`${g.ingressUrl}/process/hi${q}`);
    assert.equal(res.status, 400, q);
    assert.equal((await json(res)).code, "BAD_REQUEST");
  }
  const long = await fetch(`${g.ingressUrl}/process/${"m".repeat(1100)}?user_key=u`);
  assert.equal(long.status, 400);
});

test("ab - a variant with no replicas is a 503 at once, not a hang", async () => {
  // find a user routed to B, then stop variant-b
  const evaluator = createStatsigEvaluator({ rule: { kind: "gate", gate: "variant_b" }, log: () => {} });
  await evaluator.init();
  let userB = "";
  let userA = "";
  for (let i = 0; !userA || !userB; i++) {
    const v = evaluator.decide(`u${i}`).variant;
    if (v === "B") userB ||= `u${i}`;
    else userA ||= `u${i}`;
  }
  await evaluator.shutdown();
  for (const r of g.sup.replicas("variant-b")) {
    r.child.kill("SIGTERM");
    await new Promise((resolve) => r.child.once("exit", resolve));
  }
  const t0 = performance.now();
  const res = await fetch(`${g.ingressUrl}/process/hi?user_key=${userB}`);
  assert.equal(res.status, 503);
  assert.equal((await json(res)).code, "UNAVAILABLE");
  assert.ok(performance.now() - t0 < 2000);
  assert.equal(
    (await fetch(`${g.ingressUrl}/process/hi?user_key=${userA}`)).status,
    200,
    "variant A users are unaffected",
  );
});

test("ab - when Statsig cannot decide (corrupt spec), routing falls back to the stable hash and says so", async () => {
  const { writeFileSync, mkdtempSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { fallbackVariant } = await import("../../services/ab-router/src/gate.ts");
  const file = `${mkdtempSync(`${tmpdir()}/sg-spec-`)}/broken.json`;
  writeFileSync(file, "{ this is not json");
  await using g2 = await startGraph({
    graphs: ["ab"],
    nodeEnv: { "ab-router": { GATE_SPEC_FILE: file, SHADOW_PERCENT: "100" } },
  });
  for (let i = 0; i < 10; i++) {
    const res = await fetch(`${g2.ingressUrl}/process/hi?user_key=k${i}`);
    assert.equal(res.status, 200);
    const body = ProcessReply.parse(await json(res));
    assert.equal(body.ab_test_result.decided_by, "fallback");
    assert.equal(body.ab_test_result.selected_variant, fallbackVariant(`k${i}`, "variant_b"));
  }
  // shadow traffic at 100%: every request was mirrored to the other variant and recorded as different
  const info = await g2.nc.request("$SRV.INFO.ab-router", new Uint8Array(0), { timeout: 2000 });
  const metricsUrl = (info.json() as { metadata: Record<string, string> }).metadata.metrics_url!;
  let text = "";
  for (let tries = 0; tries < 20 && !/sg_ab_shadow_total\{[^}]*result="different"[^}]*\} 10\b/.test(text); tries++) {
    await new Promise((r) => setTimeout(r, 100));
    text = await (await fetch(metricsUrl)).text();
  }
  assert.match(text, /sg_ab_shadow_total\{[^}]*result="different"[^}]*\} 10\b/);
});

test(
  "ab - a secret reaches only the node that declares it, never a response or `check` output",
  { skip: process.platform === "linux" ? false : "reads /proc/<pid>/environ" },
  async () => {
    const secret = "sk-SHOULD-NOT-LEAK-4242";
    const { spawnSync } = await import("node:child_process");
    // The launcher's environment for each node: only ab-router gets STATSIG_SERVER_KEY.
    const prev = process.env.STATSIG_SERVER_KEY;
    process.env.STATSIG_SERVER_KEY = secret;
    try {
      await using g2 = await startGraph({ graphs: ["chain"] });
      for (const node of ["greeter", "greeter-proxy", "ingress"]) {
        const pid = g2.sup.replicas(node)[0]!.child.pid!;
        const environ = (await import("node:fs")).readFileSync(`/proc/${pid}/environ`, "utf8");
        assert.ok(!environ.includes(secret), `${node} must not see the Statsig key`);
      }
      const res = await fetch(`${g2.ingressUrl}/greeting/ada`);
      assert.ok(!(await res.text()).includes(secret));
    } finally {
      if (prev === undefined) delete process.env.STATSIG_SERVER_KEY;
      else process.env.STATSIG_SERVER_KEY = prev;
    }
    const check = spawnSync(process.execPath, ["--import", "tsx", "ops/cli.ts", "check", "--json"], {
      encoding: "utf8",
      env: { ...process.env, STATSIG_SERVER_KEY: secret },
    });
    assert.ok(
      !check.stdout.includes(secret) && !check.stderr.includes(secret),
      "servegraph check never prints secret values",
    );
  },
);

test("ab - routing by an experiment parameter; shadow traffic to a dead variant never fails the primary", async () => {
  const { createStatsigEvaluator: create } = await import("../../services/ab-router/src/gate.ts");
  const rule = { kind: "experiment" as const, experiment: "my_experiment", parameter: "variant", valueForB: "B" };
  const evaluator = create({ rule, log: () => {} });
  await evaluator.init();
  const keys = Array.from({ length: 30 }, (_, i) => `exp-${i}`);
  const expected = new Map(keys.map((k) => [k, evaluator.decide(k)]));
  await evaluator.shutdown();
  assert.ok([...expected.values()].every((d) => d.source === "statsig"));

  await using g2 = await startGraph({
    graphs: ["ab"],
    nodeEnv: { "ab-router": { ROUTING_RULE: "experiment:my_experiment:variant:B", SHADOW_PERCENT: "100" } },
  });
  for (const r of g2.sup.replicas("variant-a")) {
    r.child.kill("SIGTERM");
    await new Promise((resolve) => r.child.once("exit", resolve));
  }
  let served = 0;
  for (const k of keys) {
    const d = expected.get(k)!;
    const res = await fetch(`${g2.ingressUrl}/process/x?user_key=${k}`);
    if (d.variant === "A") {
      assert.equal(res.status, 503, "A is down");
      continue;
    }
    assert.equal(res.status, 200, k);
    const body = ProcessReply.parse(await json(res));
    assert.equal(body.ab_test_result.selected_variant, "B");
    assert.equal(body.ab_test_result.gate_name, "my_experiment");
    served++;
  }
  assert.ok(served > 0, "some users are in B");
  const info = await g2.nc.request("$SRV.INFO.ab-router", new Uint8Array(0), { timeout: 2000 });
  const metricsUrl = (info.json() as { metadata: Record<string, string> }).metadata.metrics_url!;
  const pattern = new RegExp(`sg_ab_shadow_total\\{[^}]*result="error"[^}]*\\} ${served}\\b`);
  let text = "";
  for (let tries = 0; tries < 20 && !pattern.test(text); tries++) {
    await new Promise((r) => setTimeout(r, 100));
    text = await (await fetch(metricsUrl)).text();
  }
  assert.match(text, pattern, "every mirrored request to the dead variant is recorded as an error");
});
