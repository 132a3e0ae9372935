import { test } from "node:test";
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { ConfigMap, Secret, Service } from "kubernetes-models/v1";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { loadGraph, resolveGraph, subjectOf } from "../../runtime/config.ts";
import { buildManifests, renderYaml, type K8sObject, type Manifest } from "../../ops/manifests/index.ts";

/**
 * Every object `servegraph manifests` writes, checked offline against the Kubernetes OpenAPI schemas
 * (kubernetes-models), KEDA's CRD schema (@kubernetes-models/keda) and the Prometheus operator's
 * (@kubernetes-models/prometheus-operator): types, required fields, enums, formats and patterns. (The schemas
 * allow unknown fields, as the API server does without strict field validation: a misspelt field is not caught.)
 */
type Validator = (data: unknown) => void;
const model =
  <T extends { validate(): void }>(C: new (data: never) => T): Validator =>
  (data) =>
    new C(structuredClone(data) as never).validate();
const VALIDATORS: Record<string, Validator> = {
  "v1/Secret": model(Secret),
  "v1/ConfigMap": model(ConfigMap),
  "v1/Service": model(Service),
  "apps/v1/Deployment": model(Deployment),
  "apps/v1/StatefulSet": model(StatefulSet),
  "autoscaling/v2/HorizontalPodAutoscaler": model(HorizontalPodAutoscaler),
  "policy/v1/PodDisruptionBudget": model(PodDisruptionBudget),
  "networking.k8s.io/v1/NetworkPolicy": model(NetworkPolicy),
  "keda.sh/v1alpha1/ScaledObject": model(ScaledObject),
  "monitoring.coreos.com/v1/PrometheusRule": model(PrometheusRule),
};

/** Validates one object by its apiVersion and kind; an object of a kind without a schema here fails. */
function validate(o: K8sObject): void {
  const v = VALIDATORS[`${o.apiVersion}/${o.kind}`];
  assert.ok(v, `no schema for ${o.apiVersion} ${o.kind}: add its validator`);
  v(o);
}

function validateAll(ms: readonly Manifest[], what: string): Set<string> {
  const kinds = new Set<string>();
  for (const m of ms) {
    try {
      validate(m.object);
    } catch (err) {
      assert.fail(
        `${what}: ${m.object.kind} ${m.object.metadata.name} does not match its schema: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    kinds.add(m.object.kind);
  }
  // and what kubectl reads: the YAML, parsed back the way Kubernetes tooling does (YAML 1.1)
  for (const d of parseAllDocuments(renderYaml(ms), { version: "1.1" })) validate(d.toJS() as K8sObject);
  return kinds;
}

const fixed = (u: string): string => `sgfixed${u.replace(/[^a-z0-9]/g, "")}`;
const graph = await loadGraph();

// Every feature in one small graph: a GPU node, a node at [0, N], an HTTP node, secrets, a batching node.
const edge = resolveGraph(
  {
    name: "edge",
    nodes: {
      front: {
        service: "services/front",
        http: { port: 8080, host: "127.0.0.1" },
        replicas: [1, 3],
        parameters: { RUN: subjectOf("gpu", "run") },
        secrets: { KEY: { env: "KEY", required: true } },
      },
      gpu: {
        service: "services/gpu",
        replicas: [0, 4],
        resources: { cpu: 4, memory: "16Gi", gpu: 1 },
        timeout: "1500ms",
        batching: { maxBatchSize: 8, maxQueueSize: 64 },
        autoscale: { metric: "batchFill", target: 0.75, scaleUpAfter: "3s", scaleDownAfter: "5m" },
      },
    },
    graphs: { main: { nodes: ["front", "gpu"] } },
    defaultGraphs: ["main"],
  },
  join(tmpdir(), "graph.config.ts"),
);

test("manifests-validate - every object of the reference graph matches the Kubernetes, KEDA and Prometheus-operator schemas", () => {
  for (const autoscaler of ["keda", "hpa"] as const) {
    const kinds = validateAll(
      buildManifests(graph, graph.defaultGraphs, {
        password: fixed,
        autoscaler,
        namespace: "serving",
        registry: "registry.example.com/ml",
        tag: "1.2.3",
      }),
      autoscaler,
    );
    const expected = [
      "ConfigMap",
      "Deployment",
      "NetworkPolicy",
      "PodDisruptionBudget",
      "PrometheusRule",
      "Secret",
      "Service",
      "StatefulSet",
      autoscaler === "keda" ? "ScaledObject" : "HorizontalPodAutoscaler",
    ];
    assert.deepEqual([...kinds].sort(), expected.sort());
  }
});

test("manifests-validate - a GPU node, scale to zero, an HTTP node with secrets: every object matches its schema", () => {
  for (const autoscaler of ["keda", "hpa"] as const)
    validateAll(buildManifests(edge, ["main"], { password: fixed, autoscaler }), `edge ${autoscaler}`);
});

test("manifests-validate - a broken object fails (the validation is not vacuous)", () => {
  const ms = buildManifests(edge, ["main"], { password: fixed });
  const pick = (kind: string, name: string): K8sObject =>
    structuredClone(ms.find((m) => m.object.kind === kind && m.object.metadata.name === name)!.object);
  const broken: [string, K8sObject][] = [];
  const d = pick("Deployment", "gpu");
  (
    d.spec as { template: { spec: { terminationGracePeriodSeconds: unknown } } }
  ).template.spec.terminationGracePeriodSeconds = "17";
  broken.push(["a Deployment with a string grace period", d]);
  const noImage = pick("Deployment", "front");
  delete (noImage.spec as { template: { spec: { containers: { name?: string }[] } } }).template.spec.containers[0]!
    .name;
  broken.push(["a container without its required name", noImage]);
  const so = pick("ScaledObject", "gpu");
  (so.spec as { triggers: { metadata: Record<string, unknown> }[] }).triggers[0]!.metadata.threshold = 0.75;
  broken.push(["a KEDA trigger with a number threshold", so]);
  const noTarget = pick("ScaledObject", "gpu");
  delete (noTarget.spec as { scaleTargetRef?: unknown }).scaleTargetRef;
  broken.push(["a ScaledObject without scaleTargetRef", noTarget]);
  const sts = pick("StatefulSet", "nats");
  (sts.spec as { podManagementPolicy: unknown }).podManagementPolicy = 3;
  broken.push(["a StatefulSet with a number podManagementPolicy", sts]);
  const rule = pick("PrometheusRule", "edge-alerts");
  (rule.spec as { groups: { rules: { for: string }[] }[] }).groups[0]!.rules[0]!.for = "5 minutes";
  broken.push(["an alert with a duration Prometheus cannot read", rule]);
  const hpa = buildManifests(edge, ["main"], { password: fixed, autoscaler: "hpa" }).find(
    (m) => m.object.kind === "HorizontalPodAutoscaler",
  )!.object;
  const badHpa = structuredClone(hpa);
  (badHpa.spec as { maxReplicas?: unknown }).maxReplicas = undefined;
  delete (badHpa.spec as { maxReplicas?: unknown }).maxReplicas;
  broken.push(["an HPA without maxReplicas", badHpa]);
  for (const [what, o] of broken) assert.throws(() => validate(o), `${what} must fail its schema`);
  // and the untouched objects pass
  for (const m of ms) validate(m.object);
});
