/**
 * servegraph: the ops way into a serving graph.
 *   new node <name>               scaffold a node of one's own: endpoint, service, test, graph.config.ts entries
 *   up [graph...]                 start a local nats-server (or use NATS_URL) and every node's replicas, supervised
 *   request <subject> <json|@file|->  send one NATS request and print the reply (the "direct NATS" way in)
 *   check                         validate graph.config.ts and print the resolved graph
 *   status [--watch]              every node's replicas, load and latency, from $SRV.INFO/STATS
 *   scale <node> <replicas>|--auto  pin a running node's replica count (within its [min, max]) or hand it back to the autoscaler
 *   manifests [--out dir]         Kubernetes manifests (3-server NATS cluster, a Deployment per node, KEDA/HPA), alert rules, Grafana dashboard
 *   doctor [--install-cuda]       which execution providers the infer node can use on this host, and why not
 * Every command takes --json for machine-readable output and --graph <file> for another graph file.
 */
export const COMMANDS = ["new", "up", "request", "check", "status", "scale", "manifests", "doctor"] as const;
/** Verbs of the performance tools (tools/perf), not of the product: `npm run bench`, `npm run soak`. */
const PERF_VERBS = ["bench", "soak"] as const;
type Command = (typeof COMMANDS)[number];

const USAGE = `usage: servegraph <command> [options]

commands:
  new node <name>                   a node of your own: its endpoint (subjects/<name>.ts), services/<name>/, a
    [--description text] [--no-lock]  test, and in graph.config.ts the node, a graph of its own and POST /<name>
  up [graph...]                     start the graph(s) locally (default: ${"all default graphs"}); Ctrl-C stops
    [--port n] [--replicas node=n]  everything. Runs its own nats-server (per-node users, restarted if it dies)
    [--keep-going]                  unless --nats. A node whose replica exits within 10 s of starting 5 times in
                                    a row cannot start: up stops everything and exits 1; with --keep-going it
                                    reports the node and keeps the rest running
    [--param node.KEY=VALUE]        override a node parameter for this run (repeatable; checked like the file)
    [--only node=n,...] [--host h]  worker host: start only these nodes, joining the graph on --nats (no local
                                    broker, no closure); replicas report host h (default: the hostname)
    [--autoscale-tick-ms n]         how often the autoscaler reads $SRV.STATS (default 1000)
    [--watch]                       dev loop: a change in a node's service folder (or subjects/, runtime/)
                                    replaces its replicas one at a time, the old ones serving until the new answer
  request <subject> <json|@file|->  send a NATS request, print the reply
  check                             validate graph.config.ts, print the resolved graph
  status [--watch]                  nodes, replicas by host, in-flight, requests, errors, latency, batch fill,
                                    the autoscaler's target and last decision
  scale <node> <replicas> [--host h]  pin a running node's replicas (within its [min, max]; --host: that host's up)
  scale <node> --auto               hand the node back to the autoscaler
  manifests [--out dir]             Kubernetes: 3-server NATS cluster, a Deployment per node on its workspace image,
    [--registry r] [--tag t]        KEDA ScaledObjects (or --autoscaler hpa), alert rules, a Grafana dashboard
    [--autoscaler keda|hpa]
  doctor [--install-cuda]           which execution providers infer can use on this host, and why not

common options: --json  --graph <file>  --nats <url> (or NATS_URL)`;

/** Commands whose own --help says more than their lines of USAGE. */
const OWN_HELP: readonly Command[] = ["status", "manifests"];

/** The lines of USAGE for `verb` (its entries and their continuation lines) and the common options. */
export function usageOf(verb: Command): string {
  const lines = USAGE.split("\n");
  const out: string[] = [];
  let inEntry = false;
  for (const l of lines) {
    if (/^  \S/.test(l)) inEntry = l.slice(2).split(" ")[0] === verb;
    else if (!/^    /.test(l)) inEntry = false;
    if (inEntry) out.push(l);
  }
  return `usage: servegraph ${verb} [options]\n\n${out.join("\n")}\n\n${lines[lines.length - 1]}`;
}

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (!verb || verb === "-h" || verb === "--help" || verb === "help") {
    process.stdout.write(USAGE + "\n");
    return verb ? 0 : 2;
  }
  if ((PERF_VERBS as readonly string[]).includes(verb)) {
    process.stderr.write(
      `${verb} is one of the performance tools, not of servegraph itself: npm run ${verb} -- ${rest.join(" ")}\n(tools/perf/cli.ts; a production install, npm ci --omit=dev, has none of them)\n`,
    );
    return 2;
  }
  if (!COMMANDS.includes(verb as Command)) {
    process.stderr.write(`unknown command "${verb}"\n\n${USAGE}\n`);
    return 2;
  }
  const cmd = verb as Command;
  const beforeDashes = rest.indexOf("--") === -1 ? rest : rest.slice(0, rest.indexOf("--"));
  if (!OWN_HELP.includes(cmd) && (beforeDashes.includes("--help") || beforeDashes.includes("-h"))) {
    process.stdout.write(usageOf(cmd) + "\n");
    return 0;
  }
  const mod = (await import(`./commands/${verb}.ts`)) as { run(argv: string[]): Promise<number> };
  return mod.run(rest);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`servegraph: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
