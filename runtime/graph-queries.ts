/**
 * Questions asked of a resolved graph: a node's subjects, which nodes a sub-graph starts (dependsOn closures), a
 * secret's value, and the graph with a parameter overridden for one run. runtime/config.ts builds the graph.
 */
import { readFileSync } from "node:fs";
import { endpointSubject } from "../subjects/names.ts";
import { GraphConfigError, deepFreeze, type ResolvedGraph, type ResolvedNode, type ResolvedSecret } from "./config.ts";

/** The subject of one endpoint of a node of this graph (pattern A: read from the graph in-module). */
export function subjectFor(graph: ResolvedGraph, node: string, endpoint: string): string {
  if (!graph.nodes[node]) throw new TypeError(`unknown node ${node}`);
  return endpointSubject(node, endpoint, graph.subjectPrefix);
}

/** Nodes of the named sub-graphs plus their dependsOn closure, dependencies first. */
export function closure(graph: ResolvedGraph, roots: readonly string[]): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (n: string): void => {
    if (seen.has(n)) return;
    seen.add(n);
    for (const d of graph.nodes[n]!.dependsOn) visit(d);
    order.push(n);
  };
  for (const r of roots) visit(r);
  return order;
}

export function nodesOfGraphs(graph: ResolvedGraph, graphNames: readonly string[]): string[] {
  const roots: string[] = [];
  for (const gname of graphNames) {
    const sg = graph.graphs[gname];
    if (!sg)
      throw new GraphConfigError([
        {
          path: `graphs.${gname}`,
          message: `unknown graph "${gname}"; known: ${Object.keys(graph.graphs).join(", ")}`,
        },
      ]);
    roots.push(...sg.nodes);
  }
  return closure(graph, roots);
}

/** Reads a secret's value from the launcher's environment or a file. Never log the result. */
export function readSecret(s: ResolvedSecret, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (s.env !== undefined && env[s.env]) return env[s.env];
  if (s.file !== undefined) {
    try {
      return readFileSync(s.file, "utf8").replace(/\r?\n$/, "");
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/**
 * The graph with some node parameters replaced for one run (`servegraph up --param node.KEY=VALUE`): `NODE.KEY=VALUE`
 * strings, checked for shape and node here; the values are then checked like the file's by the node's schema.
 */
export function withParameterOverrides(graph: ResolvedGraph, overrides: readonly string[]): ResolvedGraph {
  if (overrides.length === 0) return graph;
  const issues: { path: string; message: string }[] = [];
  const nodes: Record<string, ResolvedNode> = { ...graph.nodes };
  for (const o of overrides) {
    const m = /^([A-Za-z0-9_-]+)\.([A-Z_][A-Z0-9_]*)=(.*)$/s.exec(o);
    if (!m) {
      issues.push({ path: `--param ${o}`, message: "expected node.KEY=VALUE (KEY an env var name)" });
      continue;
    }
    const [, node, key, value] = m as unknown as [string, string, string, string];
    const n = nodes[node];
    if (!n) {
      issues.push({
        path: `--param ${o}`,
        message: `unknown node "${node}"; known: ${Object.keys(graph.nodes).join(", ")}`,
      });
      continue;
    }
    nodes[node] = { ...n, parameters: { ...n.parameters, [key]: value } };
  }
  if (issues.length) throw new GraphConfigError(issues);
  return deepFreeze({ ...graph, nodes });
}
