/** servegraph up [graph...]: the embedded single-machine deployment of a graph. */
import { parseArgs } from "node:util";
import { checkParams, connectNats, createLogger, createService, GraphConfigError, loadGraph, nodesOfGraphs } from "../../runtime/index.ts";
import { reportConfigError } from "../output.ts";
import { OPS_CONTROL_SUBJECT } from "../../subjects/names.ts";
import { z } from "zod";
import { startNats, type LocalNats } from "../nats-server.ts";
import { startSupervisor } from "../supervisor.ts";
import { clearState, writeState } from "../state.ts";

const ScaleRequest = z.strictObject({ op: z.literal("scale"), node: z.string(), replicas: z.number().int() });

/** The HTTP routes the ingress serves for the running nodes (it registers only those). */
function routesOf(running: readonly string[]): string[] {
  const out: string[] = [];
  if (running.includes("greeter-proxy")) out.push("GET  /greeting/:name");
  if (running.includes("preprocess")) out.push("POST /classify   (JSON {image_url, top_k} or an image body)", "GET  /labels");
  if (running.includes("ab-router")) out.push("GET  /process/:message?user_key=...");
  out.push("GET  /healthz  /readyz  /metrics  /docs");
  return out;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      json: { type: "boolean" }, graph: { type: "string" }, nats: { type: "string" }, port: { type: "string" },
      replicas: { type: "string", multiple: true },
    },
    allowPositionals: true,
  });
  let graph;
  let graphs: string[];
  try {
    graph = await loadGraph(values.graph);
    graphs = positionals.length ? positionals : [...graph.defaultGraphs];
    // Every node's parameters are checked before anything starts: a typo fails here, not in a replica.
    const issues = await checkParams(graph, nodesOfGraphs(graph, graphs));
    if (issues.length) throw new GraphConfigError(issues);
  } catch (err) {
    return reportConfigError(err, values.json);
  }
  const log = createLogger("servegraph");
  const replicas: Record<string, number> = {};
  for (const r of values.replicas ?? []) {
    const [k, v] = r.split("=");
    if (!k || !Number.isInteger(Number(v))) throw new Error(`bad --replicas ${r}: expected node=N`);
    replicas[k] = Number(v);
  }

  let nats: LocalNats | undefined;
  const natsUrl = values.nats || process.env.NATS_URL || (nats = await startNats()).url;
  if (nats) log.info("started nats-server", { url: natsUrl });
  const nc = await connectNats({ name: "servegraph-up", servers: natsUrl });
  const ingressEnv: Record<string, Record<string, string>> = {};
  for (const [name, n] of Object.entries(graph.nodes)) if (n.http && values.port !== undefined) ingressEnv[name] = { PORT: values.port };

  let sup;
  try {
    sup = await startSupervisor({ graph, graphs, natsUrl, nc, nodeEnv: ingressEnv, replicas, log: (l) => log.info(l) });
  } catch (err) {
    await nc.close();
    await nats?.stop();
    throw err;
  }

  // Ask each HTTP node where it listens.
  let ingressUrl: string | undefined;
  for (const name of sup.nodes.filter((n) => graph.nodes[n]!.http)) {
    const info = await nc.request(`$SRV.INFO.${name}`, new Uint8Array(0), { timeout: 2000 }).catch(() => undefined);
    ingressUrl ??= info ? ((info.json() as { metadata?: Record<string, string> }).metadata?.http_url) : undefined;
  }

  // Control endpoint: `servegraph scale` talks to this supervisor.
  const control = createService(nc, { name: "servegraph-ops", maxInFlight: 4, defaultTimeoutMs: 130_000, log, metadata: { graph: graph.name } });
  control.addEndpoint("control", {
    subject: OPS_CONTROL_SUBJECT,
    handler: async (req) => {
      const r = req.json(ScaleRequest);
      const n = await sup.scale(r.node, r.replicas);
      log.info(`scaled ${r.node}`, { replicas: n });
      return { node: r.node, replicas: n };
    },
  });
  control.announce();
  writeState({ pid: process.pid, natsUrl, ...(ingressUrl ? { ingressUrl } : {}), graphs, nodes: [...sup.nodes], startedAt: new Date().toISOString() });

  const summary = {
    graph: graph.name, graphs, nats: natsUrl, ingress: ingressUrl ?? null,
    nodes: sup.nodes.map((n) => ({ node: n, replicas: sup.replicas(n).length, subjects: `${graph.subjectPrefix}.${n}.*` })),
  };
  if (values.json) {
    process.stdout.write(JSON.stringify(summary) + "\n");
  } else {
    const lines = [
      "",
      `servegraph: ${graphs.join(", ")} up (graph ${graph.name})`,
      `  NATS     ${natsUrl}${nats ? " (embedded)" : ""}`,
      ...(ingressUrl ? [`  HTTP     ${ingressUrl}`] : []),
      "",
      "  node            replicas  subject",
      ...sup.nodes.map((n) => `  ${n.padEnd(16)}${String(sup.replicas(n).length).padEnd(10)}${graph.nodes[n]!.http ? ingressUrl ?? "" : `${graph.subjectPrefix}.${n}.*`}`),
      "",
      ...(ingressUrl ? routesOf(sup.nodes).map((r) => `  ${r}`) : []),
      ...(ingressUrl && sup.nodes.includes("greeter-proxy") ? ["", `  try: curl ${ingressUrl}/greeting/ada`] : []),
      "  Ctrl-C stops everything.",
      "",
    ];
    process.stdout.write(lines.join("\n") + "\n");
  }

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (sig: string): void => {
      if (stopping) return;
      stopping = true;
      log.info(`${sig}: stopping the graph`);
      void (async () => {
        await control.stop({ maxWaitMs: 1000 });
        await sup.stop();
        await nc.drain().catch(() => {});
        await nats?.stop();
        clearState(process.pid);
        log.info("stopped");
        resolve();
      })();
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
  });
  return 0;
}
