/**
 * The messages of `servegraph up`'s control service (zod 4, strict where `up` reads them): one definition for the
 * sender and the reader of each.
 *
 * - `sg.ops.control` and `sg.ops.control.<host>` (OPS_CONTROL_SUBJECT, opsControlSubjectOf): an {@link OpsControlRequest}.
 *   `scale` to a count pins the node and answers a {@link ScaleReply} once the replicas are ready; `scale` with
 *   `auto: true` unpins it; `autoscaler` answers the autoscaler's {@link AutoscalerSnapshot}. Sent by
 *   `servegraph scale` and `status`, read by `up`.
 * - `sg.ops.autoscaler` (OPS_AUTOSCALER_SUBJECT): the {@link AutoscalerSnapshot} of every `up` that holds the full
 *   graph, read by `status` and the dashboard.
 *
 * {@link OpsControl} and {@link OpsAutoscaler} are their endpoint definitions: `up` serves them with `serve` and the
 * CLI and the dashboard call them with `call`, so both sides check the same schemas. They are not in the graph's
 * registry (subjects/registry.ts): no node serves them; the subjects are fixed, not `sg.v1.<node>.<endpoint>`.
 */
import { z } from "zod";
import { endpoint, json } from "./endpoints.ts";

export const OpsControlRequest = z.union([
  z.strictObject({ op: z.literal("scale"), node: z.string(), replicas: z.number().int() }),
  z.strictObject({ op: z.literal("scale"), node: z.string(), auto: z.literal(true) }),
  z.strictObject({ op: z.literal("autoscaler") }),
]);
export type OpsControlRequest = z.infer<typeof OpsControlRequest>;

/** The answer to a `scale`: the node's count on that host now (with `auto`: the count when it was unpinned). */
export const ScaleReply = z.object({
  node: z.string(),
  replicas: z.number().int().nonnegative(),
  host: z.string(),
  auto: z.literal(true).optional(),
});
export type ScaleReply = z.infer<typeof ScaleReply>;

/** The last change of a node's count. */
export const AutoscaleDecision = z.object({
  /** ISO time the change was decided. */
  at: z.string(),
  from: z.number(),
  to: z.number(),
  by: z.enum(["autoscaler", "manual", "activator"]),
  reason: z.string(),
});
export type AutoscaleDecision = z.infer<typeof AutoscaleDecision>;

/** A scale-to-zero node's activator: "off" (replicas serve), "armed" (no replica: requests are held), "waking". */
export const ActivatorStateSchema = z.enum(["off", "armed", "waking"]);

/** One node of an {@link AutoscalerSnapshot}. */
export const AutoscaleNodeSnapshot = z.object({
  node: z.string().min(1),
  /** The metric the node scales on (runtime/config.ts AUTOSCALE_METRICS). */
  metric: z.enum(["inFlight", "queueDepth", "batchFill"]),
  /** The metric's value per replica the autoscaler aims at. */
  target: z.number(),
  min: z.number().int(),
  max: z.number().int(),
  scale_up_after_ms: z.number(),
  scale_down_after_ms: z.number(),
  /** Replicas this `up` runs of the node now. */
  replicas: z.number().int(),
  /** What the last tick wanted (clamped to [min, max]); null before the first tick. */
  desired: z.number().nullable(),
  /** The metric's last value: a total over this up's replicas (batchFill: the fill 0..1); null before the first tick. */
  value: z.number().nullable(),
  /** The count `servegraph scale` pinned the node at; null while the autoscaler moves it. */
  pinned: z.number().int().nullable(),
  /** min is 0 and this `up` holds an activator for it. */
  scale_to_zero: z.boolean(),
  activator: ActivatorStateSchema.nullable(),
  /** Requests the activator holds now. */
  held: z.number().int(),
  last_decision: AutoscaleDecision.nullable(),
});
export type AutoscaleNodeSnapshot = z.infer<typeof AutoscaleNodeSnapshot>;

/** What the autoscaler of one `up` says: its host, its tick, and each node it scales. */
export const AutoscalerSnapshot = z.object({
  host: z.string(),
  tick_ms: z.number(),
  nodes: z.array(AutoscaleNodeSnapshot),
});
export type AutoscalerSnapshot = z.infer<typeof AutoscalerSnapshot>;

/** `up`'s control endpoint: `scale` answers a {@link ScaleReply}, `autoscaler` an {@link AutoscalerSnapshot}. */
export const OpsControl = endpoint({
  service: "ops",
  name: "control",
  description: "servegraph up's control: set a node's replica count (pinning it), unpin it, or read the autoscaler.",
  request: json(OpsControlRequest),
  reply: json(z.union([ScaleReply, AutoscalerSnapshot])),
  errors: ["BAD_REQUEST", "NOT_FOUND"],
  idempotent: false,
  example: {
    request: { op: "scale", node: "preprocess", replicas: 2 },
    reply: { node: "preprocess", replicas: 2, host: "vm-1" },
  },
});

/** The autoscaler's snapshot of the full `up`. */
export const OpsAutoscaler = endpoint({
  service: "ops",
  name: "autoscaler",
  description:
    "The autoscaler of the full servegraph up: each node's metric, target, desired count, pin and last decision.",
  request: json(z.strictObject({})),
  reply: json(AutoscalerSnapshot),
  errors: [],
  idempotent: true,
  example: { request: {}, reply: { host: "vm-1", tick_ms: 1000, nodes: [] } },
});

/** The control service's endpoints (the contract test round-trips their examples with the graph's own). */
export const OPS_ENDPOINTS = [OpsControl, OpsAutoscaler] as const;
