/** Parameters of the ab-router node. ROUTING_RULE is parsed here, so `servegraph check` rejects a malformed rule. */
import { z } from "zod";
import { defineParams, param } from "../../../runtime/params.ts";

export type RoutingRuleParam =
  | { kind: "gate"; gate: string }
  | { kind: "experiment"; experiment: string; parameter: string; valueForB: string };

const RULE_HELP = `must be "gate:<name>" or "experiment:<name>:<parameter>:<value meaning B>"`;

export const RoutingRule = z.string().transform((s, ctx): RoutingRuleParam => {
  const parts = s.split(":");
  if (parts[0] === "gate" && parts.length === 2 && parts[1]) return { kind: "gate", gate: parts[1] };
  if (parts[0] === "experiment" && parts.length === 4 && parts.slice(1).every(Boolean)) {
    return { kind: "experiment", experiment: parts[1]!, parameter: parts[2]!, valueForB: parts[3]! };
  }
  ctx.addIssue({ code: "custom", message: RULE_HELP });
  return z.NEVER;
});

export default defineParams({
  VARIANT_A_SUBJECT: param.subject("variant-a's process subject."),
  VARIANT_B_SUBJECT: param.subject("variant-b's process subject."),
  ROUTING_RULE: RoutingRule.describe(`Which Statsig rule decides: ${RULE_HELP}.`).default({ kind: "gate", gate: "variant_b" }),
  GATE_SPEC_FILE: param.string("Offline gate spec (JSON); empty: the committed services/ab-router/gates/default-spec.json.").default(""),
  SHADOW_PERCENT: param.number("Share of requests mirrored to the other variant (answer discarded, difference recorded).", { min: 0, max: 100 }).default(0),
});
