/**
 * ab-router: decides variant A or B per user key with Statsig (a gate, or an experiment parameter) and
 * forwards the message to that variant over NATS. Offline by default (a committed gate spec, no network);
 * with STATSIG_SERVER_KEY it talks to Statsig. When Statsig cannot decide, a deterministic hash of the user
 * key does (reported as `decided_by: "fallback"`). Optional shadow traffic mirrors a share of requests to the
 * other variant off the request path and records whether its answer differed.
 */
import client from "prom-client";
import { AbProcess, VariantProcess } from "../../../subjects/index.ts";
import { registry, runNode } from "../../../runtime/index.ts";
import { createStatsigEvaluator } from "./gate.ts";
import Params from "./params.ts";

const decisions = new client.Counter({
  name: "sg_ab_decisions_total",
  help: "Routing decisions by variant and by who decided.",
  labelNames: ["variant", "decided_by"] as const,
  registers: [registry],
});
const shadows = new client.Counter({
  name: "sg_ab_shadow_total",
  help: "Shadow requests to the other variant by outcome: same, different (answer differed) or error.",
  labelNames: ["result"] as const,
  registers: [registry],
});

/** This replica's decisions by variant, in its $SRV.STATS data (`ab_decisions`): the dashboard's A/B split. */
const decided: Record<string, number> = { A: 0, B: 0 };

await runNode(
  async (ctx) => {
    const { ROUTING_RULE: rule, SHADOW_PERCENT: shadowPercent, GATE_SPEC_FILE: specFile } = ctx.params;
    const ruleName = rule.kind === "gate" ? rule.gate : rule.experiment;
    const subjects = { A: ctx.params.VARIANT_A_SUBJECT, B: ctx.params.VARIANT_B_SUBJECT } as const;
    const serverKey = ctx.secret("STATSIG_SERVER_KEY");
    const evaluator = createStatsigEvaluator({
      rule,
      ...(serverKey ? { serverKey } : {}),
      ...(specFile ? { specPath: specFile } : {}),
      log: (level, msg, attrs) => ctx.log[level](msg, attrs),
    });
    await evaluator.init();
    ctx.metadata.statsig_mode = evaluator.mode;
    ctx.metadata.routing_rule = `${rule.kind}:${ruleName}`;
    ctx.log.info("router ready", {
      statsig: evaluator.mode,
      rule: `${rule.kind}:${ruleName}`,
      shadow_percent: shadowPercent,
    });
    ctx.afterStop(() => evaluator.shutdown());

    ctx.serve(AbProcess, async ({ message, user_key }, req) => {
      const d = evaluator.decide(user_key);
      decisions.labels(d.variant, d.source).inc();
      decided[d.variant] = (decided[d.variant] ?? 0) + 1;
      req.span.setAttributes({ "sg.ab.variant": d.variant, "sg.ab.decided_by": d.source, "sg.ab.rule": ruleName });
      const response = await ctx.client.call(
        VariantProcess,
        subjects[d.variant],
        { message },
        { deadlineEpochMs: req.deadlineEpochMs },
      );
      if (shadowPercent > 0 && Math.random() * 100 < shadowPercent) {
        const other = d.variant === "A" ? "B" : "A";
        // Off the request path: never awaited, never able to fail or slow the primary answer.
        setImmediate(() => {
          ctx.client.call(VariantProcess, subjects[other], { message }, { timeoutMs: ctx.node.timeoutMs }).then(
            (shadow) => shadows.labels(shadow.message === response.message ? "same" : "different").inc(),
            () => shadows.labels("error").inc(),
          );
        });
      }
      return {
        ab_test_result: { user_key, selected_variant: d.variant, gate_name: ruleName, decided_by: d.source },
        response,
      };
    });
  },
  { params: Params, statsData: () => ({ ab_decisions: { ...decided } }) },
);
