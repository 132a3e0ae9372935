/**
 * The graph file's schema and its compilation: parse (zod, strict) -> defaults -> cross-checks -> compile
 * (units to ms, subjects resolved, parameters to env vars) -> deep freeze. All problems are reported at once.
 */
import { basename, resolve, dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { z } from "zod";
import { ENDPOINTS, endpointDef } from "../subjects/registry.ts";
import { closestName, endpointSubject, isToken, SUBJECT_PREFIX } from "../subjects/names.ts";
import { BODY_LIMIT_PARAMETERS, HEADER_ROOM_BYTES, MAX_PAYLOAD_BYTES } from "../subjects/limits.ts";
import { GRAPH_FILE_NAME, projectRoot } from "./project.ts";

// --- authoring types ----------------------------------------------------------------------------------

/** A parameter whose value is another node's endpoint subject (the seed's `AppEndpoint`, pattern B). */
export interface SubjectRef {
  readonly $subject: { readonly node: string; readonly endpoint: string };
}

/** `subjectOf("greeter", "greet")` in graph.config.ts resolves to `sg.v1.greeter.greet` at load time. */
export function subjectOf(node: string, endpoint: string): SubjectRef {
  return { $subject: { node, endpoint } };
}

const duration = z
  .union([
    z.number().nonnegative(),
    z.string().regex(/^\d+(\.\d+)?(ms|s|m)$/, "expected a duration like 500ms, 30s or 2m"),
  ])
  .describe("A duration: milliseconds as a number, or a string with ms|s|m.");

export function durationToMs(d: number | string): number {
  if (typeof d === "number") return d;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(d);
  if (!m) throw new TypeError(`bad duration ${d}`);
  const v = Number(m[1]);
  return m[2] === "ms" ? v : m[2] === "s" ? v * 1000 : v * 60_000;
}

const memory = z
  .string()
  .regex(/^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$/, "expected a Kubernetes quantity like 512Mi or 2Gi");
const cpu = z.union([
  z.number().positive(),
  z.string().regex(/^\d+m$|^\d+(\.\d+)?$/, "expected cores (1, 0.5) or millicores (500m)"),
]);

const SubjectRefSchema = z.strictObject({ $subject: z.strictObject({ node: z.string(), endpoint: z.string() }) });

const ParameterValue = z.union([z.string(), z.number(), z.boolean(), SubjectRefSchema]);

/** The HTTP methods a declared route may have. */
export const ROUTE_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;
export type RouteMethod = (typeof ROUTE_METHODS)[number];

/**
 * How a route's HTTP body becomes the endpoint's request. Left out: `json` for a JSON endpoint (the body's fields,
 * with the path and query parameters), `raw` for a bytes endpoint (the body as it is). `image`: a bytes endpoint
 * that takes an image either as the raw body or as JSON `{image_url, ...}` that the ingress fetches (public
 * http(s) addresses only).
 */
export const ROUTE_BODIES = ["json", "raw", "image"] as const;
export type RouteBody = (typeof ROUTE_BODIES)[number];

const Route = z.strictObject({
  call: SubjectRefSchema.describe("The endpoint the route calls: subjectOf(node, endpoint)."),
  body: z.enum(ROUTE_BODIES).optional(),
  description: z
    .string()
    .optional()
    .describe("The route's line in the OpenAPI document (default: the endpoint's description)."),
});

/** Reserved paths of an HTTP node (health, metrics, the OpenAPI document, the dashboard). */
const RESERVED_PATHS = /^\/(healthz|readyz|metrics|docs|dashboard)(\/|$)/;
/** A route key: `METHOD /path/:param` (a parameter is a whole segment). */
const ROUTE_KEY =
  /^([A-Z]+) (\/(?:[A-Za-z0-9._~-]+|:[A-Za-z_][A-Za-z0-9_]*)?(?:\/(?:[A-Za-z0-9._~-]+|:[A-Za-z_][A-Za-z0-9_]*))*)$/;

/** `"GET /greeting/:name"` -> method, path and its parameters; undefined when it is not a route key. */
export function parseRouteKey(key: string): { method: string; path: string; params: string[] } | undefined {
  const m = ROUTE_KEY.exec(key);
  if (!m) return undefined;
  const path = m[2]!;
  return {
    method: m[1]!,
    path,
    params: path
      .split("/")
      .filter((s) => s.startsWith(":"))
      .map((s) => s.slice(1)),
  };
}

const Secret = z
  .strictObject({
    env: z.string().optional().describe("Read the value from this environment variable of the launcher."),
    file: z.string().optional().describe("Read the value from this file (trailing newline trimmed)."),
    required: z.boolean().default(false),
  })
  .refine((s) => s.env !== undefined || s.file !== undefined, "a secret needs `env` or `file`");

/**
 * Batching knobs. Each is optional: one that graph.config.ts leaves out is the node's to choose (infer picks
 * values for the execution provider it got at start-up); a node that does not choose uses BATCHING_DEFAULTS.
 */
const Batching = z.strictObject({
  maxBatchSize: z.number().int().min(1).max(1024).optional().describe("Most requests per batch."),
  maxQueueDelayMs: z
    .number()
    .min(0)
    .max(10_000)
    .optional()
    .describe("A partial batch leaves when its oldest request has waited this long."),
  maxQueueSize: z.number().int().min(1).optional().describe("Requests allowed to wait; more get QUEUE_FULL at once."),
  maxConcurrentBatches: z
    .number()
    .int()
    .min(1)
    .max(16)
    .optional()
    .describe("Batches in flight at once (2 overlaps filling one with computing another)."),
});

export interface BatchingKnobs {
  readonly maxBatchSize: number;
  readonly maxQueueDelayMs: number;
  readonly maxQueueSize: number;
  readonly maxConcurrentBatches: number;
}

/**
 * The CPU defaults: what a knob that graph.config.ts leaves out is, unless the node chooses (and what `bench`
 * assumes). maxQueueDelayMs 0: on a CPU a batch leaves as soon as the model is free, and requests arriving
 * during a forward pass form the next one.
 */
export const BATCHING_DEFAULTS: BatchingKnobs = Object.freeze({
  maxBatchSize: 32,
  maxQueueDelayMs: 0,
  maxQueueSize: 256,
  maxConcurrentBatches: 1,
});

const Replicas = z.union([
  z.number().int().min(0).max(256),
  z.tuple([z.number().int().min(0).max(256), z.number().int().min(1).max(256)]),
]);

export const AUTOSCALE_METRICS = ["inFlight", "queueDepth", "batchFill"] as const;
export type AutoscaleMetric = (typeof AUTOSCALE_METRICS)[number];

/**
 * How `servegraph up` (and the emitted KEDA/HPA objects) move a node with `replicas: [min, max]`. Every field is
 * optional; AUTOSCALE_DEFAULTS fills the rest by node kind (a batching node scales on its batch queue).
 */
const Autoscale = z.strictObject({
  metric: z
    .enum(AUTOSCALE_METRICS)
    .optional()
    .describe(
      "inFlight: requests being handled; queueDepth: requests waiting in the batch queue; batchFill: recent batch fill 0..1.",
    ),
  target: z
    .number()
    .positive()
    .optional()
    .describe("The metric's value per replica the autoscaler aims at: replicas = ceil(total / target)."),
  scaleUpAfter: duration.optional().describe("Scale up only after the metric has asked for more replicas this long."),
  scaleDownAfter: duration
    .optional()
    .describe("Scale down only after it has asked for fewer this long (to 0 after this long idle)."),
});

export interface AutoscalePolicy {
  readonly metric: AutoscaleMetric;
  /** Per replica: in-flight requests, batch-queue depth, or fill 0..1. */
  readonly target: number;
  readonly scaleUpAfterMs: number;
  readonly scaleDownAfterMs: number;
}

/** The policy of a node whose graph.config.ts entry leaves `autoscale` (or part of it) out. */
export const AUTOSCALE_DEFAULTS: { readonly batching: AutoscalePolicy; readonly other: AutoscalePolicy } =
  Object.freeze({
    /** A batching node: one CPU batch waiting per replica. */
    batching: Object.freeze({ metric: "queueDepth", target: 32, scaleUpAfterMs: 5_000, scaleDownAfterMs: 60_000 }),
    /** Any other node: a few requests in flight per replica (they mostly wait on I/O or a downstream node). */
    other: Object.freeze({ metric: "inFlight", target: 8, scaleUpAfterMs: 5_000, scaleDownAfterMs: 60_000 }),
  } as const);

const NodeSchema = z.strictObject({
  service: z
    .string()
    .min(1)
    .describe("Folder of the node's service module, relative to the graph file (its entry is src/main.ts)."),
  description: z.string().default(""),
  dependsOn: z
    .array(z.string())
    .default([])
    .describe("Nodes deployed with this one (co-scheduling, not request ordering)."),
  replicas: Replicas.default(1).describe(
    "A fixed count, or [min, max]: the autoscaler keeps the count within; min 0 scales to zero when idle.",
  ),
  autoscale: Autoscale.optional().describe(
    "Autoscaling policy of a node with replicas [min, max] (defaults by node kind).",
  ),
  resources: z
    .strictObject({ cpu: cpu.default(1), memory: memory.default("512Mi"), gpu: z.number().int().min(0).default(0) })
    .prefault({}),
  parameters: z
    .record(z.string(), ParameterValue)
    .default({})
    .describe("Injected into the node's processes as env vars."),
  secrets: z
    .record(z.string(), Secret)
    .default({})
    .describe("Env vars whose values come from the launcher's env or a file; never logged."),
  requiresAuth: z
    .boolean()
    .default(false)
    .describe(
      "HTTP nodes only: every route but health, metrics and docs needs `Authorization: Bearer <API_KEY secret>`.",
    ),
  timeout: duration.default("30s").describe("Deadline for one request through this node (callers' default)."),
  maxInFlight: z
    .number()
    .int()
    .min(1)
    .max(100_000)
    .default(256)
    .describe("Per-replica cap on concurrent requests; more get OVERLOADED."),
  http: z.strictObject({ port: z.number().int().min(0).max(65535), host: z.string().default("127.0.0.1") }).optional(),
  metricsPort: z
    .number()
    .int()
    .min(0)
    .max(65535)
    .default(0)
    .describe("Prometheus /metrics port of each replica; 0 picks a free one."),
  batching: Batching.optional(),
  calls: z
    .array(SubjectRefSchema)
    .default([])
    .describe(
      "Endpoints the node calls without a parameter naming them (ctx.subjectOf(node, endpoint) in its code): subjectOf(node, endpoint). Calls through subject parameters are declared by those.",
    ),
  routes: z
    .record(z.string(), Route)
    .default({})
    .describe(
      'HTTP nodes only: "METHOD /path/:param" -> the endpoint it calls, and how the body maps onto its request.',
    ),
});

const GraphSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9-]+$/, "lowercase letters, digits and dashes"),
  subjectPrefix: z
    .string()
    .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/)
    .default(SUBJECT_PREFIX),
  root: z.string().optional().describe("Folder that service paths are relative to (default: the graph file's folder)."),
  nodes: z.record(z.string(), NodeSchema),
  graphs: z
    .record(z.string(), z.strictObject({ description: z.string().default(""), nodes: z.array(z.string()).min(1) }))
    .describe(
      "Named sub-graphs: their nodes plus dependsOn closures. `servegraph up <graph...>` starts one or several.",
    ),
  defaultGraphs: z.array(z.string()).min(1),
});

export type GraphInput = z.input<typeof GraphSchema>;
export type NodeInput = z.input<typeof NodeSchema>;

/** Identity function that gives graph.config.ts its types. Validation happens in {@link loadGraph}. */
export function defineGraph<const G extends GraphInput>(g: G): G {
  return g;
}

// --- resolved types -----------------------------------------------------------------------------------

export interface ResolvedSecret {
  readonly env?: string;
  readonly file?: string;
  readonly required: boolean;
}

/** A call from one node to another's endpoint: what the broker permits, the dashboard draws and the manifests grant. */
export interface ResolvedCall {
  readonly node: string;
  readonly endpoint: string;
  readonly subject: string;
  /** How it is declared: a subject parameter (its name), a `calls` entry, or a route (its key). */
  readonly via: { readonly parameter: string } | { readonly call: number } | { readonly route: string };
}

/** A declared HTTP route of an HTTP node. */
export interface ResolvedRoute {
  /** `"GET /greeting/:name"`, as declared. */
  readonly key: string;
  readonly method: RouteMethod;
  /** Fastify syntax: `/greeting/:name`. */
  readonly path: string;
  /** The path's parameters, in order. */
  readonly params: readonly string[];
  readonly node: string;
  readonly endpoint: string;
  readonly subject: string;
  readonly body: RouteBody | "none";
  readonly description?: string;
}

export interface ResolvedNode {
  readonly name: string;
  readonly service: string;
  /** Absolute path of the module the launcher runs. */
  readonly entry: string;
  readonly description: string;
  readonly dependsOn: readonly string[];
  readonly replicas: { readonly min: number; readonly max: number };
  readonly resources: {
    readonly cpu: number;
    readonly memoryBytes: number;
    readonly memory: string;
    readonly gpu: number;
  };
  /** Parameters as env var values, subjects resolved. */
  readonly parameters: Readonly<Record<string, string>>;
  readonly secrets: Readonly<Record<string, ResolvedSecret>>;
  readonly requiresAuth: boolean;
  readonly timeoutMs: number;
  readonly maxInFlight: number;
  readonly http?: { readonly port: number; readonly host: string };
  readonly metricsPort: number;
  /** The node's batching knobs, BATCHING_DEFAULTS for the ones graph.config.ts leaves out; absent without `batching`. */
  readonly batching?: BatchingKnobs;
  /** Only the batching knobs graph.config.ts sets (a node that chooses its own defaults fills in the rest). */
  readonly batchingDeclared?: Readonly<Partial<BatchingKnobs>>;
  /** Present when replicas.min < replicas.max: graph.config.ts's `autoscale` over AUTOSCALE_DEFAULTS. */
  readonly autoscale?: AutoscalePolicy;
  /** Subject prefix of this node: every endpoint is `<subjectPrefix>.<name>.<endpoint>`. */
  readonly subjectPrefix: string;
  /** Every endpoint of another node this one calls (subject parameters, `calls`, routes), one entry per subject. */
  readonly calls: readonly ResolvedCall[];
  /** HTTP nodes: the declared routes (empty otherwise). */
  readonly routes: readonly ResolvedRoute[];
}

export interface ResolvedGraph {
  readonly name: string;
  readonly file: string;
  readonly root: string;
  readonly subjectPrefix: string;
  readonly nodes: Readonly<Record<string, ResolvedNode>>;
  readonly graphs: Readonly<Record<string, { readonly description: string; readonly nodes: readonly string[] }>>;
  readonly defaultGraphs: readonly string[];
}

export class GraphConfigError extends Error {
  override readonly name = "GraphConfigError";
  /**
   * The nodes that are valid on their own, as a graph of their own (no dependsOn, one sub-graph), when the graph
   * file failed: `check` still checks their parameters and service folders, so one run lists every problem.
   */
  partial?: ResolvedGraph;
  constructor(readonly issues: readonly { path: string; message: string }[]) {
    super(`invalid graph config:\n${issues.map((i) => `  - ${i.path || "(root)"}: ${i.message}`).join("\n")}`);
  }
}

function cpuToCores(c: number | string): number {
  return typeof c === "number" ? c : c.endsWith("m") ? Number(c.slice(0, -1)) / 1000 : Number(c);
}

function memoryToBytes(m: string): number {
  const r = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$/.exec(m)!;
  const mult: Record<string, number> = {
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    K: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
  };
  return Math.round(Number(r[1]) * (r[2] ? mult[r[2]]! : 1));
}

/** Freezes a graph and everything in it (a resolved graph is never changed in place). */
export function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object" && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;

/**
 * Validates and compiles a graph definition. `file` anchors relative service paths.
 * Throws {@link GraphConfigError} listing every problem with its path.
 */
export function resolveGraph(input: unknown, file: string): ResolvedGraph {
  const parsed = GraphSchema.safeParse(input);
  if (!parsed.success) {
    // Report the cross-checks of whatever did parse too, so one error lists every problem.
    const issues = parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message }));
    const partial = partialParse(input);
    if (partial) {
      for (const extra of crossCheck(partial.graph, partial.names)) {
        if (!issues.some((i) => i.path === extra.path && i.message === extra.message)) issues.push(extra);
      }
    }
    throw withPartial(new GraphConfigError(issues), input, file);
  }
  const g = parsed.data;
  const names = Object.keys(g.nodes);
  const issues = crossCheck(g, names);
  if (issues.length) throw withPartial(new GraphConfigError(issues), input, file);
  return compile(g, file);
}

/** Attaches {@link GraphConfigError.partial}: the nodes of `input` that parse alone, compiled as a graph of their own. */
function withPartial(err: GraphConfigError, input: unknown, file: string): GraphConfigError {
  try {
    const nodes: Record<string, unknown> = {};
    for (const { name, raw } of nodesThatParse(input))
      if (isToken(name)) nodes[name] = { ...(raw as object), dependsOn: [] };
    const names = Object.keys(nodes);
    if (names.length === 0) return err;
    const r = GraphSchema.safeParse({
      ...(input as object),
      nodes,
      graphs: { all: { nodes: names } },
      defaultGraphs: ["all"],
    });
    if (r.success && crossCheck(r.data, names).length === 0) err.partial = compile(r.data, file);
  } catch {
    // no partial graph: the issues above are all there is
  }
  return err;
}

type GraphOutput = z.output<typeof GraphSchema>;
type CheckedGraph = Pick<GraphOutput, "nodes" | "graphs" | "defaultGraphs">;

const LooseGraph = z.object({
  nodes: z.record(z.string(), z.unknown()),
  graphs: z.record(z.string(), z.unknown()).optional(),
  defaultGraphs: z.array(z.string()).optional(),
});
const LooseSubGraph = z.object({ description: z.string().default(""), nodes: z.array(z.string()) });

/** The nodes of a graph file's input that are valid on their own: their name, input and parsed value. */
function nodesThatParse(input: unknown): { name: string; raw: unknown; parsed: GraphOutput["nodes"][string] }[] {
  const loose = LooseGraph.safeParse(input);
  if (!loose.success) return [];
  return Object.entries(loose.data.nodes).flatMap(([name, raw]) => {
    const r = NodeSchema.safeParse(raw);
    return r.success ? [{ name, raw, parsed: r.data }] : [];
  });
}

/** The nodes and graphs that parse on their own, for cross-checking a graph that failed the schema. */
function partialParse(input: unknown): { graph: CheckedGraph; names: string[] } | undefined {
  const loose = LooseGraph.safeParse(input);
  if (!loose.success) return undefined;
  const nodes: GraphOutput["nodes"] = {};
  for (const { name, parsed } of nodesThatParse(input)) nodes[name] = parsed;
  const graphs: GraphOutput["graphs"] = {};
  for (const [name, sg] of Object.entries(loose.data.graphs ?? {})) {
    const r = LooseSubGraph.safeParse(sg);
    if (r.success) graphs[name] = r.data;
  }
  return {
    graph: { nodes, graphs, defaultGraphs: loose.data.defaultGraphs ?? [] },
    names: Object.keys(loose.data.nodes),
  };
}

/**
 * Why `endpoint` is not one of the endpoints defined for `service` (subjects/endpoints.ts, by the service folder's
 * name); undefined when it is, or when nothing is defined for that service there (nothing to check it against).
 */
function unknownEndpointOf(service: string, endpoint: string): string | undefined {
  const folder = basename(service);
  const defined = ENDPOINTS.filter((d) => d.service === folder).map((d) => d.name);
  if (defined.length === 0 || defined.includes(endpoint)) return undefined;
  const near = closestName(endpoint, defined);
  return `it serves ${defined.join(", ")}${near ? `; did you mean "${near}"?` : ""}`;
}

/** Why a `subjectOf()` reference does not name a node's endpoint, with a did-you-mean; undefined when it does. */
function refProblem(g: CheckedGraph, names: string[], ref: z.output<typeof SubjectRefSchema>): string | undefined {
  const { node, endpoint } = ref.$subject;
  if (!names.includes(node)) {
    const near = closestName(node, names);
    return `unknown node "${node}"${near ? `; did you mean "${near}"?` : ""}`;
  }
  if (!isToken(endpoint)) return "endpoint must be a subject token";
  const target = g.nodes[node];
  const missing = target && unknownEndpointOf(target.service, endpoint);
  return missing ? `node "${node}" (${target.service}) has no endpoint "${endpoint}": ${missing}` : undefined;
}

/** The problems of one declared route: its key, its target, and how its path and body fit the endpoint. */
function routeProblems(
  g: CheckedGraph,
  names: string[],
  at: string,
  key: string,
  r: z.output<typeof Route>,
): { path: string; message: string }[] {
  const parsed = parseRouteKey(key);
  if (!parsed)
    return [
      {
        path: at,
        message:
          'a route is "METHOD /path", e.g. "POST /upper" or "GET /greeting/:name" (segments of letters, digits, ._~- or :param)',
      },
    ];
  const out: { path: string; message: string }[] = [];
  if (!(ROUTE_METHODS as readonly string[]).includes(parsed.method))
    out.push({ path: at, message: `method ${parsed.method} is not one of ${ROUTE_METHODS.join(", ")}` });
  if (RESERVED_PATHS.test(parsed.path))
    out.push({ path: at, message: `${parsed.path} is the HTTP node's own (health, metrics, docs, dashboard)` });
  if (new Set(parsed.params).size !== parsed.params.length)
    out.push({ path: at, message: "a path parameter is named twice" });
  const why = refProblem(g, names, r.call);
  if (why) return [...out, { path: `${at}.call`, message: why }];
  const target = g.nodes[r.call.$subject.node]!;
  const def = endpointDef(basename(target.service), r.call.$subject.endpoint);
  if (!def) {
    out.push({
      path: `${at}.call`,
      message: `no definition of ${basename(target.service)}.${r.call.$subject.endpoint} in subjects/ (subjects/registry.ts): the ingress serves a route through its endpoint's definition`,
    });
    return out;
  }
  const kind = def.request.kind;
  if (kind === "tensor")
    out.push({
      path: `${at}.call`,
      message: `${def.service}.${def.name} takes a tensor: an HTTP route cannot build one (call it over NATS)`,
    });
  if (r.body === "json" && kind !== "json")
    out.push({
      path: `${at}.body`,
      message: `json bodies are for JSON endpoints; ${def.service}.${def.name} takes ${kind}`,
    });
  if ((r.body === "raw" || r.body === "image") && kind !== "bytes")
    out.push({
      path: `${at}.body`,
      message: `${r.body} bodies are for bytes endpoints; ${def.service}.${def.name} takes ${kind}`,
    });
  if (parsed.params.length > 0) {
    const fields = def.request.kind === "json" ? objectFields(def.request.schema) : undefined;
    for (const p of parsed.params) {
      if (!fields?.includes(p))
        out.push({
          path: at,
          message: `path parameter :${p} is not a field of ${def.service}.${def.name}'s request${fields?.length ? ` (${fields.join(", ")})` : ""}`,
        });
    }
  }
  return out;
}

/** The field names of a JSON request schema that is an object (possibly optional), else undefined. */
export function objectFields(schema: z.ZodType): string[] | undefined {
  const shape = objectShape(schema);
  return shape ? Object.keys(shape) : undefined;
}

/** The shape of an object schema (through optional/default wrappers), else undefined. */
export function objectShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  let s: z.ZodType = schema;
  for (let i = 0; i < 4; i++) {
    if (s instanceof z.ZodObject) return s.shape as Record<string, z.ZodType>;
    if (s instanceof z.ZodOptional || s instanceof z.ZodDefault) s = s.unwrap() as z.ZodType;
    else return undefined;
  }
  return undefined;
}

/** Checks across nodes and graphs that a per-field schema cannot express. `names`: every declared node. */
function crossCheck(g: CheckedGraph, names: string[]): { path: string; message: string }[] {
  const issues: { path: string; message: string }[] = [];

  for (const [name, n] of Object.entries(g.nodes)) {
    const at = `nodes.${name}`;
    if (!isToken(name)) issues.push({ path: at, message: "node names must be subject tokens [A-Za-z0-9_-]" });
    for (const [i, d] of n.dependsOn.entries()) {
      if (!names.includes(d)) issues.push({ path: `${at}.dependsOn.${i}`, message: `unknown node "${d}"` });
      if (d === name) issues.push({ path: `${at}.dependsOn.${i}`, message: "a node cannot depend on itself" });
    }
    if (Array.isArray(n.replicas) && n.replicas[0] > n.replicas[1]) {
      issues.push({ path: `${at}.replicas`, message: `min ${n.replicas[0]} is greater than max ${n.replicas[1]}` });
    }
    for (const [k, v] of Object.entries(n.parameters)) {
      if (!ENV_NAME.test(k))
        issues.push({ path: `${at}.parameters.${k}`, message: "parameter names are env var names (A-Z, 0-9, _)" });
      if (typeof v === "object") {
        const why = refProblem(g, names, v);
        if (why) issues.push({ path: `${at}.parameters.${k}`, message: why });
      } else if (
        typeof v === "number" &&
        (BODY_LIMIT_PARAMETERS as readonly string[]).includes(k) &&
        v > MAX_PAYLOAD_BYTES - HEADER_ROOM_BYTES
      ) {
        issues.push({
          path: `${at}.parameters.${k}`,
          message: `${v} bytes do not fit one NATS message: the brokers take ${MAX_PAYLOAD_BYTES} (subjects/limits.ts), less ${HEADER_ROOM_BYTES} for headers`,
        });
      } else if (typeof v === "string") {
        // A subject written out is a call nothing declares: the broker would refuse it (FORBIDDEN) at run time.
        const m = /^(?:sg\.v1|[A-Za-z0-9_-]+\.v\d+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(v);
        if (m && names.includes(m[1]!)) {
          issues.push({
            path: `${at}.parameters.${k}`,
            message: `write subjectOf("${m[1]}", "${m[2]}") instead of the subject itself: that declares the call (the broker permits declared calls only)`,
          });
        }
      }
    }
    for (const [i, c] of n.calls.entries()) {
      const why = refProblem(g, names, c);
      if (why) issues.push({ path: `${at}.calls.${i}`, message: why });
    }
    if (Object.keys(n.routes).length > 0 && !n.http) {
      issues.push({
        path: `${at}.routes`,
        message: "routes are served by an HTTP node: give the node `http: { port }`",
      });
    }
    for (const [key, r] of Object.entries(n.routes))
      issues.push(...routeProblems(g, names, `${at}.routes.${key}`, key, r));
    for (const k of Object.keys(n.secrets)) {
      if (!ENV_NAME.test(k))
        issues.push({ path: `${at}.secrets.${k}`, message: "secret names are env var names (A-Z, 0-9, _)" });
      if (k in n.parameters) issues.push({ path: `${at}.secrets.${k}`, message: "also declared as a parameter" });
    }
    if (n.requiresAuth && !n.http) {
      issues.push({
        path: `${at}.requiresAuth`,
        message:
          "applies to HTTP nodes; nodes reached over NATS are guarded by their NATS user's permissions (servegraph manifests)",
      });
    }
    if (n.autoscale) {
      const fixed = !Array.isArray(n.replicas) || n.replicas[0] === n.replicas[1];
      if (fixed)
        issues.push({ path: `${at}.autoscale`, message: "applies to nodes with replicas: [min, max] (min < max)" });
      if (n.autoscale.metric && n.autoscale.metric !== "inFlight" && !n.batching) {
        issues.push({
          path: `${at}.autoscale.metric`,
          message: `${n.autoscale.metric} is a batch-queue metric: the node needs \`batching\``,
        });
      }
      if (n.autoscale.metric === "batchFill" && n.autoscale.target !== undefined && n.autoscale.target > 1) {
        issues.push({ path: `${at}.autoscale.target`, message: "batchFill is a fraction: the target is in (0, 1]" });
      }
    }
    if (n.batching) {
      // Knobs only a batched endpoint reads: on a node without one they would silently do nothing.
      const defs = ENDPOINTS.filter((d) => d.service === basename(n.service));
      if (defs.length > 0 && !defs.some((d) => d.batched)) {
        issues.push({
          path: `${at}.batching`,
          message: `${basename(n.service)} serves no batched endpoint (${defs.map((d) => d.name).join(", ")}): mark one \`batched: true\` in subjects/ and serve it with ctx.serveBatch, or remove \`batching\``,
        });
      }
    }
    if (
      n.batching?.maxQueueSize !== undefined &&
      n.batching.maxBatchSize !== undefined &&
      n.batching.maxQueueSize < n.batching.maxBatchSize
    ) {
      issues.push({
        path: `${at}.batching.maxQueueSize`,
        message: `must be >= maxBatchSize (${n.batching.maxBatchSize})`,
      });
    }
  }
  // dependsOn must be acyclic
  const state = new Map<string, 1 | 2>();
  const visit = (n: string, stack: string[]): void => {
    if (state.get(n) === 2) return;
    if (state.get(n) === 1) {
      issues.push({ path: `nodes.${n}.dependsOn`, message: `dependency cycle: ${[...stack, n].join(" -> ")}` });
      return;
    }
    state.set(n, 1);
    for (const d of g.nodes[n]?.dependsOn ?? []) if (names.includes(d)) visit(d, [...stack, n]);
    state.set(n, 2);
  };
  for (const n of names) visit(n, []);

  for (const [gname, sg] of Object.entries(g.graphs)) {
    if (!isToken(gname)) issues.push({ path: `graphs.${gname}`, message: "graph names must be [A-Za-z0-9_-]" });
    for (const [i, n] of sg.nodes.entries()) {
      if (!names.includes(n)) issues.push({ path: `graphs.${gname}.nodes.${i}`, message: `unknown node "${n}"` });
    }
  }
  for (const [i, d] of g.defaultGraphs.entries()) {
    if (!(d in g.graphs)) issues.push({ path: `defaultGraphs.${i}`, message: `unknown graph "${d}"` });
  }
  return issues;
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The target of a metric declared without one: the node kind's default for its metric; batchFill aims at 80 %. */
const DEFAULT_TARGET: Readonly<Record<AutoscaleMetric, number>> = {
  inFlight: AUTOSCALE_DEFAULTS.other.target,
  queueDepth: AUTOSCALE_DEFAULTS.batching.target,
  batchFill: 0.8,
};

function autoscalePolicy(n: GraphOutput["nodes"][string]): AutoscalePolicy {
  const d = n.batching ? AUTOSCALE_DEFAULTS.batching : AUTOSCALE_DEFAULTS.other;
  const a = n.autoscale ?? {};
  const metric = a.metric ?? d.metric;
  return {
    metric,
    target: a.target ?? DEFAULT_TARGET[metric],
    scaleUpAfterMs: a.scaleUpAfter !== undefined ? durationToMs(a.scaleUpAfter) : d.scaleUpAfterMs,
    scaleDownAfterMs: a.scaleDownAfter !== undefined ? durationToMs(a.scaleDownAfter) : d.scaleDownAfterMs,
  };
}

function compile(g: GraphOutput, file: string): ResolvedGraph {
  const root = resolve(dirname(file), g.root ?? ".");
  const nodes: Record<string, ResolvedNode> = {};
  for (const [name, n] of Object.entries(g.nodes)) {
    const parameters: Record<string, string> = {};
    for (const [k, v] of Object.entries(n.parameters)) {
      parameters[k] =
        typeof v === "object" ? endpointSubject(v.$subject.node, v.$subject.endpoint, g.subjectPrefix) : String(v);
    }
    const [min, max] = Array.isArray(n.replicas) ? n.replicas : [n.replicas, n.replicas];
    const subject = (ref: z.output<typeof SubjectRefSchema>): string =>
      endpointSubject(ref.$subject.node, ref.$subject.endpoint, g.subjectPrefix);
    const calls: ResolvedCall[] = [];
    const addCall = (ref: z.output<typeof SubjectRefSchema>, via: ResolvedCall["via"]): void => {
      const s = subject(ref);
      if (!calls.some((c) => c.subject === s))
        calls.push({ node: ref.$subject.node, endpoint: ref.$subject.endpoint, subject: s, via });
    };
    for (const [k, v] of Object.entries(n.parameters)) if (typeof v === "object") addCall(v, { parameter: k });
    n.calls.forEach((c, i) => addCall(c, { call: i }));
    const routes: ResolvedRoute[] = Object.entries(n.routes).map(([key, r]) => {
      addCall(r.call, { route: key });
      const { method, path, params } = parseRouteKey(key)!;
      const def = endpointDef(basename(g.nodes[r.call.$subject.node]!.service), r.call.$subject.endpoint);
      const kind = def?.request.kind;
      const body: RouteBody | "none" =
        r.body ??
        (kind === "bytes" ? "raw" : kind === "json" && method !== "GET" && method !== "DELETE" ? "json" : "none");
      return {
        key,
        method: method as RouteMethod,
        path,
        params,
        node: r.call.$subject.node,
        endpoint: r.call.$subject.endpoint,
        subject: subject(r.call),
        body,
        ...(r.description !== undefined ? { description: r.description } : {}),
      };
    });
    nodes[name] = {
      name,
      service: n.service,
      entry: resolve(root, n.service, "src/main.ts"),
      description: n.description,
      dependsOn: n.dependsOn,
      replicas: { min, max: Math.max(max, 1) },
      resources: {
        cpu: cpuToCores(n.resources.cpu),
        memory: n.resources.memory,
        memoryBytes: memoryToBytes(n.resources.memory),
        gpu: n.resources.gpu,
      },
      parameters,
      secrets: n.secrets,
      requiresAuth: n.requiresAuth,
      timeoutMs: durationToMs(n.timeout),
      maxInFlight: n.maxInFlight,
      ...(n.http ? { http: n.http } : {}),
      metricsPort: n.metricsPort,
      ...(n.batching
        ? { batching: { ...BATCHING_DEFAULTS, ...definedOnly(n.batching) }, batchingDeclared: definedOnly(n.batching) }
        : {}),
      ...(min < max ? { autoscale: autoscalePolicy(n) } : {}),
      subjectPrefix: g.subjectPrefix,
      calls,
      routes,
    };
  }
  return deepFreeze({
    name: g.name,
    file,
    root,
    subjectPrefix: g.subjectPrefix,
    nodes,
    graphs: g.graphs,
    defaultGraphs: g.defaultGraphs,
  });
}

/** graph.config.ts of the project of the working directory (runtime/project.ts), else this package's. */
export const DEFAULT_GRAPH_FILE = join(projectRoot(), GRAPH_FILE_NAME);

/** Imports a graph file (default: the repo's graph.config.ts, or SG_GRAPH_FILE) and resolves it. */
export async function loadGraph(
  file: string = process.env.SG_GRAPH_FILE || DEFAULT_GRAPH_FILE,
): Promise<ResolvedGraph> {
  const abs = resolve(file);
  const mod = (await import(pathToFileURL(abs).href)) as { default?: unknown };
  if (mod.default === undefined)
    throw new GraphConfigError([
      { path: "", message: `${abs} has no default export (export default defineGraph({...}))` },
    ]);
  return resolveGraph(mod.default, abs);
}
