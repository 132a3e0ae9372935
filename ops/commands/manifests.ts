/**
 * `servegraph manifests [graph...] [--out dir] [--image repo/name:tag] [--namespace ns] [--json] [--graph file]`
 *
 * Kubernetes objects for the named graphs (default: the graph file's defaultGraphs), derived from the resolved
 * graph only: a single NATS server whose users and permissions come from the graph's edges, one Deployment per
 * node of the dependency closure (plus an HPA where replicas is [min, max], and a Service for a node with `http`),
 * and Secret templates. Nothing in a node changes between `servegraph up` and a cluster: it reads the same env.
 *
 * Output is deterministic except for the generated NATS passwords. Without --out the YAML goes to stdout (with
 * --json: the objects as a JSON array). With --out the YAML is written as nats.yaml, secrets.yaml and <node>.yaml.
 *
 * The YAML is written by {@link toYaml}: every scalar is JSON-encoded (JSON strings, numbers, booleans and null are
 * valid YAML 1.2 and read the same in YAML 1.1), so no value can be misread as a number, boolean, null, comment
 * or mapping; only multi-line strings that fit a literal block (`|`) are written as one, for readability.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_GRAPH_FILE, GraphConfigError, loadGraph, nodesOfGraphs, type ResolvedGraph, type ResolvedNode } from "../../runtime/config.ts";
import { reportConfigError } from "../output.ts";

export const DEFAULT_IMAGE = "servegraph:0.1.0";
export const NATS_IMAGE = "nats:2.10-alpine";
/** Port of every node's /metrics in a pod (SG_METRICS_PORT); a node with `http` serves /metrics there instead. */
export const METRICS_PORT = 9464;
export const NATS_CLIENT_PORT = 4222;
export const NATS_MONITOR_PORT = 8222;
/** The NATS user of the ops command line (`servegraph status`, `request`) inside the cluster. */
export const OPS_USER = "servegraph";
/** Name of the NATS Deployment, Service and the host in every node's NATS_URL. */
export const NATS_NAME = "nats";
export const HPA_CPU_UTILIZATION_PERCENT = 70;
/** Added to a node's request timeout: time to drain in-flight requests after SIGTERM. */
export const DRAIN_MARGIN_S = 15;
const MAX_PAYLOAD = "16MB";
const MAX_PENDING = "64MB";

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

export interface NatsPermissions {
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
}

/**
 * nats-server parses the value of a `$VAR` reference as a config token, so a password that looks like a number,
 * a size (`12MB`) or a boolean would change type: a letter first and hex digits after keep it a plain string.
 */
export function randomPassword(): string {
  return `sg${randomBytes(24).toString("hex")}`;
}

/** Env var of the NATS server that holds a user's password: `greeter-proxy` -> `GREETER_PROXY_NATS_PASSWORD`. */
export function passwordEnvName(user: string): string {
  return `${user.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_NATS_PASSWORD`;
}

export function credentialsSecretName(graph: ResolvedGraph): string {
  return `${graph.name}-nats-credentials`;
}

export function nodeSecretName(graph: ResolvedGraph, node: string): string {
  return `${graph.name}-${node}-secrets`;
}

/** The subjects a node sends requests to: every parameter value under the graph's subject prefix. */
export function edgeSubjects(graph: ResolvedGraph, node: ResolvedNode): string[] {
  const p = `${graph.subjectPrefix}.`;
  return [...new Set(Object.values(node.parameters).filter((v) => v.startsWith(p)))];
}

/**
 * A node's NATS permissions, derived from the graph. Publish: the subjects of its edges, and ADR-32 discovery
 * (`$SRV.<verb>.<node>`) of the nodes on those edges (the ingress counts replicas that way for /readyz).
 * Subscribe: its own subjects, discovery addressed to all services or to it, and its own reply inbox
 * (`_INBOX_<node>.>`, set as the connection's inboxPrefix via NATS_INBOX_PREFIX) so that no node can read the
 * replies meant for another. Replies to the requests it serves go out through `allow_responses` (one response per
 * request, to the reply subject the server saw), so no publish permission covers them.
 */
export function natsPermissions(graph: ResolvedGraph, nodeName: string): NatsPermissions {
  const node = graph.nodes[nodeName];
  if (!node) throw new GraphConfigError([{ path: `nodes.${nodeName}`, message: `unknown node "${nodeName}"` }]);
  const edges = edgeSubjects(graph, node);
  const targets = [...new Set(edges.map((s) => s.slice(graph.subjectPrefix.length + 1).split(".")[0]!))];
  return {
    publish: [...edges, ...targets.map((t) => `$SRV.*.${t}`)],
    subscribe: [`${graph.subjectPrefix}.${nodeName}.>`, "$SRV.PING", "$SRV.INFO", "$SRV.STATS", `$SRV.*.${nodeName}`, `$SRV.*.${nodeName}.*`, `${inboxPrefix(nodeName)}.>`],
  };
}

/** The reply-inbox prefix of a node's NATS user (a subject token may hold letters, digits, - and _). */
export function inboxPrefix(nodeName: string): string {
  return `_INBOX_${nodeName}`;
}

/** The ops user: discovery of every node, requests to any subject of the graph. */
export function opsPermissions(graph: ResolvedGraph): NatsPermissions {
  return { publish: ["$SRV.>", "_INBOX.>", `${graph.subjectPrefix}.>`], subscribe: ["$SRV.>", "_INBOX.>"] };
}

const confList = (xs: readonly string[]): string => `[${xs.map((x) => JSON.stringify(x)).join(", ")}]`;

/** nats.conf of the single server: limits, monitoring, and one user per node plus the ops user. */
export function natsConfig(graph: ResolvedGraph, graphNames: readonly string[], nodes: readonly string[]): string {
  const user = (name: string, perms: NatsPermissions, why: string): string[] => [
    `    # ${why}`,
    "    {",
    `      user: ${JSON.stringify(name)}`,
    `      password: $${passwordEnvName(name)}`,
    "      permissions: {",
    // An empty allow list may read as "no restriction": a node without edges is denied every publish instead.
    `        publish: ${perms.publish.length ? `{ allow: ${confList(perms.publish)} }` : `{ deny: [">"] }`}`,
    `        subscribe: { allow: ${confList(perms.subscribe)} }`,
    "        allow_responses: true",
    "      }",
    "    }",
  ];
  return [
    `# nats.conf of graph ${graph.name} (${graphNames.join(", ")}), written by \`servegraph manifests\` from graph.config.ts.`,
    `# Passwords are env references, filled from the Secret ${credentialsSecretName(graph)}.`,
    `port: ${NATS_CLIENT_PORT}`,
    `http_port: ${NATS_MONITOR_PORT}`,
    "# An 8 MB image must fit one request (the same limits as the local server of `servegraph up`).",
    `max_payload: ${MAX_PAYLOAD}`,
    `max_pending: ${MAX_PENDING}`,
    "authorization {",
    "  users: [",
    ...nodes.flatMap((n) => user(n, natsPermissions(graph, n), `node ${n}: publishes to its edges, subscribes to its own subjects`)),
    ...user(OPS_USER, opsPermissions(graph), "servegraph ops (status, request): discovery and requests to any node"),
    "  ]",
    "}",
    "",
  ].join("\n");
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

// --- YAML ------------------------------------------------------------------------------------------------

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_./-]*$/;
const YAML11_WORDS = /^(y|yes|n|no|true|false|on|off|null)$/i;

function yamlKey(k: string): string {
  return PLAIN_KEY.test(k) && !YAML11_WORDS.test(k) ? k : JSON.stringify(k);
}

function yamlScalar(v: unknown): string | undefined {
  if (v === null) return "null";
  if (typeof v === "string" || typeof v === "boolean") return JSON.stringify(v);
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new TypeError(`cannot write ${v} as YAML`);
    return JSON.stringify(v);
  }
  if (Array.isArray(v) && v.length === 0) return "[]";
  if (v !== null && typeof v === "object" && !Array.isArray(v) && Object.values(v).every((x) => x === undefined)) return "{}";
  if (Array.isArray(v) || (typeof v === "object" && v !== null)) return undefined;
  throw new TypeError(`cannot write a ${typeof v} as YAML`);
}

/** A multi-line string as a literal block: printable lines, no trailing blanks, at most one final newline. */
function literalBlock(s: string): { header: string; lines: string[] } | undefined {
  if (!s.includes("\n") || /[^\t\n\x20-\x7e\u00a0-\ud7ff\ue000-\ufffd]/.test(s) || s.startsWith(" ") || s.startsWith("\n")) return undefined;
  const clip = s.endsWith("\n");
  const body = clip ? s.slice(0, -1) : s;
  if (body.endsWith("\n")) return undefined;
  const lines = body.split("\n");
  if (lines.some((l) => /[ \t]$/.test(l) || (l.length > 0 && l.trim() === ""))) return undefined;
  return { header: clip ? "|" : "|-", lines };
}

function emitValue(v: unknown, indent: number, out: string[]): void {
  const pad = " ".repeat(indent);
  if (Array.isArray(v)) {
    for (const item of v) {
      const s = yamlScalar(item);
      if (s !== undefined) {
        const block = typeof item === "string" ? literalBlock(item) : undefined;
        if (block) {
          out.push(`${pad}- ${block.header}`);
          for (const l of block.lines) out.push(l ? `${pad}  ${l}` : "");
        } else out.push(`${pad}- ${s}`);
        continue;
      }
      const sub: string[] = [];
      emitValue(item, indent + 2, sub);
      sub[0] = `${pad}- ${sub[0]!.slice(indent + 2)}`;
      out.push(...sub);
    }
    return;
  }
  for (const [k, item] of Object.entries(v as Record<string, unknown>)) {
    if (item === undefined) continue;
    const key = `${pad}${yamlKey(k)}:`;
    const s = yamlScalar(item);
    if (s === undefined) {
      out.push(key);
      emitValue(item, indent + 2, out);
      continue;
    }
    const block = typeof item === "string" ? literalBlock(item) : undefined;
    if (block) {
      out.push(`${key} ${block.header}`);
      for (const l of block.lines) out.push(l ? `${pad}  ${l}` : "");
    } else out.push(`${key} ${s}`);
  }
}

/** YAML for plain JSON data (objects, arrays, strings, finite numbers, booleans, null); `undefined` fields are left out. */
export function toYaml(value: unknown): string {
  const s = yamlScalar(value);
  if (s !== undefined) return `${s}\n`;
  const out: string[] = [];
  emitValue(value, 0, out);
  return out.join("\n") + "\n";
}

/** A multi-document YAML stream: each object after `---`, its comments above it. */
export function renderYaml(manifests: readonly Manifest[]): string {
  return manifests
    .map((m) => ["---", ...m.comments.flatMap((c) => c.split("\n")).map((c) => (c ? `# ${c}` : "#")), toYaml(m.object)].join("\n"))
    .join("");
}

// --- command ---------------------------------------------------------------------------------------------

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      json: { type: "boolean" },
      graph: { type: "string" },
      out: { type: "string" },
      image: { type: "string" },
      namespace: { type: "string" },
    },
    allowPositionals: true,
  });
  let manifests: Manifest[];
  try {
    const graph = await loadGraph(values.graph);
    const names = positionals.length ? positionals : graph.defaultGraphs;
    manifests = buildManifests(graph, names, {
      ...(values.image !== undefined ? { image: values.image } : {}),
      ...(values.namespace !== undefined ? { namespace: values.namespace } : {}),
    });
  } catch (err) {
    return reportConfigError(err, values.json);
  }
  if (values.out === undefined) {
    process.stdout.write(values.json ? JSON.stringify(manifests.map((m) => m.object), null, 2) + "\n" : renderYaml(manifests));
    return 0;
  }
  const dir = resolve(values.out);
  mkdirSync(dir, { recursive: true });
  const files = [...new Set(manifests.map((m) => m.file))];
  for (const f of files) writeFileSync(join(dir, f), renderYaml(manifests.filter((m) => m.file === f)), { mode: f === "secrets.yaml" ? 0o600 : 0o644 });
  if (values.json) process.stdout.write(JSON.stringify({ ok: true, dir, files, objects: manifests.length }, null, 2) + "\n");
  else {
    const rest = files.filter((f) => f !== "secrets.yaml").map((f) => `-f ${join(dir, f)}`).join(" ");
    process.stdout.write(
      `wrote ${manifests.length} objects to ${dir}: ${files.join(", ")}\n` +
        `apply the secrets once (new passwords on every run): kubectl apply -f ${join(dir, "secrets.yaml")}\n` +
        `then: kubectl apply ${rest}\n`,
    );
  }
  return 0;
}
