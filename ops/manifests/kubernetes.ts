/**
 * The Kubernetes objects of a deployment, derived from the resolved graph only: the Secrets (NATS passwords, and
 * a template per node with secrets), the single NATS server (ConfigMap with nats.conf, Deployment, Service), and
 * per node of the closure a Deployment, plus an HPA where replicas is [min, max] and a Service for a node with
 * `http`. Nothing in a node changes between `servegraph up` and a cluster: it reads the same env.
 *
 * Objects are plain JSON data; render-yaml.ts writes them out.
 */
import { createHash } from "node:crypto";
import { dirname, relative, resolve } from "node:path";
import { DEFAULT_GRAPH_FILE, GraphConfigError, nodesOfGraphs, type ResolvedGraph, type ResolvedNode } from "../../runtime/index.ts";
import { credentialsSecretName, natsConfig, NATS_CLIENT_PORT, NATS_MONITOR_PORT, passwordEnvName, randomPassword } from "./nats-conf.ts";
import { inboxPrefix, OPS_USER } from "./nats-permissions.ts";

export const DEFAULT_IMAGE = "servegraph:0.1.0";
export const NATS_IMAGE = "nats:2.10-alpine";
/** Port of every node's /metrics in a pod (SG_METRICS_PORT); a node with `http` serves /metrics there instead. */
export const METRICS_PORT = 9464;
/** Name of the NATS Deployment, Service and the host in every node's NATS_URL. */
export const NATS_NAME = "nats";
export const HPA_CPU_UTILIZATION_PERCENT = 70;
/** Added to a node's request timeout: time to drain in-flight requests after SIGTERM. */
export const DRAIN_MARGIN_S = 15;

export interface K8sMetadata {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** A Kubernetes object as plain JSON data. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: K8sMetadata;
  [field: string]: unknown;
}

export interface Manifest {
  /** File of the object under --out: `nats.yaml`, `secrets.yaml` or `<node>.yaml`. */
  readonly file: string;
  /** Lines written as YAML comments above the object. */
  readonly comments: readonly string[];
  readonly object: K8sObject;
}

export interface ManifestOptions {
  /** Container image of every node: one image holds the repo (default {@link DEFAULT_IMAGE}). */
  image?: string;
  namespace?: string;
  /** Password of one NATS user (default: 192 random bits). Must be a plain token: see {@link randomPassword}. */
  password?: (user: string) => string;
}

/** The Secret of a node's own secrets (a template with empty values), referenced by its env. */
export function nodeSecretName(graph: ResolvedGraph, node: string): string {
  return `${graph.name}-${node}-secrets`;
}

/** Kubernetes CPU quantity: whole cores as-is, fractions in millicores. */
function cpuQuantity(cores: number): string {
  return Number.isInteger(cores) ? String(cores) : `${Math.round(cores * 1000)}m`;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function checkNames(nodes: readonly string[], opts: ManifestOptions): void {
  const issues: { path: string; message: string }[] = [];
  for (const n of nodes) {
    if (!DNS_LABEL.test(n) || n.length > 63) issues.push({ path: `nodes.${n}`, message: "a Kubernetes name must be lowercase letters, digits and dashes (at most 63)" });
    if (n === NATS_NAME || n === OPS_USER) issues.push({ path: `nodes.${n}`, message: `"${n}" is reserved for the NATS server or the ops user in the manifests` });
  }
  if (opts.namespace !== undefined && !DNS_LABEL.test(opts.namespace)) issues.push({ path: "--namespace", message: "must be a Kubernetes namespace name" });
  if (opts.image !== undefined && !/^\S+$/.test(opts.image)) issues.push({ path: "--image", message: "must be an image reference" });
  if (issues.length) throw new GraphConfigError(issues);
}

/**
 * The Kubernetes objects for the named graphs: a pure function of the graph and options, except for the NATS
 * passwords (pass `opts.password` for fixed ones). Order: secrets.yaml, nats.yaml, then each node of the
 * closure, dependencies first.
 */
export function buildManifests(graph: ResolvedGraph, graphNames: readonly string[], opts: ManifestOptions = {}): Manifest[] {
  const nodes = nodesOfGraphs(graph, graphNames);
  checkNames(nodes, opts);
  const image = opts.image ?? DEFAULT_IMAGE;
  const password = opts.password ?? randomPassword;
  const meta = (name: string, component: string, extra: Partial<K8sMetadata> = {}): K8sMetadata => ({
    name,
    ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}),
    labels: labels(component),
    ...extra,
  });
  const labels = (name: string): Record<string, string> => ({ "app.kubernetes.io/name": name, "app.kubernetes.io/part-of": graph.name });
  const out: Manifest[] = [];
  const users = [...nodes, OPS_USER];
  const creds = credentialsSecretName(graph);

  // --- secrets.yaml ------------------------------------------------------------------------------------
  out.push({
    file: "secrets.yaml",
    comments: [
      `NATS passwords of graph ${graph.name}: one per node user and one for the ops user "${OPS_USER}".`,
      "Generated at random on every run: manage this Secret in your secret store (External Secrets, Sealed Secrets,",
      "Vault) and apply it once; a new password reaches the NATS server and a node only when their pods restart.",
      "A password must stay a plain token (letters and digits, a letter first): nats-server parses $VAR values.",
    ],
    object: {
      apiVersion: "v1",
      kind: "Secret",
      metadata: meta(creds, NATS_NAME),
      type: "Opaque",
      data: Object.fromEntries(users.map((u) => [u, Buffer.from(password(u), "utf8").toString("base64")])),
    },
  });
  for (const n of nodes) {
    const node = graph.nodes[n]!;
    const keys = Object.keys(node.secrets);
    if (!keys.length) continue;
    out.push({
      file: "secrets.yaml",
      comments: [
        `Secrets of node ${n}: a template with empty values. Fill it from your secret store, or with`,
        `  kubectl create secret generic ${nodeSecretName(graph, n)} ${keys.map((k) => `--from-literal=${k}=...`).join(" ")} --dry-run=client -o yaml | kubectl apply -f -`,
        "An empty value reads as absent in the node. Applying this template again overwrites filled values.",
        ...keys.map((k) => `${k}: ${node.secrets[k]!.required ? "required" : "optional"}`),
      ],
      object: {
        apiVersion: "v1",
        kind: "Secret",
        metadata: meta(nodeSecretName(graph, n), n),
        type: "Opaque",
        stringData: Object.fromEntries(keys.map((k) => [k, ""])),
      },
    });
  }

  // --- nats.yaml ---------------------------------------------------------------------------------------
  const conf = natsConfig(graph, graphNames, nodes);
  out.push({
    file: "nats.yaml",
    comments: [
      "The minimal NATS server: one replica, no clustering, no JetStream. A production cluster would use the official",
      "NATS Helm chart (https://github.com/nats-io/k8s) with 3 clustered servers and this nats.conf's authorization block.",
    ],
    object: { apiVersion: "v1", kind: "ConfigMap", metadata: meta(`${NATS_NAME}-config`, NATS_NAME), data: { "nats.conf": conf } },
  });
  out.push({
    file: "nats.yaml",
    comments: ["Each user's password reaches the server as an env var that nats.conf references as $<USER>_NATS_PASSWORD."],
    object: {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: meta(NATS_NAME, NATS_NAME),
      spec: {
        replicas: 1,
        selector: { matchLabels: labels(NATS_NAME) },
        template: {
          metadata: {
            labels: labels(NATS_NAME),
            // A changed nats.conf rolls the server.
            annotations: { "checksum/config": createHash("sha256").update(conf).digest("hex") },
          },
          spec: {
            containers: [
              {
                name: NATS_NAME,
                image: NATS_IMAGE,
                args: ["-c", "/etc/nats/nats.conf"],
                ports: [
                  { name: "client", containerPort: NATS_CLIENT_PORT },
                  { name: "monitor", containerPort: NATS_MONITOR_PORT },
                ],
                env: users.map((u) => ({ name: passwordEnvName(u), valueFrom: { secretKeyRef: { name: creds, key: u } } })),
                volumeMounts: [{ name: "config", mountPath: "/etc/nats" }],
                resources: { requests: { cpu: "500m", memory: "256Mi" }, limits: { cpu: "2", memory: "1Gi" } },
                readinessProbe: { httpGet: { path: "/healthz", port: NATS_MONITOR_PORT }, periodSeconds: 5 },
                livenessProbe: { httpGet: { path: "/healthz", port: NATS_MONITOR_PORT }, initialDelaySeconds: 10, periodSeconds: 10 },
              },
            ],
            volumes: [{ name: "config", configMap: { name: `${NATS_NAME}-config` } }],
          },
        },
      },
    },
  });
  out.push({
    file: "nats.yaml",
    comments: [],
    object: {
      apiVersion: "v1",
      kind: "Service",
      metadata: meta(NATS_NAME, NATS_NAME),
      spec: {
        selector: labels(NATS_NAME),
        ports: [
          { name: "client", port: NATS_CLIENT_PORT, targetPort: NATS_CLIENT_PORT },
          { name: "monitor", port: NATS_MONITOR_PORT, targetPort: NATS_MONITOR_PORT },
        ],
      },
    },
  });

  // --- <node>.yaml -------------------------------------------------------------------------------------
  const graphFileEnv = resolve(graph.file) === resolve(DEFAULT_GRAPH_FILE) ? undefined : relative(dirname(DEFAULT_GRAPH_FILE), graph.file);
  for (const n of nodes) out.push(...nodeManifests(graph, graph.nodes[n]!, { nodes, image, creds, graphFileEnv, meta, labels }));
  return out;
}

interface NodeManifestContext {
  nodes: readonly string[];
  image: string;
  creds: string;
  graphFileEnv: string | undefined;
  meta: (name: string, component: string, extra?: Partial<K8sMetadata>) => K8sMetadata;
  labels: (name: string) => Record<string, string>;
}

function nodeManifests(graph: ResolvedGraph, node: ResolvedNode, c: NodeManifestContext): Manifest[] {
  const n = node.name;
  const file = `${n}.yaml`;
  const min = Math.max(node.replicas.min, 1);
  const autoscaled = min < node.replicas.max;
  // A node with `http` (the ingress) serves /metrics on its HTTP port; the others on their own metrics port.
  // A random HTTP port (0) has no meaning behind a Service: 8080 then.
  const httpPort = node.http ? node.http.port || 8080 : undefined;
  const metricsPort = httpPort ?? METRICS_PORT;
  const env: Record<string, unknown>[] = [
    { name: "SG_NODE", value: n },
    { name: "SG_REPLICA_ID", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    { name: "SG_ACTIVE_NODES", value: c.nodes.join(",") },
    ...(c.graphFileEnv !== undefined ? [{ name: "SG_GRAPH_FILE", value: c.graphFileEnv }] : []),
    ...Object.entries(node.parameters).map(([k, v]) => ({ name: k, value: v })),
    ...(httpPort !== undefined
      ? [{ name: "HOST", value: "0.0.0.0" }, { name: "PORT", value: String(httpPort) }]
      : [{ name: "SG_METRICS_PORT", value: String(METRICS_PORT) }, { name: "SG_METRICS_HOST", value: "0.0.0.0" }]),
    { name: "NATS_URL", value: `nats://${NATS_NAME}:${NATS_CLIENT_PORT}` },
    { name: "NATS_USER", value: n },
    { name: "NATS_INBOX_PREFIX", value: inboxPrefix(n) },
    { name: "NATS_PASSWORD", valueFrom: { secretKeyRef: { name: c.creds, key: n } } },
    ...Object.entries(node.secrets).map(([k, s]) => ({
      name: k,
      valueFrom: { secretKeyRef: { name: nodeSecretName(graph, n), key: k, optional: !s.required } },
    })),
  ];
  const quantities = { cpu: cpuQuantity(node.resources.cpu), memory: node.resources.memory, ...(node.resources.gpu > 0 ? { "nvidia.com/gpu": String(node.resources.gpu) } : {}) };
  const probe = (path: string, port: number, extra: Record<string, number>) => ({ httpGet: { path, port }, ...extra });
  const container = {
    name: n,
    image: c.image,
    imagePullPolicy: "IfNotPresent",
    command: ["node", "--import", "tsx", `${node.service}/src/main.ts`],
    env,
    ports: httpPort !== undefined ? [{ name: "http", containerPort: httpPort }] : [{ name: "metrics", containerPort: METRICS_PORT }],
    resources: { requests: quantities, limits: quantities },
    ...(httpPort !== undefined
      ? {
          readinessProbe: probe("/readyz", httpPort, { periodSeconds: 5, failureThreshold: 2 }),
          livenessProbe: probe("/healthz", httpPort, { initialDelaySeconds: 10, periodSeconds: 10 }),
        }
      : {
          // The metrics server starts once the NATS connection is up, before the node's own start-up.
          readinessProbe: probe("/metrics", METRICS_PORT, { periodSeconds: 10 }),
          livenessProbe: probe("/metrics", METRICS_PORT, { initialDelaySeconds: 15, periodSeconds: 10, failureThreshold: 3 }),
        }),
    securityContext: { allowPrivilegeEscalation: false },
  };
  const comments = [
    `Node ${n}${node.description ? `: ${node.description}` : ""}`,
    `Image ${c.image}: one image holds the repo, its WORKDIR the repo root. Each services/<node>/package.json is an npm`,
    "workspace naming only that node's libraries, so a per-node image can install just its closure",
    `(npm install --workspace=${node.service} --include-workspace-root).`,
    "NATS_USER/NATS_PASSWORD: the node's NATS credentials, for connect()'s user/pass options (nats.js v3 reads none from a URL).",
    `SIGTERM drains: terminationGracePeriodSeconds is the request timeout (${node.timeoutMs} ms) + ${DRAIN_MARGIN_S} s.`,
    ...(autoscaled ? [`replicas ${node.replicas.min}..${node.replicas.max}: the HorizontalPodAutoscaler below owns the count after the first apply.`] : []),
    ...(node.resources.gpu > 0
      ? ["GPU node: the toleration admits the usual nvidia.com/gpu taint; pin a GPU pool with a nodeSelector if the cluster has one,",
         "e.g. nodeSelector: { cloud.google.com/gke-accelerator: nvidia-l4 } or { nvidia.com/gpu.present: \"true\" }. The image needs the CUDA runtime."]
      : []),
  ];
  const out: Manifest[] = [
    {
      file,
      comments,
      object: {
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: c.meta(n, n),
        spec: {
          replicas: min,
          selector: { matchLabels: c.labels(n) },
          template: {
            metadata: {
              labels: c.labels(n),
              annotations: { "prometheus.io/scrape": "true", "prometheus.io/port": String(metricsPort), "prometheus.io/path": "/metrics" },
            },
            spec: {
              terminationGracePeriodSeconds: Math.ceil(node.timeoutMs / 1000) + DRAIN_MARGIN_S,
              containers: [container],
              ...(node.resources.gpu > 0 ? { tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }] } : {}),
            },
          },
        },
      },
    },
  ];
  if (httpPort !== undefined) {
    out.push({
      file,
      comments: [`The HTTP way in. Expose it with an Ingress, a Gateway route or type: LoadBalancer.`],
      object: {
        apiVersion: "v1",
        kind: "Service",
        metadata: c.meta(n, n),
        spec: { selector: c.labels(n), ports: [{ name: "http", port: 80, targetPort: httpPort }] },
      },
    });
  }
  if (autoscaled) {
    out.push({
      file,
      comments: [],
      object: {
        apiVersion: "autoscaling/v2",
        kind: "HorizontalPodAutoscaler",
        metadata: c.meta(n, n),
        spec: {
          scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: n },
          minReplicas: min,
          maxReplicas: node.replicas.max,
          metrics: [{ type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: HPA_CPU_UTILIZATION_PERCENT } } }],
        },
      },
    });
  }
  return out;
}

