/**
 * `servegraph manifests [graph...] [--out dir] [--registry r] [--tag t] [--image ref] [--autoscaler keda|hpa]
 *  [--prometheus-url url] [--namespace ns] [--json] [--graph file]`
 *
 * Deployment files for the named graphs (default: the graph file's defaultGraphs), derived from the resolved graph
 * only: a 3-server NATS cluster whose users and permissions come from the graph's edges, one Deployment per node
 * of the dependency closure on the node's own image (deploy/containers/Containerfile), its KEDA ScaledObject or
 * HPA where replicas is [min, max], a Service for a node with `http`, Secret templates, a PrometheusRule; and,
 * under --out, the same alert rules as a Prometheus rules file and a Grafana dashboard. The objects are built in
 * ops/manifests/.
 *
 * Output is deterministic except for the generated NATS passwords. Without --out the YAML goes to stdout (with
 * --json: the objects as a JSON array). With --out: secrets.yaml, nats.yaml, <node>.yaml, monitoring.yaml,
 * prometheus-rules.yaml and grafana-dashboard.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadGraph, nodesOfGraphs } from "../../runtime/index.ts";
import {
  buildManifests,
  grafanaDashboard,
  prometheusRules,
  renderYaml,
  yamlDocument,
  DEFAULT_PROMETHEUS_URL,
  DEFAULT_TAG,
  type Autoscaler,
  type Manifest,
} from "../manifests/index.ts";
import { reportConfigError } from "../output.ts";

const USAGE = `usage: servegraph manifests [graph...] [options]

Kubernetes deployment files for the graphs (default: the graph file's defaultGraphs) and their dependency closure.

options:
  --out <dir>              write one file per part (secrets.yaml, nats.yaml, <node>.yaml, monitoring.yaml,
                           prometheus-rules.yaml, grafana-dashboard.json) instead of YAML on stdout
  --registry <host/path>   image registry of the node images: <registry>/servegraph-<workspace>:<tag>
  --tag <tag>              image tag (default ${DEFAULT_TAG}, the package version)
  --image <ref>            one image for every node instead of the per-workspace images
  --autoscaler keda|hpa    autoscaler of nodes with replicas [min, max] (default keda; an HPA never goes below 1)
  --prometheus-url <url>   Prometheus that KEDA queries (default ${DEFAULT_PROMETHEUS_URL})
  --namespace <ns>         namespace of every object
  --graph <file>           another graph file
  --json                   the objects as JSON (or, with --out, a summary)`;

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        graph: { type: "string" },
        out: { type: "string" },
        image: { type: "string" },
        registry: { type: "string" },
        tag: { type: "string" },
        autoscaler: { type: "string" },
        "prometheus-url": { type: "string" },
        namespace: { type: "string" },
      },
      allowPositionals: true,
    });
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  let manifests: Manifest[];
  let files: Record<string, string>;
  try {
    const graph = await loadGraph(values.graph);
    const names = positionals.length ? positionals : graph.defaultGraphs;
    manifests = buildManifests(graph, names, {
      ...(values.image !== undefined ? { image: values.image } : {}),
      ...(values.registry !== undefined ? { registry: values.registry } : {}),
      ...(values.tag !== undefined ? { tag: values.tag } : {}),
      ...(values.autoscaler !== undefined ? { autoscaler: values.autoscaler as Autoscaler } : {}),
      ...(values["prometheus-url"] !== undefined ? { prometheusUrl: values["prometheus-url"] } : {}),
      ...(values.namespace !== undefined ? { namespace: values.namespace } : {}),
    });
    const nodes = nodesOfGraphs(graph, names);
    files = {
      "prometheus-rules.yaml": yamlDocument(prometheusRules(graph, nodes), [
        `Prometheus alert rules of graph ${graph.name}, written by servegraph manifests. Check: promtool check rules <this file>`,
      ]),
      "grafana-dashboard.json": JSON.stringify(grafanaDashboard(graph, nodes), null, 2) + "\n",
    };
  } catch (err) {
    return reportConfigError(err, values.json);
  }
  if (values.out === undefined) {
    process.stdout.write(
      values.json
        ? JSON.stringify(
            manifests.map((m) => m.object),
            null,
            2,
          ) + "\n"
        : renderYaml(manifests),
    );
    return 0;
  }
  const dir = resolve(values.out);
  mkdirSync(dir, { recursive: true });
  const yamlFiles = [...new Set(manifests.map((m) => m.file))];
  for (const f of yamlFiles)
    writeFileSync(join(dir, f), renderYaml(manifests.filter((m) => m.file === f)), {
      mode: f === "secrets.yaml" ? 0o600 : 0o644,
    });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  const all = [...yamlFiles, ...Object.keys(files)];
  if (values.json)
    process.stdout.write(JSON.stringify({ ok: true, dir, files: all, objects: manifests.length }, null, 2) + "\n");
  else {
    const rest = yamlFiles
      .filter((f) => f !== "secrets.yaml" && f !== "monitoring.yaml")
      .map((f) => `-f ${join(dir, f)}`)
      .join(" ");
    process.stdout.write(
      `wrote ${manifests.length} objects to ${dir}: ${all.join(", ")}\n` +
        `apply the secrets once (new passwords on every run): kubectl apply -f ${join(dir, "secrets.yaml")}\n` +
        `then: kubectl apply ${rest}\n` +
        `with the Prometheus operator: kubectl apply -f ${join(dir, "monitoring.yaml")}; Grafana: import ${join(dir, "grafana-dashboard.json")}\n`,
    );
  }
  return 0;
}
