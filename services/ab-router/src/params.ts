/** Parameters of the ab-router node. ROUTING_RULE is parsed here, so `servegraph check` rejects a malformed rule. */
import { z } from "zod";
import { defineParams, param } from "../../../runtime/params.ts";
import { RULE_HELP, RoutingRuleSchema } from "./rule.ts";

export default defineParams({
  VARIANT_A_SUBJECT: param.subject("variant-a's process subject."),
  VARIANT_B_SUBJECT: param.subject("variant-b's process subject."),
  ROUTING_RULE: RoutingRuleSchema.describe(`Which Statsig rule decides: ${RULE_HELP}.`).default({
    kind: "gate",
    gate: "variant_b",
  }),
  GATE_SPEC_FILE: param
    .string("Offline gate spec (JSON); empty: the committed services/ab-router/gates/default-spec.json.")
    .default(""),
  SHADOW_PERCENT: param
    .number("Share of requests mirrored to the other variant (answer discarded, difference recorded).", {
      min: 0,
      max: 100,
    })
    .default(0),
});
