/**
 * servegraph status [--watch [seconds]] [--json] [--nats url]
 *
 * Every node of the running graph, from ADR-32 discovery ($SRV.INFO and $SRV.STATS, one answer per replica;
 * runtime/graph-status.ts): replicas and the hosts they run on, in-flight, requests, errors, p50/p99 latency, batch
 * fill where a node batches, metrics URLs, and per autoscaled node the autoscaler's metric and target, current and
 * desired replicas, whether `servegraph scale` pinned it, and its last decision with the reason and time: asked of
 * each `servegraph up` over its control service (`{op: "autoscaler"}`, ops/autoscaler.ts), the full `up` and the
 * `up` of every host that runs replicas; without an answer (no `up` runs, an older one) that part is left out.
 * Finds the graph that `servegraph up` started through its state file (and logs in as its ops user when `up`
 * runs its own broker); NATS_URL or --nats points elsewhere.
 * The `servegraph-ops` control service of `servegraph up` is reported apart from the nodes.
 *
 * Exit codes: 0 when at least one node answered, 1 when none did or NATS is unreachable, 2 for bad usage.
 */
import { parseArgs } from "node:util";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  collectStatus,
  connectNats,
  createClient,
  CONTROL_SERVICE,
  type GraphStatus as NodesStatus,
} from "../../runtime/index.ts";
import { OPS_CONTROL_SUBJECT, opsControlSubjectOf } from "../../subjects/names.ts";
import { AutoscalerSnapshot, OpsControl } from "../../subjects/ops.ts";
import { readState, resolveNatsUrl, opsCredentials } from "../state.ts";

export type { NodeStatus } from "../../runtime/index.ts";

/** The nodes' status plus what each `servegraph up` autoscaler reports (one entry per host that answered). */
export type GraphStatus = NodesStatus & { autoscalers?: AutoscalerSnapshot[] };

/** How long status waits for an `up` to answer `{op: "autoscaler"}`. */
const AUTOSCALER_ASK_MS = 1000;

const DEFAULT_WATCH_S = 2;

const ms = (x: number | null): string =>
  x === null ? "-" : x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  return rows.map((r) =>
    r
      .map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]! + 2)))
      .join("")
      .trimEnd(),
  );
}

export function formatStatus(s: GraphStatus): string {
  const head = `servegraph status  graph ${s.graph ?? "?"}  nats ${s.nats}  ${s.at.replace("T", " ").replace(/\.\d+Z$/, "Z")}`;
  if (s.nodes.length === 0)
    return `${head}\n\nno node answered on ${s.nats}: is \`servegraph up\` running (or NATS_URL set to its server)?\n`;
  // A node at zero that its activator holds is idle, not down.
  const atZero = new Set(
    (s.autoscalers ?? []).flatMap((a) => a.nodes.filter((n) => n.scale_to_zero && n.replicas === 0).map((n) => n.node)),
  );
  const rows: string[][] = [
    ["NODE", "REPLICAS", "HOSTS", "IN-FLIGHT", "REQUESTS", "ERRORS", "P50 ms", "P99 ms", "BATCH FILL", "METRICS"],
  ];
  const onSoftware = (b: { adapter: string }): boolean => b.adapter.startsWith("software");
  for (const n of s.nodes) {
    const batch = n.batch
      ? `${(n.batch.batch_fill * 100).toFixed(0)}% (avg ${n.batch.avg_batch_size.toFixed(1)}/${n.batch.max_batch_size}, ${n.batch.execution_provider}${onSoftware(n.batch) ? " on a software adapter" : ""}${n.batch.queue_depth ? `, queued ${n.batch.queue_depth}` : ""})`
      : "-";
    const served = n.endpoints.length > 0;
    rows.push([
      n.node,
      n.replicas === 0 ? (atZero.has(n.node) ? "0 (idle)" : "0 DOWN") : String(n.replicas),
      Object.entries(n.hosts)
        .map(([h, c]) => `${h}:${c}`)
        .join(" ") || "-",
      served ? String(n.in_flight) : "-",
      served ? String(n.requests) : "-",
      served ? String(n.errors) : "-",
      ms(n.p50_ms),
      ms(n.p99_ms),
      batch,
      n.metrics_urls.length > 1 ? `${n.metrics_urls[0]} (+${n.metrics_urls.length - 1})` : (n.metrics_urls[0] ?? "-"),
    ]);
  }
  const lines = [head, "", ...table(rows)];
  const http = s.nodes.filter((n) => n.http_url);
  if (http.length)
    lines.push(
      "",
      ...http.map((n) => `${n.node} serves HTTP at ${n.http_url} (its request metrics: ${n.metrics_urls[0] ?? "-"})`),
    );
  for (const n of s.nodes) {
    if (n.batch?.adapter)
      lines.push(
        "",
        `${n.node} runs on ${n.batch.execution_provider}, adapter ${n.batch.adapter}${onSoftware(n.batch) ? " (the model runs on the CPU through Vulkan: slower than the cpu provider)" : ""}`,
      );
  }
  for (const n of s.nodes) {
    if (!n.batch?.provider_fallbacks.length) continue;
    lines.push(
      "",
      `${n.node} runs on ${n.batch.execution_provider}; providers tried first:`,
      ...n.batch.provider_fallbacks.map((f) => `  ${f.provider}: ${f.reason}`),
    );
  }
  const failing = s.nodes.flatMap((n) =>
    n.endpoints.filter((e) => e.last_error).map((e) => `${n.node}.${e.name}: ${e.last_error}`),
  );
  if (failing.length) lines.push("", "last errors:", ...failing.map((f) => `  ${f}`));
  for (const a of s.autoscalers ?? []) {
    if (!a.nodes.length) continue;
    const arows: string[][] = [["NODE", "METRIC", "TARGET", "REPLICAS", "DESIRED", "MODE", "LAST DECISION"]];
    for (const n of a.nodes) {
      const value =
        n.value === null ? "-" : n.metric === "batchFill" ? `${(n.value * 100).toFixed(0)}%` : String(n.value);
      const target = n.metric === "batchFill" ? `${(n.target * 100).toFixed(0)}%` : `${n.target}/replica`;
      const mode =
        n.pinned !== null
          ? `pinned at ${n.pinned}`
          : n.activator === "armed"
            ? "auto, at zero (activator holds requests)"
            : n.activator === "waking"
              ? `auto, waking (${n.held} held)`
              : "auto";
      const d = n.last_decision;
      const last = d
        ? `${d.at.replace("T", " ").replace(/\.\d+Z$/, "Z")} ${d.from} -> ${d.to} (${d.by}): ${d.reason}`
        : "-";
      arows.push([
        n.node,
        `${n.metric} ${value}`,
        target,
        `${n.replicas} [${n.min}, ${n.max}]`,
        n.desired === null ? "-" : String(n.desired),
        mode,
        last,
      ]);
    }
    lines.push("", `autoscaler of host ${a.host} (every ${a.tick_ms} ms):`, ...table(arows).map((l) => `  ${l}`));
  }
  if (s.control.replicas || s.control.pid) {
    lines.push(
      "",
      `control: servegraph up${s.control.pid ? ` (pid ${s.control.pid}, started ${s.control.started_at ?? "?"})` : ` (${CONTROL_SERVICE})`}`,
    );
  }
  return lines.join("\n") + "\n";
}

/**
 * The autoscaler snapshot of the full `up` (plain control subject) and of the `up` of every host that runs a
 * replica (its own control subject), one per host; an `up` that does not answer is left out.
 */
async function askAutoscalers(nc: NatsConnection, s: NodesStatus): Promise<AutoscalerSnapshot[]> {
  const hosts = new Set(s.nodes.flatMap((n) => n.replica_list.map((r) => r.host)).filter((h) => h !== "?"));
  const subjects = [OPS_CONTROL_SUBJECT, ...[...hosts].map(opsControlSubjectOf)];
  const client = createClient(nc, { caller: "servegraph-status", defaultTimeoutMs: AUTOSCALER_ASK_MS });
  const answers = await Promise.all(
    subjects.map(async (subject) => {
      try {
        const a = AutoscalerSnapshot.safeParse(await client.call(OpsControl, subject, { op: "autoscaler" }));
        return a.success ? a.data : undefined;
      } catch {
        return undefined; // no `up` there, or one that does not know the op
      }
    }),
  );
  const byHost = new Map<string, AutoscalerSnapshot>();
  for (const a of answers) if (a && !byHost.has(a.host)) byHost.set(a.host, a);
  return [...byHost.values()];
}

/** `--watch` takes an optional number of seconds: `--watch`, `--watch 5`, `--watch=5`. */
function splitWatch(argv: string[]): { args: string[]; watchS: number | undefined } {
  const args: string[] = [];
  let watchS: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--watch" || a === "-w") {
      const next = argv[i + 1];
      if (next !== undefined && /^\d+(\.\d+)?$/.test(next)) {
        watchS = Number(next);
        i++;
      } else watchS = DEFAULT_WATCH_S;
    } else if (a.startsWith("--watch=")) {
      watchS = Number(a.slice("--watch=".length));
    } else args.push(a);
  }
  return { args, watchS };
}

export async function run(argv: string[]): Promise<number> {
  const { args, watchS } = splitWatch(argv);
  let values: { json?: boolean; nats?: string; graph?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        json: { type: "boolean" },
        nats: { type: "string" },
        graph: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    process.stderr.write(
      `${err instanceof Error ? err.message : String(err)}\nusage: servegraph status [--watch [seconds]] [--json] [--nats url]\n`,
    );
    return 2;
  }
  if (values.help) {
    process.stdout.write("usage: servegraph status [--watch [seconds]] [--json] [--nats url]\n");
    return 0;
  }
  if (watchS !== undefined && !(watchS >= 0.2 && watchS <= 3600)) {
    process.stderr.write("--watch takes a number of seconds within 0.2..3600\n");
    return 2;
  }
  const natsUrl = resolveNatsUrl(values.nats);
  // The nodes `servegraph up` started, so a node with no replica left still shows (as DOWN).
  const state = readState();
  const ours = state && state.natsUrl === natsUrl ? state : undefined;
  const expected = ours?.nodes ?? [];
  const collect = async (): Promise<GraphStatus> => {
    const s: GraphStatus = await collectStatus(nc, natsUrl, expected);
    if (ours) Object.assign(s.control, { pid: ours.pid, started_at: ours.startedAt });
    const autoscalers = await askAutoscalers(nc, s);
    if (autoscalers.length) s.autoscalers = autoscalers;
    return s;
  };

  let nc: NatsConnection;
  try {
    // Fails at once when nothing listens; under --watch it then reconnects for as long as it runs.
    nc = await connectNats({
      servers: natsUrl,
      credentials: opsCredentials(natsUrl, state),
      name: "servegraph-status",
      timeoutMs: 3000,
      waitOnFirstConnect: false,
    });
  } catch (err) {
    const msg = `cannot reach NATS at ${natsUrl} (${err instanceof Error ? err.message : String(err)}): start the graph with \`servegraph up\`, or set NATS_URL`;
    if (values.json)
      process.stdout.write(JSON.stringify({ ok: false, error: { code: "UNAVAILABLE", message: msg } }) + "\n");
    else process.stderr.write(msg + "\n");
    return 1;
  }
  try {
    if (watchS === undefined) {
      const s = await collect();
      process.stdout.write(values.json ? JSON.stringify(s) + "\n" : formatStatus(s));
      return s.nodes.some((n) => n.replicas > 0) ? 0 : 1;
    }
    // Watch: redraw in place until Ctrl-C (JSON: one line per refresh).
    let stop!: () => void;
    const stopped = new Promise<void>((r) => {
      stop = r;
    });
    const onSignal = (): void => stop();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      for (let done = false; !done;) {
        const s = await collect();
        if (values.json) process.stdout.write(JSON.stringify(s) + "\n");
        else process.stdout.write(`\x1b[H\x1b[2J${formatStatus(s)}\n(every ${watchS} s; Ctrl-C stops)\n`);
        let t: NodeJS.Timeout | undefined;
        done = await Promise.race([
          stopped.then(() => true),
          new Promise<boolean>((r) => {
            t = setTimeout(() => r(false), watchS * 1000);
          }),
        ]);
        clearTimeout(t);
      }
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
    return 0;
  } finally {
    await nc.close().catch(() => {});
  }
}
