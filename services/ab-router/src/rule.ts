/**
 * The routing rule of ab-router, defined once: which Statsig entity decides the variant (a gate, or an experiment's
 * parameter), and its parameter syntax (`ROUTING_RULE`: "gate:<name>" or "experiment:<name>:<parameter>:<value meaning
 * B>"), parsed by params.ts so that `servegraph check` rejects a malformed one.
 */
import { z } from "zod";

/** Which Statsig entity decides the variant. */
export type RoutingRule =
  | { kind: "gate"; gate: string }
  | {
      kind: "experiment";
      experiment: string;
      parameter: string;
      /** The parameter value that means variant B (e.g. "B"); any other value, or none, means A. */
      valueForB: string;
    };

export const RULE_HELP = `must be "gate:<name>" or "experiment:<name>:<parameter>:<value meaning B>"`;

export const RoutingRuleSchema = z.string().transform((s, ctx): RoutingRule => {
  const parts = s.split(":");
  if (parts[0] === "gate" && parts.length === 2 && parts[1]) return { kind: "gate", gate: parts[1] };
  if (parts[0] === "experiment" && parts.length === 4 && parts.slice(1).every(Boolean)) {
    return { kind: "experiment", experiment: parts[1]!, parameter: parts[2]!, valueForB: parts[3]! };
  }
  ctx.addIssue({ code: "custom", message: RULE_HELP });
  return z.NEVER;
});
