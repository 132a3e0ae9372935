/**
 * `servegraph manifests [graph...] [--out dir] [--image repo/name:tag] [--namespace ns] [--json] [--graph file]`
 *
 * Kubernetes objects for the named graphs (default: the graph file's defaultGraphs), derived from the resolved
 * graph only: a single NATS server whose users and permissions come from the graph's edges, one Deployment per
 * node of the dependency closure (plus an HPA where replicas is [min, max], and a Service for a node with `http`),
 * and Secret templates. The objects are built in ops/manifests/ (kubernetes.ts; the NATS permission policy in
 * nats-permissions.ts).
 *
 * Output is deterministic except for the generated NATS passwords. Without --out the YAML goes to stdout (with
 * --json: the objects as a JSON array). With --out the YAML is written as nats.yaml, secrets.yaml and <node>.yaml.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadGraph } from "../../runtime/index.ts";
import { buildManifests, renderYaml, type Manifest } from "../manifests/index.ts";
import { reportConfigError } from "../output.ts";

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
