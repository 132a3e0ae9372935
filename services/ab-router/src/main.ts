/**
 * ab-router: decides variant A or B per user key with Statsig (a gate, or an experiment parameter) and
 * forwards the message to that variant over NATS. Offline by default (a committed gate spec, no network);
 * with STATSIG_SERVER_KEY it talks to Statsig. When Statsig cannot decide, a deterministic hash of the user
 * key does (reported as `decided_by: "fallback"`). Optional shadow traffic mirrors a share of requests to the
 * other variant off the request path and records whether its answer differed.
 */
import client from "prom-client";
import { Endpoints, ProcessRequest, VariantReply, type ProcessReply } from "../../../subjects/index.ts";
import { runNode } from "../../../runtime/index.ts";
import { registry } from "../../../runtime/metrics.ts";
import { createStatsigEvaluator, type RoutingRule } from "./gate.ts";

const decisions = new client.Counter({ name: "sg_ab_decisions_total", help: "Routing decisions by variant and by who decided.", labelNames: ["variant", "decided_by"] as const, registers: [registry] });
const shadows = new client.Counter({ name: "sg_ab_shadow_total", help: "Shadow requests to the other variant by outcome: same, different (answer differed) or error.", labelNames: ["result"] as const, registers: [registry] });

export function parseRoutingRule(s: string): RoutingRule {
  const parts = s.split(":");
  if (parts[0] === "gate" && parts.length === 2 && parts[1]) return { kind: "gate", gate: parts[1] };
  if (parts[0] === "experiment" && parts.length === 4 && parts.slice(1).every(Boolean)) {
    return { kind: "experiment", experiment: parts[1]!, parameter: parts[2]!, valueForB: parts[3]! };
  }
  throw new Error(`ROUTING_RULE must be "gate:<name>" or "experiment:<name>:<parameter>:<value meaning B>", got ${JSON.stringify(s)}`);
}

await runNode(async (ctx) => {
  const rule = parseRoutingRule(ctx.param("ROUTING_RULE"));
  const ruleName = rule.kind === "gate" ? rule.gate : rule.experiment;
  const subjects = { A: ctx.param("VARIANT_A_SUBJECT"), B: ctx.param("VARIANT_B_SUBJECT") } as const;
  const shadowPercent = ctx.paramNumber("SHADOW_PERCENT");
  if (shadowPercent < 0 || shadowPercent > 100) throw new Error("SHADOW_PERCENT must be within 0..100");
  const serverKey = ctx.secret("STATSIG_SERVER_KEY");
  const specFile = ctx.param("GATE_SPEC_FILE");
  const evaluator = createStatsigEvaluator({
    rule,
    ...(serverKey ? { serverKey } : {}),
    ...(specFile ? { specPath: specFile } : {}),
    log: (level, msg, attrs) => ctx.log[level](msg, attrs),
  });
  await evaluator.init();
  ctx.metadata.statsig_mode = evaluator.mode;
  ctx.metadata.routing_rule = `${rule.kind}:${ruleName}`;
  ctx.log.info("router ready", { statsig: evaluator.mode, rule: `${rule.kind}:${ruleName}`, shadow_percent: shadowPercent });
  ctx.afterStop(() => evaluator.shutdown());

  ctx.service.addEndpoint(Endpoints.abRouter.process, {
    subject: ctx.subjectOf(ctx.node.name, Endpoints.abRouter.process),
    handler: async (req): Promise<ProcessReply> => {
      const { message, user_key } = req.json(ProcessRequest);
      const d = evaluator.decide(user_key);
      decisions.labels(d.variant, d.source).inc();
      req.span.setAttributes({ "sg.ab.variant": d.variant, "sg.ab.decided_by": d.source, "sg.ab.rule": ruleName });
      const response = await ctx.client.requestJson(subjects[d.variant], { message }, { deadlineEpochMs: req.deadlineEpochMs, schema: VariantReply });
      if (shadowPercent > 0 && Math.random() * 100 < shadowPercent) {
        const other = d.variant === "A" ? "B" : "A";
        // Off the request path: never awaited, never able to fail or slow the primary answer.
        setImmediate(() => {
          ctx.client.requestJson(subjects[other], { message }, { timeoutMs: ctx.node.timeoutMs, schema: VariantReply }).then(
            (shadow) => shadows.labels(shadow.message === response.message ? "same" : "different").inc(),
            () => shadows.labels("error").inc(),
          );
        });
      }
      return { ab_test_result: { user_key, selected_variant: d.variant, gate_name: ruleName, decided_by: d.source }, response };
    },
  });
});
