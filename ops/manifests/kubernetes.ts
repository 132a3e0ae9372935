/**
 * The Kubernetes objects of a deployment, derived from the resolved graph only: the Secrets (NATS passwords, and
 * a template per node with secrets), the NATS cluster (nats-cluster.ts: a 3-server StatefulSet with the graph's
 * users and permissions), and per node of the closure a Deployment on the node's own image (images.ts), plus its
 * autoscaler where replicas is [min, max] (autoscaling.ts: KEDA or HPA) and a Service for a node with `http`; and
 * the monitoring objects (observability.ts). Nothing in a node changes between `servegraph up` and a cluster: it
 * reads the same env.
 *
 * Objects are plain JSON data; render-yaml.ts writes them out.
 */
import { dirname, relative, resolve } from "node:path";
import {
  DEFAULT_GRAPH_FILE,
  GraphConfigError,
  nodesOfGraphs,
  type ResolvedGraph,
  type ResolvedNode,
} from "../../runtime/index.ts";
import {
  autoscalerManifest,
  AUTOSCALERS,
  DEFAULT_AUTOSCALER,
  DEFAULT_PROMETHEUS_URL,
  type Autoscaler,
} from "./autoscaling.ts";
import { buildCommand, imageOf, IMAGE_WORKDIR, SRV_PING_PROBE, type ImageOptions } from "./images.ts";
import { credentialsSecretName, NATS_CLIENT_PORT, randomPassword } from "./nats-conf.ts";
import { natsClusterManifests, NATS_HEADLESS_NAME, NATS_NAME } from "./nats-cluster.ts";
import { edgeSubjects, inboxPrefix, OPS_USER } from "./nats-permissions.ts";
import { monitoringManifests } from "./observability.ts";

/** Port of every node's /metrics in a pod (SG_METRICS_PORT); a node with `http` serves /metrics there instead. */
export const METRICS_PORT = 9464;
/** Added to a node's request timeout: time to drain in-flight requests after SIGTERM. */
export const DRAIN_MARGIN_S = 15;
/** An HTTP node's preStop pause before SIGTERM, while its Service endpoints stop sending it connections. */
export const HTTP_PRESTOP_S = 5;
/** The label NVIDIA's GPU feature discovery (GPU operator) puts on nodes with a GPU: a GPU node's nodeSelector. */
export const GPU_NODE_SELECTOR = { "nvidia.com/gpu.present": "true" } as const;
/** UID of the `node` user of the node:24 images, the user every node image runs as. */
export const NODE_UID = 1000;

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

export interface ManifestOptions extends ImageOptions {
  namespace?: string;
  /** Password of one NATS user (default: 192 random bits). Must be a plain token: see {@link randomPassword}. */
  password?: (user: string) => string;
  /** `keda` (default): KEDA ScaledObjects; `hpa`: autoscaling/v2 HorizontalPodAutoscalers. */
  autoscaler?: Autoscaler;
  /** Prometheus that KEDA's triggers query (default {@link DEFAULT_PROMETHEUS_URL}). */
  prometheusUrl?: string;
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
/** A registry host[:port] and path, and an image tag (the OCI distribution grammar, loosely). */
const REGISTRY = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*\/?$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

function checkNames(nodes: readonly string[], opts: ManifestOptions): void {
  const issues: { path: string; message: string }[] = [];
  for (const n of nodes) {
    if (!DNS_LABEL.test(n) || n.length > 63)
      issues.push({
        path: `nodes.${n}`,
        message: "a Kubernetes name must be lowercase letters, digits and dashes (at most 63)",
      });
    if (n === NATS_NAME || n === NATS_HEADLESS_NAME || n === OPS_USER)
      issues.push({
        path: `nodes.${n}`,
        message: `"${n}" is reserved for the NATS cluster or the ops user in the manifests`,
      });
  }
  if (opts.namespace !== undefined && !DNS_LABEL.test(opts.namespace))
    issues.push({ path: "--namespace", message: "must be a Kubernetes namespace name" });
  if (opts.image !== undefined && !/^\S+$/.test(opts.image))
    issues.push({ path: "--image", message: "must be an image reference" });
  if (opts.registry !== undefined && !REGISTRY.test(opts.registry))
    issues.push({ path: "--registry", message: "must be a registry host and path, e.g. registry.example.com/team" });
  if (opts.tag !== undefined && !TAG.test(opts.tag))
    issues.push({
      path: "--tag",
      message: "must be an image tag: letters, digits, _ . - (at most 128), not starting with . or -",
    });
  if (opts.autoscaler !== undefined && !AUTOSCALERS.includes(opts.autoscaler))
    issues.push({ path: "--autoscaler", message: `must be one of ${AUTOSCALERS.join(", ")}` });
  if (opts.prometheusUrl !== undefined && !/^https?:\/\/\S+$/.test(opts.prometheusUrl))
    issues.push({ path: "--prometheus-url", message: "must be an http(s) URL" });
  if (issues.length) throw new GraphConfigError(issues);
}

/**
 * The Kubernetes objects for the named graphs: a pure function of the graph and options, except for the NATS
 * passwords (pass `opts.password` for fixed ones). Order: secrets.yaml, nats.yaml, then each node of the
 * closure, dependencies first, then monitoring.yaml.
 */
export function buildManifests(
  graph: ResolvedGraph,
  graphNames: readonly string[],
  opts: ManifestOptions = {},
): Manifest[] {
  const nodes = nodesOfGraphs(graph, graphNames);
  checkNames(nodes, opts);
  const password = opts.password ?? randomPassword;
  const meta = (name: string, component: string, extra: Partial<K8sMetadata> = {}): K8sMetadata => ({
    name,
    ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}),
    labels: labels(component),
    ...extra,
  });
  const labels = (name: string): Record<string, string> => ({
    "app.kubernetes.io/name": name,
    "app.kubernetes.io/part-of": graph.name,
  });
  const out: Manifest[] = [];
  const users = [...nodes, OPS_USER];
  const creds = credentialsSecretName(graph);

  // --- secrets.yaml ------------------------------------------------------------------------------------
  out.push({
    file: "secrets.yaml",
    comments: [
      `NATS passwords of graph ${graph.name}: one per node user and one for the ops user "${OPS_USER}".`,
      "Generated at random on every run: manage this Secret in your secret store (External Secrets, Sealed Secrets,",
      "Vault) and apply it once; a new password reaches the NATS servers and a node only when their pods restart.",
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
  out.push(...natsClusterManifests({ graph, graphNames, nodes, users, namespace: opts.namespace, meta, labels }));

  // --- <node>.yaml -------------------------------------------------------------------------------------
  const graphFileEnv =
    resolve(graph.file) === resolve(DEFAULT_GRAPH_FILE) ? undefined : relative(dirname(DEFAULT_GRAPH_FILE), graph.file);
  const ctx: NodeManifestContext = {
    nodes,
    creds,
    graphFileEnv,
    meta,
    labels,
    images: opts,
    autoscaler: opts.autoscaler ?? DEFAULT_AUTOSCALER,
    prometheusUrl: opts.prometheusUrl ?? DEFAULT_PROMETHEUS_URL,
  };
  for (const n of nodes) out.push(...nodeManifests(graph, graph.nodes[n]!, ctx));

  // --- monitoring.yaml ---------------------------------------------------------------------------------
  out.push(...monitoringManifests(graph, nodes, meta));
  return out;
}

interface NodeManifestContext {
  nodes: readonly string[];
  images: ImageOptions;
  creds: string;
  graphFileEnv: string | undefined;
  autoscaler: Autoscaler;
  prometheusUrl: string;
  meta: (name: string, component: string, extra?: Partial<K8sMetadata>) => K8sMetadata;
  labels: (name: string) => Record<string, string>;
}

/** The subjects of `node` that the other nodes of the closure call. */
function calledSubjects(graph: ResolvedGraph, node: ResolvedNode, nodes: readonly string[]): string[] {
  const own = `${node.subjectPrefix}.${node.name}.`;
  return [
    ...new Set(
      nodes.flatMap((m) =>
        m === node.name ? [] : edgeSubjects(graph, graph.nodes[m]!).filter((s) => s.startsWith(own)),
      ),
    ),
  ].sort();
}

function nodeManifests(graph: ResolvedGraph, node: ResolvedNode, c: NodeManifestContext): Manifest[] {
  const n = node.name;
  const file = `${n}.yaml`;
  const autoscaled = node.replicas.min < node.replicas.max;
  const called = calledSubjects(graph, node, c.nodes);
  const image = imageOf(node, c.images);
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
      ? [
          { name: "HOST", value: "0.0.0.0" },
          { name: "PORT", value: String(httpPort) },
        ]
      : [
          { name: "SG_METRICS_PORT", value: String(METRICS_PORT) },
          { name: "SG_METRICS_HOST", value: "0.0.0.0" },
        ]),
    { name: "NATS_URL", value: `nats://${NATS_NAME}:${NATS_CLIENT_PORT}` },
    { name: "NATS_USER", value: n },
    { name: "NATS_INBOX_PREFIX", value: inboxPrefix(n) },
    { name: "NATS_PASSWORD", valueFrom: { secretKeyRef: { name: c.creds, key: n } } },
    ...Object.entries(node.secrets).map(([k, s]) => ({
      name: k,
      valueFrom: { secretKeyRef: { name: nodeSecretName(graph, n), key: k, optional: !s.required } },
    })),
  ];
  const gpu = node.resources.gpu > 0;
  const quantities = {
    cpu: cpuQuantity(node.resources.cpu),
    memory: node.resources.memory,
    ...(gpu ? { "nvidia.com/gpu": String(node.resources.gpu) } : {}),
  };
  const probe = (path: string, port: number, extra: Record<string, number>) => ({ httpGet: { path, port }, ...extra });
  // An HTTP node first waits HTTP_PRESTOP_S (preStop) for its Service endpoints to drop it, then drains.
  const drainS = Math.ceil(node.timeoutMs / 1000) + DRAIN_MARGIN_S + (httpPort !== undefined ? HTTP_PRESTOP_S : 0);
  const container = {
    name: n,
    image,
    imagePullPolicy: "IfNotPresent",
    command: ["node", "--import", "tsx", `${node.service}/src/main.ts`],
    env,
    ports:
      httpPort !== undefined
        ? [{ name: "http", containerPort: httpPort }]
        : [{ name: "metrics", containerPort: METRICS_PORT }],
    resources: { requests: quantities, limits: quantities },
    ...(httpPort !== undefined
      ? {
          // /readyz: the ingress's NATS connection is up and every node its routes call has a replica.
          readinessProbe: probe("/readyz", httpPort, { periodSeconds: 5, failureThreshold: 2 }),
          livenessProbe: probe("/healthz", httpPort, { initialDelaySeconds: 10, periodSeconds: 10 }),
          // Load balancers and kube-proxy take a few seconds to stop sending to a terminating pod: keep serving.
          lifecycle: { preStop: { exec: { command: ["sleep", String(HTTP_PRESTOP_S)] } } },
        }
      : {
          // Ready = this replica answers $SRV.PING over NATS, which it does only once its endpoints are served.
          readinessProbe: {
            exec: { command: ["node", `${IMAGE_WORKDIR}/${SRV_PING_PROBE}`] },
            periodSeconds: 10,
            timeoutSeconds: 5,
            failureThreshold: 2,
          },
          // Alive = its event loop answers /metrics (up as soon as NATS is connected, before a model loads).
          livenessProbe: probe("/metrics", METRICS_PORT, {
            initialDelaySeconds: 15,
            periodSeconds: 10,
            timeoutSeconds: 5,
            failureThreshold: 3,
          }),
        }),
    securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
  };
  const comments = [
    `Node ${n}${node.description ? `: ${node.description}` : ""}`,
    `Image ${image}: its own workspace's dependencies only. Build it from the repository root with`,
    `  ${buildCommand(node, c.images)}`,
    `The repository is at ${IMAGE_WORKDIR} in the image (its WORKDIR); the node runs as uid ${NODE_UID}.`,
    "NATS_USER/NATS_PASSWORD: the node's NATS credentials, for connect()'s user/pass options (nats.js v3 reads none from a URL).",
    `SIGTERM drains: terminationGracePeriodSeconds is the request timeout (${node.timeoutMs} ms) + ${DRAIN_MARGIN_S} s` +
      (httpPort !== undefined ? ` + the ${HTTP_PRESTOP_S} s preStop pause.` : "."),
    ...(autoscaled
      ? [
          `replicas ${node.replicas.min}..${node.replicas.max}: no spec.replicas, the ${c.autoscaler === "keda" ? "ScaledObject" : "HorizontalPodAutoscaler"} below owns the count.`,
        ]
      : []),
    ...(gpu
      ? [
          "GPU node: nvidia.com/gpu limit, a toleration of the nvidia.com/gpu taint, and the GPU-discovery label as nodeSelector.",
          "The CUDA execution provider also needs CUDA 12 and cuDNN 9 libraries in the image (see deploy/containers/Containerfile).",
        ]
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
          // An autoscaled node: the autoscaler sets the count; a replicas field here would reset it on every apply.
          ...(autoscaled ? {} : { replicas: node.replicas.min }),
          selector: { matchLabels: c.labels(n) },
          template: {
            metadata: {
              labels: c.labels(n),
              annotations: {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": String(metricsPort),
                "prometheus.io/path": "/metrics",
              },
            },
            spec: {
              terminationGracePeriodSeconds: drainS,
              securityContext: {
                runAsNonRoot: true,
                runAsUser: NODE_UID,
                runAsGroup: NODE_UID,
                seccompProfile: { type: "RuntimeDefault" },
              },
              containers: [container],
              ...(gpu
                ? {
                    tolerations: [{ key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" }],
                    nodeSelector: { ...GPU_NODE_SELECTOR },
                  }
                : {}),
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
    out.push(
      autoscalerManifest(node, {
        graph,
        autoscaler: c.autoscaler,
        prometheusUrl: c.prometheusUrl,
        calledSubjects: called,
        meta: c.meta,
      }),
    );
  }
  return out;
}
