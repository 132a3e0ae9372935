import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { loadGraph, resolveGraph, subjectOf, GraphConfigError } from "../../runtime/config.ts";
import { nodesOfGraphs } from "../../runtime/graph-queries.ts";
import { findNatsServer } from "../../ops/nats-server.ts";
import { main } from "../../ops/cli.ts";
import { REPO_ROOT } from "../helpers/graph.ts";
import { parseAllDocuments } from "yaml";
import {
  buildManifests,
  callersOf,
  natsPermissions,
  passwordEnvName,
  randomPassword,
  renderYaml,
  yamlDocument,
  AUTOSCALE_METRIC_NAMES,
  DEFAULT_PROMETHEUS_URL,
  METRICS_PORT,
  SRV_PING_PROBE,
  type K8sObject,
  type Manifest,
} from "../../ops/manifests/index.ts";

/**
 * Every document of a YAML stream, read by the `yaml` package as YAML 1.2 (its default) and as YAML 1.1 (what
 * Kubernetes tooling reads): both readings must agree and have no errors or warnings.
 */
function parseYamlStream(src: string): unknown[] {
  const read = (version: "1.1" | "1.2"): unknown[] =>
    parseAllDocuments(src, { version }).map((d) => {
      assert.deepEqual(
        [...d.errors, ...d.warnings].map((e) => e.message),
        [],
        `YAML ${version}`,
      );
      return d.toJS();
    });
  const docs = read("1.2");
  assert.deepEqual(read("1.1"), docs, "YAML 1.1 reads the stream as YAML 1.2 does");
  return docs;
}

// --- fixtures --------------------------------------------------------------------------------------------

const SECRET_VALUE = "sk-test-0123456789-never-in-manifests";
process.env.STATSIG_SERVER_KEY = SECRET_VALUE;

const fixedPassword = (u: string): string => `sgfixed${u.replace(/[^a-z0-9]/g, "")}`;
const graph = await loadGraph();
const all = buildManifests(graph, graph.defaultGraphs, { password: fixedPassword });
const closureNodes = nodesOfGraphs(graph, graph.defaultGraphs);

function find(ms: readonly Manifest[], kind: string, name: string): K8sObject {
  const m = ms.find((x) => x.object.kind === kind && x.object.metadata.name === name);
  assert.ok(m, `no ${kind} ${name}`);
  return m.object;
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean }; fieldRef?: unknown };
}
interface Container {
  name: string;
  image: string;
  command: string[];
  env: EnvVar[];
  ports: { name: string; containerPort: number }[];
  resources: { requests: Record<string, string>; limits: Record<string, string> };
  readinessProbe?: { httpGet: { path: string; port: number } };
  livenessProbe: { httpGet: { path: string; port: number } };
}
interface PodSpec {
  terminationGracePeriodSeconds: number;
  containers: Container[];
  tolerations?: unknown[];
}
interface DeploymentSpec {
  replicas: number;
  selector: { matchLabels: Record<string, string> };
  template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: PodSpec };
}

const spec = (o: K8sObject): DeploymentSpec => o.spec as DeploymentSpec;
const containerOf = (ms: readonly Manifest[], node: string): Container =>
  spec(find(ms, "Deployment", node)).template.spec.containers[0]!;

// --- tests -----------------------------------------------------------------------------------------------

test("manifests - one Deployment per node of the closure, plus the NATS cluster", () => {
  const deployments = all.filter((m) => m.object.kind === "Deployment").map((m) => m.object.metadata.name);
  assert.deepEqual([...deployments].sort(), [...closureNodes].sort());
  assert.equal(new Set(deployments).size, deployments.length);
  assert.deepEqual(
    all.filter((m) => m.object.kind === "StatefulSet").map((m) => m.object.metadata.name),
    ["nats"],
  );
  const classify = buildManifests(graph, ["classify"], { password: fixedPassword });
  assert.deepEqual(
    classify
      .filter((m) => m.object.kind === "Deployment")
      .map((m) => m.object.metadata.name)
      .sort(),
    ["infer", "ingress", "preprocess"],
  );
  for (const n of closureNodes) {
    const d = find(all, "Deployment", n);
    assert.equal(d.metadata.labels?.["app.kubernetes.io/name"], n);
    assert.equal(d.metadata.labels?.["app.kubernetes.io/part-of"], graph.name);
    assert.deepEqual(spec(d).selector.matchLabels, spec(d).template.metadata.labels);
    const c = containerOf(all, n);
    assert.equal(
      c.image,
      `servegraph-${graph.nodes[n]!.service.split("/").pop()}:0.1.0`,
      "the image of the node's workspace",
    );
    assert.deepEqual(c.command, ["node", "--import", "tsx", `${graph.nodes[n]!.service}/src/main.ts`]);
  }
});

test("manifests - replicas, and a KEDA ScaledObject or an HPA with the node's policy where replicas is [min, max]", () => {
  const hpa = buildManifests(graph, graph.defaultGraphs, { password: fixedPassword, autoscaler: "hpa" });
  for (const n of closureNodes) {
    const node = graph.nodes[n]!;
    const { min, max } = node.replicas;
    const scaled = all.find((m) => m.object.kind === "ScaledObject" && m.object.metadata.name === n)?.object;
    const h = hpa.find((m) => m.object.kind === "HorizontalPodAutoscaler" && m.object.metadata.name === n)?.object;
    assert.ok(
      !all.some((m) => m.object.kind === "HorizontalPodAutoscaler"),
      "keda is the default: no HPA beside the ScaledObjects",
    );
    if (min < max) {
      const policy = node.autoscale!;
      assert.equal(spec(find(all, "Deployment", n)).replicas, undefined, `${n}: the autoscaler owns the count`);
      assert.ok(scaled, `${n} scales ${min}..${max}: needs a ScaledObject`);
      const s = scaled.spec as {
        minReplicaCount: number;
        maxReplicaCount: number;
        cooldownPeriod: number;
        scaleTargetRef: { name: string };
        advanced: {
          horizontalPodAutoscalerConfig: {
            behavior: {
              scaleUp: { stabilizationWindowSeconds: number };
              scaleDown: { stabilizationWindowSeconds: number };
            };
          };
        };
        triggers: {
          type: string;
          metricType: string;
          metadata: { query: string; threshold: string; serverAddress: string };
        }[];
      };
      // min 0: scales to zero (a node some node calls), with a second trigger that wakes it up on demand
      assert.equal(s.minReplicaCount, min === 0 && !graph.nodes[n]!.http ? 0 : Math.max(min, 1));
      assert.equal(s.maxReplicaCount, max);
      assert.equal(s.scaleTargetRef.name, n);
      assert.equal(s.triggers.length, s.minReplicaCount === 0 ? 2 : 1);
      assert.equal(s.triggers[0]!.type, "prometheus");
      assert.equal(s.triggers[0]!.metadata.query, `sum(${AUTOSCALE_METRIC_NAMES[policy.metric]}{node="${n}"})`);
      assert.equal(s.triggers[0]!.metadata.threshold, String(policy.target));
      assert.equal(s.triggers[0]!.metadata.serverAddress, DEFAULT_PROMETHEUS_URL);
      assert.equal(
        s.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.stabilizationWindowSeconds,
        Math.ceil(policy.scaleUpAfterMs / 1000),
      );
      assert.equal(
        s.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds,
        Math.ceil(policy.scaleDownAfterMs / 1000),
      );
      assert.equal(s.cooldownPeriod, Math.ceil(policy.scaleDownAfterMs / 1000));
      assert.ok(h, `${n}: --autoscaler hpa writes an HPA`);
      const hs = h.spec as {
        minReplicas: number;
        maxReplicas: number;
        metrics: { type: string; pods: { metric: { name: string }; target: { averageValue: string } } }[];
        behavior: unknown;
      };
      assert.equal(hs.minReplicas, Math.max(min, 1));
      assert.equal(hs.maxReplicas, max);
      assert.equal(hs.metrics[0]!.type, "Pods");
      assert.equal(hs.metrics[0]!.pods.metric.name, AUTOSCALE_METRIC_NAMES[policy.metric]);
      assert.equal(hs.metrics[0]!.pods.target.averageValue, String(policy.target));
      assert.deepEqual(hs.behavior, s.advanced.horizontalPodAutoscalerConfig.behavior);
      assert.ok(!hpa.some((m) => m.object.kind === "ScaledObject"));
    } else {
      assert.equal(spec(find(all, "Deployment", n)).replicas, min, n);
      assert.equal(scaled, undefined, `${n} has a fixed replica count`);
      assert.equal(h, undefined, `${n} has a fixed replica count`);
    }
  }
  // the reference graph has both kinds, and the policy of graph.config.ts reaches the trigger
  assert.ok(all.some((m) => m.object.kind === "ScaledObject" && m.object.metadata.name === "preprocess"));
  assert.ok(!all.some((m) => m.object.kind === "ScaledObject" && m.object.metadata.name === "variant-a"));
  assert.match(
    JSON.stringify(find(all, "ScaledObject", "infer").spec),
    /sum\(sg_batch_queue_depth\{node=\\"infer\\"\}\)/,
    "infer scales on its batch queue",
  );
});

test("manifests - replicas [0, N]: KEDA scales to zero and wakes on the callers' demand; an HPA is clamped to 1", () => {
  const g = resolveGraph(
    {
      name: "g",
      nodes: {
        front: {
          service: "services/front",
          parameters: { BACK_SUBJECT: subjectOf("back", "run") },
          calls: [subjectOf("back", "info")],
        },
        back: { service: "services/back", replicas: [0, 3], timeout: "2s" },
        lonely: { service: "services/lonely", replicas: [0, 2] },
      },
      graphs: { main: { nodes: ["front", "back", "lonely"] } },
      defaultGraphs: ["main"],
    },
    join(tmpdir(), "graph.config.ts"),
  );
  const keda = buildManifests(g, ["main"]);
  const so = find(keda, "ScaledObject", "back").spec as {
    minReplicaCount: number;
    cooldownPeriod: number;
    triggers: { name: string; metadata: Record<string, string> }[];
  };
  assert.equal(so.minReplicaCount, 0);
  assert.equal(so.triggers.length, 2);
  const demand = so.triggers.find((t) => t.name === "demand")!;
  assert.equal(demand.metadata.activationThreshold, "0");
  assert.equal(
    demand.metadata.query,
    'sum(rate(sg_client_request_duration_seconds_count{subject=~"sg\\\\.v1\\\\.back\\\\.info|sg\\\\.v1\\\\.back\\\\.run"}[1m]))',
  );
  // nothing calls `lonely`: nothing could wake it, so it keeps one replica, and the file says why
  const lonely = keda.find((m) => m.object.kind === "ScaledObject" && m.object.metadata.name === "lonely")!;
  assert.equal((lonely.object.spec as { minReplicaCount: number }).minReplicaCount, 1);
  assert.ok(lonely.comments.some((c) => /clamped to 1/.test(c)));
  const hpa = buildManifests(g, ["main"], { autoscaler: "hpa" });
  const h = hpa.find((m) => m.object.kind === "HorizontalPodAutoscaler" && m.object.metadata.name === "back")!;
  assert.equal((h.object.spec as { minReplicas: number }).minReplicas, 1);
  assert.ok(
    h.comments.some((c) => /cannot scale to zero/.test(c)),
    "the clamp is said in the output",
  );
  assert.match(renderYaml(hpa), /# replicas min 0 clamped to 1: a HorizontalPodAutoscaler cannot scale to zero/);
  assert.throws(() => buildManifests(g, ["main"], { autoscaler: "vpa" as never }), GraphConfigError);
});

test("manifests - env carries SG_NODE, every parameter as a string, resolved subjects and NATS settings", () => {
  for (const n of closureNodes) {
    const env = containerOf(all, n).env;
    const byName = new Map(env.map((e) => [e.name, e]));
    assert.equal(byName.size, env.length, `${n}: duplicate env names`);
    assert.equal(byName.get("SG_NODE")?.value, n);
    for (const [k, v] of Object.entries(graph.nodes[n]!.parameters)) assert.equal(byName.get(k)?.value, v, `${n}.${k}`);
    for (const e of env) if (e.value !== undefined) assert.equal(typeof e.value, "string", `${n}.${e.name}`);
    assert.equal(byName.get("NATS_URL")?.value, "nats://nats:4222");
    assert.equal(byName.get("NATS_USER")?.value, n);
    assert.deepEqual(byName.get("NATS_PASSWORD")?.valueFrom?.secretKeyRef, {
      name: `${graph.name}-nats-credentials`,
      key: n,
    });
  }
  const env = (n: string) => new Map(containerOf(all, n).env.map((e) => [e.name, e.value]));
  assert.equal(env("greeter-proxy").get("GREETER_SUBJECT"), "sg.v1.greeter.greet");
  assert.equal(env("preprocess").get("INFER_SUBJECT"), "sg.v1.infer.run");
  assert.equal(env("variant-b").get("VARIANT"), "B");
  // A parameter graph.config.ts leaves out is not set: the replica gets its service's params.ts default, the one place it lives.
  assert.equal(env("greeter").has("DELAY_MS"), false);
  assert.equal(env("ingress").has("MAX_BODY_BYTES"), false);
  // metrics: a fixed port on all interfaces; the ingress listens on 0.0.0.0 and serves /metrics itself
  assert.equal(env("greeter").get("SG_METRICS_PORT"), String(METRICS_PORT));
  assert.equal(env("greeter").get("SG_METRICS_HOST"), "0.0.0.0");
  assert.equal(env("ingress").get("HOST"), "0.0.0.0");
  assert.equal(env("ingress").get("PORT"), String(graph.nodes.ingress!.http!.port));
});

test("manifests - secrets are secretKeyRefs, never values", () => {
  const refs = containerOf(all, "ab-router").env.filter((e) => e.name === "STATSIG_SERVER_KEY");
  assert.equal(refs.length, 1);
  assert.equal(refs[0]!.value, undefined);
  assert.deepEqual(refs[0]!.valueFrom?.secretKeyRef, {
    name: `${graph.name}-ab-router-secrets`,
    key: "STATSIG_SERVER_KEY",
    optional: true,
  });
  const template = find(all, "Secret", `${graph.name}-ab-router-secrets`);
  assert.deepEqual(template.stringData, { STATSIG_SERVER_KEY: "" });
  const json = JSON.stringify(all);
  const yaml = renderYaml(all);
  assert.ok(
    !json.includes(SECRET_VALUE) && !yaml.includes(SECRET_VALUE),
    "the launcher's secret value leaked into the manifests",
  );
  // NATS passwords appear only base64-encoded in the credentials Secret
  const creds = find(all, "Secret", `${graph.name}-nats-credentials`);
  assert.deepEqual(Object.keys(creds.data as object).sort(), [...closureNodes, "servegraph"].sort());
  for (const [u, b64] of Object.entries(creds.data as Record<string, string>)) {
    assert.equal(Buffer.from(b64, "base64").toString("utf8"), fixedPassword(u));
    assert.ok(!yaml.includes(fixedPassword(u)), `password of ${u} in clear`);
  }
  // a required secret is not optional
  const g = resolveGraph(
    {
      name: "g",
      nodes: { a: { service: "services/a", secrets: { API_KEY: { env: "API_KEY", required: true } } } },
      graphs: { main: { nodes: ["a"] } },
      defaultGraphs: ["main"],
    },
    join(tmpdir(), "graph.config.ts"),
  );
  const ref = containerOf(buildManifests(g, ["main"]), "a").env.find((e) => e.name === "API_KEY");
  assert.equal(ref?.valueFrom?.secretKeyRef?.optional, false);
});

test("manifests - NATS permissions come from the graph's edges", () => {
  const gp = natsPermissions(graph, "greeter-proxy");
  assert.ok(gp.publish.includes("sg.v1.greeter.greet"));
  assert.ok(!gp.publish.includes("sg.v1.infer.run"));
  assert.ok(!gp.publish.some((s) => s.endsWith(">") || s === "*"), "no wildcard publish for a node");
  const pre = natsPermissions(graph, "preprocess");
  assert.ok(pre.publish.includes("sg.v1.infer.run") && pre.publish.includes("sg.v1.infer.labels"));
  assert.ok(!pre.publish.includes("sg.v1.greeter.greet"));
  assert.deepEqual(
    natsPermissions(graph, "greeter").publish,
    ["$SRV.PING.greeter", "_INBOX_greeter-proxy.*.hb.*", "_INBOX.*.hb.*"],
    "a leaf node publishes only replies, its own PING (readiness probe) and heartbeats to its callers' (and ops's) heartbeat subjects",
  );
  assert.deepEqual(
    natsPermissions(graph, "preprocess").publish.filter((x) => x.includes(".hb.")),
    ["_INBOX_ingress.*.hb.*", "_INBOX.*.hb.*"],
  );
  assert.deepEqual(callersOf(graph, "infer"), ["ingress", "preprocess"]);
  assert.ok(
    !natsPermissions(graph, "ingress").publish.includes("$SRV.PING.ingress"),
    "an HTTP node's probe is /readyz",
  );
  assert.deepEqual(
    natsPermissions(graph, "ingress")
      .publish.filter((x) => x.startsWith("sg.v1."))
      .sort(),
    ["sg.v1.ab-router.process", "sg.v1.greeter-proxy.greeting", "sg.v1.infer.labels", "sg.v1.preprocess.classify"],
    "the ingress may call exactly the endpoints of its declared routes",
  );
  const localIngress = natsPermissions(graph, "ingress", { control: true }).publish;
  assert.ok(localIngress.includes("sg.ops.autoscaler"), "on up's broker the dashboard may read the autoscaler");
  assert.ok(!localIngress.some((x) => x.startsWith("sg.ops.control")), "but never send a scale");
  assert.ok(!natsPermissions(graph, "ingress").publish.includes("sg.ops.autoscaler"), "a cluster grants neither");
  for (const n of Object.keys(graph.nodes)) {
    for (const s of natsPermissions(graph, n).subscribe) {
      const own =
        s === `sg.v1.${n}.>` ||
        s === `_INBOX_${n}.>` ||
        ["$SRV.PING", "$SRV.INFO", "$SRV.STATS"].includes(s) ||
        s === `$SRV.*.${n}` ||
        s === `$SRV.*.${n}.*`;
      assert.ok(own, `${n} subscribes to ${s}`);
    }
  }
  // the ConfigMap's nats.conf carries them, one user per node plus the ops user
  const conf = (find(all, "ConfigMap", "nats-config").data as Record<string, string>)["nats.conf"]!;
  for (const n of [...closureNodes, "servegraph"]) {
    assert.ok(conf.includes(`user: ${JSON.stringify(n)}\n`), `user ${n}`);
    assert.ok(conf.includes(`password: $${passwordEnvName(n)}\n`));
  }
  assert.match(conf, /^max_payload: 16MB$/m);
  assert.match(conf, /^port: 4222$/m);
  assert.match(conf, /^http_port: 8222$/m);
  assert.match(
    conf,
    /publish: \{ allow: \["sg\.v1\.greeter\.greet", "\$SRV\.\*\.greeter", "\$SRV\.PING\.greeter-proxy", "_INBOX_ingress\.\*\.hb\.\*", "_INBOX\.\*\.hb\.\*"\] \}/,
  );
  // one reply per request received, within the node's timeout (greeter: 5 s, + 5): never several (see nats-permissions.ts)
  assert.match(
    conf.slice(conf.indexOf('user: "greeter"\n')).split("    }\n")[0]!,
    /allow_responses: \{ max: 1, expires: "10s" \}/,
  );
  assert.doesNotMatch(conf, /allow_responses: \{ max: (?!1,)/);
  // the server gets each password from the credentials Secret under the name nats.conf references
  const natsEnv = containerOfNats(all);
  for (const n of [...closureNodes, "servegraph"]) {
    assert.deepEqual(natsEnv.find((e) => e.name === passwordEnvName(n))?.valueFrom?.secretKeyRef, {
      name: `${graph.name}-nats-credentials`,
      key: n,
    });
  }
});

function containerOfNats(ms: readonly Manifest[]): EnvVar[] {
  const c = spec(find(ms, "StatefulSet", "nats")).template.spec.containers[0]!;
  assert.equal(c.image, "nats:2.10-alpine");
  return c.env;
}

test("manifests - probes, ports, resources and drain time", () => {
  const ing = containerOf(all, "ingress");
  const port = graph.nodes.ingress!.http!.port;
  assert.deepEqual(ing.readinessProbe?.httpGet, { path: "/readyz", port });
  assert.deepEqual(ing.livenessProbe.httpGet, { path: "/healthz", port });
  assert.deepEqual(ing.ports, [{ name: "http", containerPort: port }]);
  const svc = find(all, "Service", "ingress").spec as { ports: { port: number; targetPort: number }[] };
  assert.deepEqual(
    svc.ports.map((p) => [p.port, p.targetPort]),
    [[80, port]],
  );
  const pre = containerOf(all, "preprocess");
  assert.deepEqual(pre.livenessProbe.httpGet, { path: "/metrics", port: METRICS_PORT });
  // a node without HTTP is ready when this replica answers $SRV.PING: the probe script shipped in every image
  assert.deepEqual((pre.readinessProbe as unknown as { exec: { command: string[] } }).exec.command, [
    "node",
    `/app/${SRV_PING_PROBE}`,
  ]);
  assert.ok(existsSync(join(REPO_ROOT, SRV_PING_PROBE)));
  assert.deepEqual(pre.ports, [{ name: "metrics", containerPort: METRICS_PORT }]);
  assert.deepEqual(pre.resources.requests, { cpu: "1", memory: "512Mi" });
  assert.deepEqual(pre.resources.limits, pre.resources.requests);
  assert.equal(containerOf(all, "greeter").resources.requests.cpu, "250m");
  const ann = spec(find(all, "Deployment", "greeter")).template.metadata.annotations;
  assert.deepEqual(ann, {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": "9464",
    "prometheus.io/path": "/metrics",
  });
  assert.equal(spec(find(all, "Deployment", "preprocess")).template.spec.terminationGracePeriodSeconds, 30 + 15);
  assert.equal(spec(find(all, "Deployment", "greeter")).template.spec.terminationGracePeriodSeconds, 5 + 15);
  assert.equal(
    spec(find(all, "Deployment", "ingress")).template.spec.terminationGracePeriodSeconds,
    30 + 15 + 5,
    "the ingress also pauses 5 s in preStop",
  );
  assert.deepEqual((ing as unknown as { lifecycle: unknown }).lifecycle, {
    preStop: { exec: { command: ["sleep", "5"] } },
  });
  assert.equal(spec(find(all, "Deployment", "infer")).template.spec.tolerations, undefined, "gpu: 0");

  const g = resolveGraph(
    {
      name: "g",
      nodes: { gpu: { service: "services/gpu", resources: { cpu: 0.5, memory: "4Gi", gpu: 2 }, timeout: "1500ms" } },
      graphs: { main: { nodes: ["gpu"] } },
      defaultGraphs: ["main"],
    },
    join(tmpdir(), "graph.config.ts"),
  );
  const ms = buildManifests(g, ["main"], { image: "registry.example/sg:1.2.3", namespace: "serving" });
  const c = containerOf(ms, "gpu");
  assert.deepEqual(c.resources.limits, { cpu: "500m", memory: "4Gi", "nvidia.com/gpu": "2" });
  assert.equal(c.image, "registry.example/sg:1.2.3", "--image: one image for every node");
  assert.deepEqual(spec(find(ms, "Deployment", "gpu")).template.spec.tolerations, [
    { key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" },
  ]);
  assert.deepEqual(
    (spec(find(ms, "Deployment", "gpu")).template.spec as unknown as { nodeSelector: unknown }).nodeSelector,
    { "nvidia.com/gpu.present": "true" },
  );
  assert.equal(
    containerOf(buildManifests(g, ["main"], { registry: "registry.example.com/team/", tag: "2.0.1" }), "gpu").image,
    "registry.example.com/team/servegraph-gpu:2.0.1",
  );
  assert.throws(() => buildManifests(g, ["main"], { tag: "-bad tag" }), GraphConfigError);
  assert.throws(() => buildManifests(g, ["main"], { registry: "Not A Registry" }), GraphConfigError);
  assert.equal(spec(find(ms, "Deployment", "gpu")).template.spec.terminationGracePeriodSeconds, 2 + 15);
  assert.ok(ms.every((m) => m.object.metadata.namespace === "serving"));
});

test("manifests - names Kubernetes cannot take are refused", () => {
  const bad = (nodes: Record<string, unknown>) =>
    resolveGraph(
      { name: "g", nodes, graphs: { main: { nodes: Object.keys(nodes) } }, defaultGraphs: ["main"] },
      join(tmpdir(), "graph.config.ts"),
    );
  assert.throws(() => buildManifests(bad({ My_Node: { service: "s" } }), ["main"]), GraphConfigError);
  assert.throws(() => buildManifests(bad({ nats: { service: "s" } }), ["main"]), GraphConfigError);
  assert.throws(() => buildManifests(graph, ["nope"]), GraphConfigError);
  assert.throws(() => buildManifests(graph, ["chain"], { namespace: "Bad NS" }), GraphConfigError);
});

test("manifests - output is deterministic except the passwords", () => {
  assert.deepEqual(buildManifests(graph, graph.defaultGraphs, { password: fixedPassword }), all);
  const a = buildManifests(graph, ["chain"]);
  const b = buildManifests(graph, ["chain"]);
  const strip = (ms: Manifest[]) =>
    ms.map((m) =>
      m.object.kind === "Secret" && m.object.metadata.name.endsWith("-nats-credentials")
        ? { ...m, object: { ...m.object, data: null } }
        : m,
    );
  assert.deepEqual(strip(a), strip(b));
  assert.notDeepEqual(a, b, "fresh passwords on every run");
  assert.match(randomPassword(), /^sg[0-9a-f]{48}$/);
});

test("manifests - YAML parses back to the same objects", () => {
  const yaml = renderYaml(all);
  assert.deepEqual(
    parseYamlStream(yaml),
    all.map((m) => m.object),
  );
  // the nats.conf literal block and the header comments survive
  assert.match(yaml, /^ {2}nats\.conf: \|$/m);
  assert.match(yaml, /^# nats\.conf of the 3-server NATS cluster/m);
});

test("manifests - YAML keeps every string a string, in YAML 1.1 and 1.2", () => {
  const tricky = {
    yes: "no",
    on: "off",
    n: "y",
    "": "",
    "a b": "#not a comment",
    "k:v": "key: value",
    num: "0123",
    octal: "0o17",
    float: "1e3",
    sexagesimal: "1:20",
    bool: "true",
    nul: "null",
    tilde: "~",
    dash: "- item",
    star: "*anchor",
    amp: "&x",
    bang: "!tag",
    pct: "%YAML",
    at: "@x",
    tick: "`x`",
    brace: "{a: 1}",
    brack: "[1]",
    quote: 'it\'s "quoted"',
    tab: "a\tb",
    uni: "naïve ✓",
    crlf: "a\r\nb",
    trail: "line\n\n",
    lead: "  indented\nx",
    block: "a\n  b\nc\n",
    strip: "a\nb",
    long: Array(40).fill("word").join(" "),
    num1: 1.5,
    neg: -2,
    t: true,
    z: null,
    empty: {},
    none: [],
    nested: [[1, "2"], [], { a: [] }, ["x\ny"]],
  };
  const y = yamlDocument(tricky, ["a comment", "", "#3"]);
  assert.deepEqual(parseYamlStream(y), [tricky]);
  assert.match(y, /^---\n# a comment\n#\n# #3\n/);
  assert.match(y, /^"yes": "no"$/m);
  assert.match(y, /^num: "0123"$/m);
  assert.match(y, /^"n": "y"$/m, "y and n are booleans in YAML 1.1");
  assert.match(y, /^block: \|$/m, "a multi-line string is a literal block");
  assert.match(y, /^long: word( word){39}$/m, "no line folding");
  // an object used twice is written out twice, not as an anchor and an alias
  const shared = { cpu: "1" };
  assert.equal(yamlDocument({ requests: shared, limits: shared }), '---\nrequests:\n  cpu: "1"\nlimits:\n  cpu: "1"\n');
});

test("manifests - `servegraph manifests classify --out dir` writes one file per node plus nats.yaml and secrets.yaml", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sg-manifests-"));
  // prints a summary to stdout (the test runner shows it as a comment)
  const code = await main(["manifests", "classify", "--out", dir, "--namespace", "demo"]);
  try {
    assert.equal(code, 0);
    assert.deepEqual(readdirSync(dir).sort(), [
      "grafana-dashboard.json",
      "infer.yaml",
      "ingress.yaml",
      "monitoring.yaml",
      "nats.yaml",
      "preprocess.yaml",
      "prometheus-rules.yaml",
      "secrets.yaml",
    ]);
    const ingress = parseYamlStream(readFileSync(join(dir, "ingress.yaml"), "utf8")) as K8sObject[];
    assert.deepEqual(
      ingress.map((o) => [o.kind, o.metadata.name, o.metadata.namespace]),
      [
        ["Deployment", "ingress", "demo"],
        ["Service", "ingress", "demo"],
      ],
    );
    const pre = parseYamlStream(readFileSync(join(dir, "preprocess.yaml"), "utf8")) as K8sObject[];
    assert.deepEqual(
      pre.map((o) => o.kind),
      ["Deployment", "ScaledObject"],
    );
    const nats = parseYamlStream(readFileSync(join(dir, "nats.yaml"), "utf8")) as K8sObject[];
    assert.deepEqual(
      nats.map((o) => `${o.kind}/${o.metadata.name}`),
      [
        "ConfigMap/nats-config",
        "Service/nats-headless",
        "Service/nats",
        "StatefulSet/nats",
        "PodDisruptionBudget/nats",
        "NetworkPolicy/nats",
      ],
    );
    const conf = (nats[0]!.data as Record<string, string>)["nats.conf"]!;
    assert.ok(!conf.includes('user: "greeter"'), "only the closure's users");
    const secrets = parseYamlStream(readFileSync(join(dir, "secrets.yaml"), "utf8")) as K8sObject[];
    assert.deepEqual(Object.keys(secrets[0]!.data as object).sort(), ["infer", "ingress", "preprocess", "servegraph"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// --- the generated nats.conf against a real nats-server --------------------------------------------------

const NATS_BIN = findNatsServer();
const NO_NATS = NATS_BIN ? false : "nats-server is not installed";

async function startWithConf(
  conf: string,
  env: Record<string, string>,
): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "sg-manifests-nats-"));
  // The cluster's fixed ports would collide here: a free client port, no monitoring port.
  // One server of the cluster alone: no routes (nats-manifests-cluster.test.ts routes three), its pid file here.
  writeFileSync(
    join(dir, "nats.conf"),
    conf
      .replace(/^port: 4222$/m, "port: -1")
      .replace(/^http_port: 8222$/m, "")
      .replace(/^cluster \{[^}]*\}$/m, "")
      .replace(/^pid_file: .*$/m, `pid_file: ${JSON.stringify(join(dir, "nats.pid"))}`),
  );
  const child = spawn(NATS_BIN!, ["-a", "127.0.0.1", "-c", join(dir, "nats.conf"), "--ports_file_dir", dir], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, POD_NAME: "nats-0", ...env },
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const t0 = Date.now();
  let url: string | undefined;
  while (!url) {
    assert.equal(child.exitCode, null, `nats-server exited: ${stderr}`);
    const f = readdirSync(dir).find((n) => n.endsWith(".ports"));
    if (f)
      try {
        url = (JSON.parse(readFileSync(join(dir, f), "utf8")) as { nats: string[] }).nats[0];
      } catch {
        /* being written */
      }
    if (!url) {
      assert.ok(Date.now() - t0 < 10_000, `nats-server did not start: ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return {
    url,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function violations(nc: NatsConnection, act: () => void): Promise<string[]> {
  const seen: string[] = [];
  const watch = (async () => {
    for await (const s of nc.status()) if (s.type === "error") seen.push(String(s.error.message));
  })();
  act();
  await nc.flush(); // the server answers -ERR before the PONG of this flush
  await new Promise((r) => setImmediate(r));
  void watch;
  return seen;
}

test("manifests - nats.conf is valid and enforces the edges on a real nats-server", { skip: NO_NATS }, async () => {
  const conf = (find(all, "ConfigMap", "nats-config").data as Record<string, string>)["nats.conf"]!;
  const env = Object.fromEntries([...closureNodes, "servegraph"].map((u) => [passwordEnvName(u), fixedPassword(u)]));
  const dir = mkdtempSync(join(tmpdir(), "sg-manifests-conf-"));
  try {
    writeFileSync(join(dir, "nats.conf"), conf);
    const t = spawnSync(NATS_BIN!, ["-t", "-c", join(dir, "nats.conf")], {
      env: { ...process.env, POD_NAME: "nats-0", ...env },
      encoding: "utf8",
    });
    assert.equal(t.status, 0, `nats-server -t: ${t.stderr}${t.stdout}`);
    // a password is never in the file: without its env var the server refuses the config
    const unset = spawnSync(NATS_BIN!, ["-t", "-c", join(dir, "nats.conf")], {
      env: { ...process.env, POD_NAME: "nats-0", ...env, GREETER_NATS_PASSWORD: undefined },
      encoding: "utf8",
    });
    assert.notEqual(unset.status, 0);
    assert.match(unset.stderr + unset.stdout, /GREETER_NATS_PASSWORD/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const server = await startWithConf(conf, env);
  const as = (user: string) =>
    connect({
      servers: server.url,
      user,
      pass: fixedPassword(user),
      name: user,
      ...(user === "servegraph" ? {} : { inboxPrefix: `_INBOX_${user}` }),
    });
  const conns: NatsConnection[] = [];
  try {
    const greeter = await as("greeter");
    const proxy = await as("greeter-proxy");
    const ops = await as("servegraph");
    conns.push(greeter, proxy, ops);
    greeter.subscribe("sg.v1.greeter.greet", { queue: "greeter", callback: (_e, m) => void m.respond("hello") });
    await greeter.flush();
    assert.equal(
      (await proxy.request("sg.v1.greeter.greet", "x", { timeout: 2000 })).string(),
      "hello",
      "edge request and reply",
    );
    assert.equal(
      (await ops.request("sg.v1.greeter.greet", "x", { timeout: 2000 })).string(),
      "hello",
      "the ops user may call any node",
    );
    // discovery of a node on an edge (the ingress counts replicas so): ping it, it answers
    greeter.subscribe("$SRV.PING.greeter", { callback: (_e, m) => void m.respond("pong") });
    await greeter.flush();
    assert.equal((await proxy.request("$SRV.PING.greeter", "", { timeout: 2000 })).string(), "pong");
    assert.match(
      (await violations(proxy, () => proxy.publish("$SRV.PING.infer", ""))).join(),
      /Permissions Violation for Publish/,
    );
    assert.deepEqual(await violations(proxy, () => proxy.publish("sg.v1.greeter.greet", "ok")), []);
    assert.match(
      (await violations(proxy, () => proxy.publish("sg.v1.infer.run", "x"))).join(),
      /Permissions Violation for Publish to "sg\.v1\.infer\.run"/,
    );
    assert.match(
      (await violations(greeter, () => greeter.publish("sg.v1.greeter-proxy.greeting", "x"))).join(),
      /Permissions Violation for Publish/,
      "a leaf node sends nothing but replies",
    );
    const subErr = await violations(proxy, () => proxy.subscribe("sg.v1.greeter.greet", { callback: () => {} }));
    assert.match(
      subErr.join(),
      /Permissions Violation for Subscription to "sg\.v1\.greeter\.greet"/,
      "no eavesdropping on another node's subject",
    );
    // replies are private: a node cannot subscribe to another node's reply inbox
    const inboxErr = await violations(greeter, () =>
      greeter.subscribe("_INBOX_greeter-proxy.>", { callback: () => {} }),
    );
    assert.match(inboxErr.join(), /Permissions Violation for Subscription/, "no reading another node's replies");
    await assert.rejects(connect({ servers: server.url, user: "greeter", pass: "wrong" }), /Authorization Violation/);
  } finally {
    for (const c of conns) await c.close().catch(() => {});
    await server.stop();
  }
});

test("manifests - NATS credentials must go to connect() as user/pass, not in the URL", { skip: NO_NATS }, async () => {
  const conf = (find(all, "ConfigMap", "nats-config").data as Record<string, string>)["nats.conf"]!;
  const env = Object.fromEntries([...closureNodes, "servegraph"].map((u) => [passwordEnvName(u), fixedPassword(u)]));
  const server = await startWithConf(conf, env);
  try {
    const { port } = new URL(server.url);
    // nats.js v3 ignores URL credentials (and rejects `user:pass@host` for a host without a dot, like `nats`):
    // why the manifests set NATS_URL without them and pass NATS_USER/NATS_PASSWORD.
    await assert.rejects(
      connect({ servers: `nats://greeter:${fixedPassword("greeter")}@127.0.0.1:${port}`, timeout: 2000 }),
      /Authorization Violation/,
    );
    await assert.rejects(
      connect({ servers: `nats://greeter:${fixedPassword("greeter")}@nats:${port}`, timeout: 2000 }),
      /Invalid URL/,
    );
  } finally {
    await server.stop();
  }
});

test("manifests - two runs of `servegraph manifests --out` write the same files, byte for byte, but the passwords", async () => {
  const dirs = [mkdtempSync(join(tmpdir(), "sg-manifests-a-")), mkdtempSync(join(tmpdir(), "sg-manifests-b-"))];
  try {
    for (const d of dirs)
      assert.equal(
        await main([
          "manifests",
          "--out",
          d,
          "--json",
          "--autoscaler",
          "keda",
          "--registry",
          "registry.example.com/ml",
          "--tag",
          "1.0.0",
        ]),
        0,
      );
    const files = readdirSync(dirs[0]!).sort();
    assert.deepEqual(readdirSync(dirs[1]!).sort(), files);
    assert.ok(
      files.includes("grafana-dashboard.json") &&
        files.includes("prometheus-rules.yaml") &&
        files.includes("monitoring.yaml"),
    );
    for (const f of files) {
      const [a, b] = dirs.map((d) => readFileSync(join(d, f), "utf8"));
      if (f === "secrets.yaml") assert.notEqual(a, b, "fresh passwords");
      else assert.equal(a, b, `${f} differs between runs`);
    }
    const ing = parseYamlStream(readFileSync(join(dirs[0]!, "ingress.yaml"), "utf8")) as K8sObject[];
    assert.equal(spec(ing[0]!).template.spec.containers[0]!.image, "registry.example.com/ml/servegraph-ingress:1.0.0");
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test("manifests - bad options are refused with a usage, --help prints it", async () => {
  assert.equal(await main(["manifests", "--autoscaler", "vpa", "--json"]), 1);
  assert.equal(await main(["manifests", "--no-such-option"]), 2);
  assert.equal(await main(["manifests", "--help"]), 0);
});
