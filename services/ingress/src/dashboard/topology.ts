/**
 * The dashboard's drawing of the graph, from the resolved graph config alone (pure: no NATS, no clock).
 *
 * Nodes: the nodes of the running graph (SG_ACTIVE_NODES, else every node of graph.config.ts). Edges, one per
 * (from, to) pair:
 *  - the HTTP node serving the dashboard: its routes to its first nodes, labelled by route (`POST /classify`);
 *  - any other node: each call graph.config.ts declares for it (subject parameters, `calls`), labelled by
 *    endpoint, and each `dependsOn` (deployment co-scheduling, drawn even when no subject names the target).
 * Columns: a node's longest distance from a node nothing points at (the way in), so every edge goes right. Within
 * a column, nodes are ordered by the mean position of their callers in earlier columns (the barycenter heuristic of
 * layered drawing), which keeps edges from crossing in the usual fan-out graphs; ties by name.
 */
import type { ResolvedGraph } from "../../../../runtime/index.ts";

/** What the page shows of a node, apart from its live figures. */
export interface TopologyNode {
  name: string;
  /** The service module's folder name (`ingress`, `infer`, `ab-router`, `variant`...): what the node is. */
  kind: string;
  description: string;
  replicas: { min: number; max: number };
  /** The autoscale policy of a node with replicas [min, max] (min < max): metric and target per replica. */
  autoscale: { metric: string; target: number } | null;
  http: boolean;
  /** It batches requests (`batching` in the config, or infer): the page shows its batch figures. */
  batching: boolean;
  /** 0 for the way in, then one more per hop. */
  column: number;
}

export interface TopologyEdge {
  from: string;
  to: string;
  /** Routes (from the HTTP node) or endpoints the source calls; empty for a dependsOn-only edge. */
  via: string[];
  dependsOn: boolean;
}

export interface Topology {
  graph: string;
  nodes: TopologyNode[];
  edges: TopologyEdge[];
}

/** A route of the HTTP node to a first node of the graph. */
export interface RouteEdge {
  label: string;
  node: string;
}

/** The node an in-graph subject belongs to (`<prefix>.<node>.<endpoint>`), or undefined for any other value. */
export function nodeOfSubject(
  graph: Pick<ResolvedGraph, "subjectPrefix">,
  value: string,
): { node: string; endpoint: string } | undefined {
  const p = `${graph.subjectPrefix}.`;
  if (!value.startsWith(p)) return undefined;
  const [node, endpoint] = value.slice(p.length).split(".");
  return node && endpoint ? { node, endpoint } : undefined;
}

/**
 * The graph as the page draws it. `nodes`: the running ones (default: all); `self`: the HTTP node serving the page
 * and its routes, whose edges replace the ones its parameters would give.
 */
export function topologyOf(
  graph: ResolvedGraph,
  opts: { nodes?: Iterable<string>; self?: { node: string; routes: readonly RouteEdge[] } } = {},
): Topology {
  const names = [...(opts.nodes ?? Object.keys(graph.nodes))].filter((n) => graph.nodes[n] !== undefined);
  const present = new Set(names);
  const edges = new Map<string, TopologyEdge>();
  const edge = (from: string, to: string): TopologyEdge | undefined => {
    if (!present.has(to) || from === to) return undefined;
    const key = `${from}\0${to}`;
    let e = edges.get(key);
    if (!e) edges.set(key, (e = { from, to, via: [], dependsOn: false }));
    return e;
  };
  const addVia = (e: TopologyEdge | undefined, via: string): void => {
    if (e && !e.via.includes(via)) e.via.push(via);
  };
  for (const name of names) {
    const node = graph.nodes[name]!;
    if (opts.self?.node === name) {
      for (const r of opts.self.routes) addVia(edge(name, r.node), r.label);
    } else {
      // The calls graph.config.ts declares (subject parameters, `calls`, routes): the edges the broker permits.
      for (const c of node.calls) addVia(edge(name, c.node), "route" in c.via ? c.via.route : c.endpoint);
    }
    for (const d of node.dependsOn) {
      const e = edge(name, d);
      if (e) e.dependsOn = true;
    }
  }
  const edgeList = [...edges.values()];
  const columns = columnsOf(names, edgeList);
  const nodes: TopologyNode[] = names.map((name) => {
    const n = graph.nodes[name]!;
    return {
      name,
      kind: n.service.split("/").filter(Boolean).pop() ?? name,
      description: n.description,
      replicas: { min: n.replicas.min, max: n.replicas.max },
      autoscale: n.autoscale ? { metric: n.autoscale.metric, target: n.autoscale.target } : null,
      http: n.http !== undefined,
      batching: n.batching !== undefined || n.service.endsWith("/infer"),
      column: columns.get(name) ?? 0,
    };
  });
  return { graph: graph.name, nodes: orderInColumns(nodes, edgeList), edges: edgeList };
}

/** Longest path from a source (a node no edge points at); a cycle (which loadGraph refuses for dependsOn) stops at its first revisit. */
export function columnsOf(
  names: readonly string[],
  edges: readonly Pick<TopologyEdge, "from" | "to">[],
): Map<string, number> {
  const out = new Map<string, number>();
  const incoming = new Map<string, string[]>();
  for (const e of edges) incoming.set(e.to, [...(incoming.get(e.to) ?? []), e.from]);
  const visit = (n: string, path: Set<string>): number => {
    const known = out.get(n);
    if (known !== undefined) return known;
    if (path.has(n)) return 0;
    path.add(n);
    const c = Math.max(-1, ...(incoming.get(n) ?? []).map((p) => visit(p, path))) + 1;
    path.delete(n);
    out.set(n, c);
    return c;
  };
  for (const n of names) visit(n, new Set());
  return out;
}

/** Nodes sorted by column, and within a column by the mean relative position of their callers in earlier columns. */
function orderInColumns<N extends { name: string; column: number; http?: boolean }>(
  nodes: readonly N[],
  edges: readonly Pick<TopologyEdge, "from" | "to">[],
): N[] {
  const byColumn = new Map<number, N[]>();
  for (const n of nodes) byColumn.set(n.column, [...(byColumn.get(n.column) ?? []), n]);
  const place = new Map<string, { column: number; at: number }>();
  const out: N[] = [];
  for (const c of [...byColumn.keys()].sort((a, b) => a - b)) {
    const key = (n: N): number => {
      const ps = edges
        .filter((e) => e.to === n.name)
        .map((e) => place.get(e.from))
        .filter((p): p is { column: number; at: number } => p !== undefined && p.column < c);
      return ps.length ? ps.reduce((a, p) => a + p.at, 0) / ps.length : -1;
    };
    const col = byColumn
      .get(c)!
      .map((n) => ({ n, k: key(n) }))
      .sort(
        (a, b) =>
          a.k - b.k || Number(b.n.http ?? false) - Number(a.n.http ?? false) || a.n.name.localeCompare(b.n.name),
      );
    col.forEach(({ n }, i) => place.set(n.name, { column: c, at: (i + 0.5) / col.length }));
    out.push(...col.map(({ n }) => n));
  }
  return out;
}
