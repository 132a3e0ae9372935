import { parseArgs } from "node:util";
import { GraphConfigError, checkParams, effectiveParams, loadGraph, nodesOfGraphs } from "../../runtime/index.ts";
import { reportConfigError } from "../output.ts";

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { json: { type: "boolean" }, graph: { type: "string" } },
    allowPositionals: false,
  });
  let graph;
  try {
    graph = await loadGraph(values.graph);
    // Each node's parameters against its service's schema (services/<name>/src/params.ts).
    const issues = await checkParams(graph);
    if (issues.length) throw new GraphConfigError(issues);
  } catch (err) {
    // The graph file failed: check the parameters and service folders of the nodes that are valid on their own too.
    if (err instanceof GraphConfigError && err.partial && !graph) {
      const more = await checkParams(err.partial).catch(() => []);
      const issues = [
        ...err.issues,
        ...more.filter((m) => !err.issues.some((i) => i.path === m.path && i.message === m.message)),
      ];
      return reportConfigError(new GraphConfigError(issues), values.json);
    }
    return reportConfigError(err, values.json);
  }
  if (values.json) {
    process.stdout.write(JSON.stringify({ ok: true, graph }, null, 2) + "\n");
    return 0;
  }
  const out: string[] = [`graph ${graph.name} (${graph.file}) is valid`, ""];
  for (const [name, g] of Object.entries(graph.graphs)) {
    out.push(`${name}${graph.defaultGraphs.includes(name) ? " (default)" : ""}: ${g.description}`);
    out.push(`  starts: ${nodesOfGraphs(graph, [name]).join(", ")}`);
  }
  out.push("");
  for (const n of Object.values(graph.nodes)) {
    const rep = n.replicas.min === n.replicas.max ? `${n.replicas.min}` : `${n.replicas.min}..${n.replicas.max}`;
    out.push(
      `${n.name}  replicas ${rep}  cpu ${n.resources.cpu}  memory ${n.resources.memory}${n.resources.gpu ? `  gpu ${n.resources.gpu}` : ""}  timeout ${n.timeoutMs} ms  in-flight cap ${n.maxInFlight}`,
    );
    if (n.dependsOn.length) out.push(`  dependsOn: ${n.dependsOn.join(", ")}`);
    for (const r of n.routes)
      out.push(`  route ${r.method} ${r.path} -> ${r.subject}${r.body === "none" ? "" : ` (${r.body} body)`}`);
    const declared = n.calls.filter((c) => "call" in c.via);
    if (declared.length) out.push(`  calls: ${declared.map((c) => c.subject).join(", ")}`);
    // Every parameter, with the default of the service's params.ts where graph.config.ts sets none.
    const params = await effectiveParams(graph, n);
    if (params)
      for (const p of params)
        out.push(
          `  param ${p.name}=${typeof p.value === "object" ? JSON.stringify(p.value) : String(p.value)}${p.from === "default" ? "  (default)" : ""}`,
        );
    else for (const [k, v] of Object.entries(n.parameters)) out.push(`  param ${k}=${v}`);
    for (const [k, s] of Object.entries(n.secrets))
      out.push(
        `  secret ${k} <- ${[s.env && `env ${s.env}`, s.file && `file ${s.file}`].filter(Boolean).join(" or ")}`,
      );
    if (n.batching)
      out.push(
        `  batching: maxBatchSize ${n.batching.maxBatchSize}, maxQueueDelayMs ${n.batching.maxQueueDelayMs}, maxQueueSize ${n.batching.maxQueueSize}`,
      );
  }
  process.stdout.write(out.join("\n") + "\n");
  return 0;
}
