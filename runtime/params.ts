/**
 * Node parameters, typed. Each service declares its parameters once, as a zod object in its own
 * `src/params.ts` (default export, built with {@link defineParams} and the field helpers below). Parameters
 * reach a replica as env var strings (graph.config.ts values, compiled to strings, or a deployment's env), so
 * every field parses a string; the same parse runs in two places:
 *  - `runNode`, once at start-up: the node gets `ctx.params`, typed, and reads no env var itself;
 *  - `servegraph check` (and `up` before it starts anything), so a typo fails there with its path
 *    (`nodes.preprocess.parameters.PREPROCESS_MODE`), not later in a replica.
 * A params file imports nothing but zod and this module: loading it never loads a node's native dependencies.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { z } from "zod";
import type { ResolvedGraph, ResolvedNode } from "./config.ts";

export type ParamsSchema = z.ZodObject;

/** A service's parameter schema: strict, so an undeclared (e.g. misspelt) parameter is an error too. */
export function defineParams<S extends z.ZodRawShape>(shape: S): z.ZodObject<S, z.core.$strict> {
  return z.strictObject(shape);
}

const DECIMAL = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?$/;

/** Field helpers: each reads the parameter's string value. */
export const param = {
  string: (description: string) => z.string().describe(description),
  /** A NATS subject (graph.config.ts `subjectOf(...)`, resolved). */
  subject: (description: string) =>
    z
      .string()
      .regex(/^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)+$/, "must be a NATS subject like sg.v1.node.endpoint")
      .describe(description),
  number: (description: string, o: { min?: number; max?: number; int?: boolean } = {}) => {
    let n = z.number();
    if (o.int) n = n.int();
    if (o.min !== undefined) n = n.min(o.min);
    if (o.max !== undefined) n = n.max(o.max);
    return z.string().regex(DECIMAL, "must be a decimal number").transform(Number).pipe(n).describe(description);
  },
  bool: (description: string) =>
    z
      .enum(["true", "false", "1", "0"], "must be true or false")
      .transform((v) => v === "true" || v === "1")
      .describe(description),
  oneOf: <const T extends readonly [string, ...string[]]>(values: T, description: string) =>
    z.enum(values, `must be one of ${values.join(", ")}`).describe(description),
};

export interface ParamIssue {
  path: string;
  message: string;
}

/**
 * The parameters a replica of `node` runs with: graph.config.ts values, each overridden by the env var of the
 * same name when set (a deployment controls those), parsed by the service's schema.
 */
export function parseParams<S extends ParamsSchema>(
  schema: S,
  node: ResolvedNode,
  env: NodeJS.ProcessEnv = {},
): { ok: true; params: z.output<S> } | { ok: false; issues: ParamIssue[] } {
  const raw: Record<string, string> = { ...node.parameters };
  for (const k of Object.keys(schema.shape)) {
    const v = env[k];
    if (v !== undefined) raw[k] = v;
  }
  const r = schema.safeParse(raw);
  if (r.success) return { ok: true, params: r.data };
  return {
    ok: false,
    issues: r.error.issues.map((i) => {
      const at = `nodes.${node.name}.parameters${i.path.length ? "." + i.path.join(".") : ""}`;
      if (i.code === "unrecognized_keys")
        return { path: at, message: `not a parameter of ${node.service}: ${i.keys.join(", ")}` };
      const shown = i.path.length === 1 ? raw[String(i.path[0])] : undefined;
      return {
        path: at,
        message: shown === undefined ? i.message : `${i.message} (got ${JSON.stringify(shown.slice(0, 64))})`,
      };
    }),
  };
}

/** Loads the parameter schema of a node's service module (`<service>/src/params.ts`, default export). */
async function loadParamsSchema(graph: ResolvedGraph, node: ResolvedNode): Promise<ParamsSchema> {
  const file = resolve(graph.root, node.service, "src/params.ts");
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (err) {
    throw new Error(
      `cannot load the parameters of ${node.name} from ${file}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  if (!(mod.default instanceof z.ZodObject))
    throw new Error(`${file} must export default a parameter schema (defineParams({...}))`);
  return mod.default as ParamsSchema;
}

export interface EffectiveParam {
  name: string;
  /** The value a replica runs with when no env var overrides it (parsed: numbers, booleans, objects). */
  value: unknown;
  /** graph: graph.config.ts sets it; default: the service's params.ts does (the one place a default lives). */
  from: "graph" | "default";
}

/**
 * Every parameter of a node's service and the value a replica gets: graph.config.ts's where it sets one, else the
 * default in the service's params.ts. graph.config.ts restates no default: what it sets is what differs.
 * Undefined when the schema cannot be loaded or the graph's values do not parse (checkParams says why).
 */
export async function effectiveParams(graph: ResolvedGraph, node: ResolvedNode): Promise<EffectiveParam[] | undefined> {
  let schema: ParamsSchema;
  try {
    schema = await loadParamsSchema(graph, node);
  } catch {
    return undefined;
  }
  const r = parseParams(schema, node);
  if (!r.ok) return undefined;
  const parsed = r.params as Record<string, unknown>;
  return Object.keys(schema.shape).map((name) => ({
    name,
    value: parsed[name],
    from: name in node.parameters ? "graph" : "default",
  }));
}

/**
 * Checks every node's service folder (its entry src/main.ts exists) and parameters (graph.config.ts values) against
 * its service's schema; all issues at once.
 */
export async function checkParams(
  graph: ResolvedGraph,
  nodes: readonly string[] = Object.keys(graph.nodes),
): Promise<ParamIssue[]> {
  const issues: ParamIssue[] = [];
  for (const name of nodes) {
    const node = graph.nodes[name]!;
    // The replica runs src/main.ts: a service folder without one cannot start, whatever its parameters.
    if (!existsSync(node.entry))
      issues.push({
        path: `nodes.${name}.service`,
        message: `${node.service} has no src/main.ts, the node's entry (${node.entry})`,
      });
    let schema: ParamsSchema;
    try {
      schema = await loadParamsSchema(graph, node);
    } catch (err) {
      issues.push({ path: `nodes.${name}.service`, message: err instanceof Error ? err.message : String(err) });
      continue;
    }
    const r = parseParams(schema, node);
    if (!r.ok) issues.push(...r.issues);
  }
  return issues;
}
