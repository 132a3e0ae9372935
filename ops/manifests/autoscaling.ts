/**
 * The autoscaler of a node with `replicas: [min, max]`, on the same policy as `servegraph up`'s (graph.config.ts
 * `autoscale`: a metric, a target per replica, how long the metric must ask before scaling up or down):
 *
 *   - `keda` (default): a KEDA ScaledObject with a Prometheus trigger on the metric the replicas export. KEDA
 *     scales to 0 where the graph says `replicas: [0, N]`: a second trigger, the callers' request rate to the
 *     node's subjects (sg_client_request_duration_seconds, which the callers record even while the node has no
 *     replica and their requests fail), wakes it up.
 *   - `hpa`: an autoscaling/v2 HorizontalPodAutoscaler on a Pods metric of the same name, served to the HPA by the
 *     Prometheus adapter (a rule per metric, written in the object's comments). An HPA cannot go below 1 replica:
 *     min 0 is clamped to 1, and the comment says so.
 *
 * Both aim at `sum(metric over replicas) / target` replicas (AverageValue), so `target` is what one replica should
 * carry: requests in flight, requests waiting in the batch queue, or batch fill 0..1. scaleUpAfter and
 * scaleDownAfter are the HPA's stabilization windows; scaleDownAfter is also KEDA's cooldown before going to 0.
 */
import type { AutoscalePolicy, ResolvedGraph, ResolvedNode } from "../../runtime/index.ts";
import type { K8sMetadata, Manifest } from "./kubernetes.ts";

export const AUTOSCALERS = ["keda", "hpa"] as const;
export type Autoscaler = (typeof AUTOSCALERS)[number];
export const DEFAULT_AUTOSCALER: Autoscaler = "keda";
/** Where KEDA's triggers query Prometheus unless --prometheus-url says otherwise. */
export const DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090";
/** How often KEDA queries Prometheus, seconds. */
export const KEDA_POLLING_INTERVAL_S = 15;

/** The Prometheus metric, exported by every replica with its `node` label, that each policy metric reads. */
export const AUTOSCALE_METRIC_NAMES = {
  inFlight: "sg_requests_in_flight",
  queueDepth: "sg_batch_queue_depth",
  batchFill: "sg_batch_fill_ratio",
} as const satisfies Record<AutoscalePolicy["metric"], string>;

/** `a|b` of PromQL regex alternatives, each subject's dots escaped (PromQL string escapes: `\\.`). */
function subjectsRegex(subjects: readonly string[]): string {
  return subjects.map((s) => s.replace(/\./g, "\\\\.")).join("|");
}

export interface AutoscalingContext {
  readonly graph: ResolvedGraph;
  readonly autoscaler: Autoscaler;
  readonly prometheusUrl: string;
  /** The subjects of this node that other nodes of the closure call (its demand while it has no replica). */
  readonly calledSubjects: readonly string[];
  readonly meta: (name: string, component: string, extra?: Partial<K8sMetadata>) => K8sMetadata;
}

/** The lowest replica count the emitted autoscaler keeps, and why it differs from the graph's min (if it does). */
export function effectiveMinReplicas(
  node: ResolvedNode,
  c: Pick<AutoscalingContext, "autoscaler" | "calledSubjects">,
): { min: number; note?: string } {
  const min = node.replicas.min;
  if (min > 0) return { min };
  if (c.autoscaler === "hpa")
    return {
      min: 1,
      note: "replicas min 0 clamped to 1: a HorizontalPodAutoscaler cannot scale to zero (use --autoscaler keda)",
    };
  if (node.http)
    return {
      min: 1,
      note: "replicas min 0 clamped to 1: an HTTP node has no NATS caller whose demand could wake it up",
    };
  if (!c.calledSubjects.length)
    return {
      min: 1,
      note: "replicas min 0 clamped to 1: no node of the deployed graphs calls it, so nothing would wake it up",
    };
  return { min: 0 };
}

/** The autoscaler object of a node with replicas [min, max] (min < max), in its <node>.yaml. */
export function autoscalerManifest(node: ResolvedNode, c: AutoscalingContext): Manifest {
  const n = node.name;
  // runtime/config.ts resolves it (defaults by node kind) for every node with min < max.
  const policy = node.autoscale;
  if (!policy) throw new Error(`node ${n} has a fixed replica count: it has no autoscaler`);
  const metric = AUTOSCALE_METRIC_NAMES[policy.metric];
  const { min, note } = effectiveMinReplicas(node, c);
  const upS = Math.ceil(policy.scaleUpAfterMs / 1000);
  const downS = Math.ceil(policy.scaleDownAfterMs / 1000);
  const behavior = {
    scaleUp: { stabilizationWindowSeconds: upS },
    scaleDown: { stabilizationWindowSeconds: downS },
  };
  const why = `${policy.metric} (${metric}), target ${policy.target} per replica, up after ${upS} s, down after ${downS} s`;
  if (c.autoscaler === "hpa") {
    return {
      file: `${n}.yaml`,
      comments: [
        `Autoscaling of ${n}: ${why}.`,
        ...(note ? [note] : []),
        `The HPA reads the Pods metric ${metric} through the Prometheus adapter; a rule that serves it:`,
        `  - seriesQuery: '${metric}{namespace!="",pod!=""}'`,
        `    resources: { overrides: { namespace: { resource: namespace }, pod: { resource: pod } } }`,
        `    metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'`,
      ],
      object: {
        apiVersion: "autoscaling/v2",
        kind: "HorizontalPodAutoscaler",
        metadata: c.meta(n, n),
        spec: {
          scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: n },
          minReplicas: min,
          maxReplicas: node.replicas.max,
          metrics: [
            {
              type: "Pods",
              pods: {
                metric: { name: metric, selector: { matchLabels: { node: n } } },
                target: { type: "AverageValue", averageValue: String(policy.target) },
              },
            },
          ],
          behavior,
        },
      },
    };
  }
  const triggers: Record<string, unknown>[] = [
    {
      type: "prometheus",
      name: policy.metric,
      metricType: "AverageValue",
      metadata: {
        serverAddress: c.prometheusUrl,
        query: `sum(${metric}{node="${n}"})`,
        threshold: String(policy.target),
      },
    },
  ];
  if (min === 0) {
    triggers.push({
      type: "prometheus",
      name: "demand",
      metricType: "AverageValue",
      metadata: {
        serverAddress: c.prometheusUrl,
        // Requests per second the callers send to this node, answered or not: above 0, the node wakes up.
        query: `sum(rate(sg_client_request_duration_seconds_count{subject=~"${subjectsRegex(c.calledSubjects)}"}[1m]))`,
        // Only wakes the node up: the policy's trigger above sizes it.
        threshold: "1000000",
        activationThreshold: "0",
      },
    });
  }
  return {
    file: `${n}.yaml`,
    comments: [
      `Autoscaling of ${n} (KEDA): ${why}.`,
      ...(note ? [note] : []),
      ...(min === 0
        ? [
            `Scales to 0 after ${downS} s without demand; the callers' requests to ${c.calledSubjects.join(", ")} wake it up.`,
          ]
        : []),
    ],
    object: {
      apiVersion: "keda.sh/v1alpha1",
      kind: "ScaledObject",
      metadata: c.meta(n, n),
      spec: {
        scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: n },
        minReplicaCount: min,
        maxReplicaCount: node.replicas.max,
        pollingInterval: KEDA_POLLING_INTERVAL_S,
        cooldownPeriod: downS,
        advanced: { horizontalPodAutoscalerConfig: { behavior } },
        triggers,
      },
    },
  };
}
