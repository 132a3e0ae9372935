/**
 * The graph `servegraph bench` loads, found in this order:
 *  - `--url`: an ingress that is already running; NATS from --nats, else NATS_URL, else the state file of
 *    `servegraph up` when it names the same ingress;
 *  - the graph `servegraph up` started (its state file);
 *  - else a graph of its own: a nats-server and the graphs asked for, as `servegraph up chain classify` would
 *    start them; `close()` stops it.
 *
 * The load stays on this machine: an ingress that is not a loopback address is a usage error. NATS is optional:
 * without it the load still runs, but infer's batch sizes, the stage measurements and the graph's processes
 * (for the CPU split) come from discovery and are missing (a warning says so).
 *
 * What the graph serves comes from the ingress's /readyz: the nodes behind its routes and their replica counts.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats, gather, type ResolvedGraph } from "../../../runtime/index.ts";
import { Discovery } from "../../../subjects/names.ts";
import { startNats, type LocalNats } from "../../../ops/nats-server.ts";
import { readState, opsCredentials } from "../../../ops/state.ts";
import { ingressUrlOf, startSupervisor, type Supervisor } from "../../../ops/supervisor.ts";
import { descendants } from "./cpu.ts";
import { Target } from "./load.ts";

export type TargetSource = "running" | "started" | "url";

export interface BenchTarget {
  readonly source: TargetSource;
  readonly ingressUrl: string;
  /** Discovery connection; undefined when NATS is unknown or unreachable. */
  readonly nc: NatsConnection | undefined;
  /** The graph's processes, to tell its CPU use from other work on the machine. */
  graphPids(): Promise<number[]>;
  /** Closes the NATS connection; stops the graph when bench started it. */
  close(): Promise<void>;
}

export interface TargetOptions {
  url?: string | undefined;
  nats?: string | undefined;
  graph: ResolvedGraph;
  /** Graphs to start when no graph is running. */
  graphs: readonly string[];
  warnings: string[];
  progress: (line: string) => void;
}

/** A request bench refuses to carry out (exit code 2), as opposed to a graph that failed. */
export class BenchUsageError extends Error {}

/** The node behind each target's route: a target is served when that node has a replica. */
const ENTRY_NODE: Record<Target, string> = { [Target.CHAIN]: "greeter-proxy", [Target.CLASSIFY]: "preprocess" };
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);
const NAME = "servegraph-bench";

interface OwnGraph {
  nats: LocalNats;
  nc: NatsConnection;
  sup: Supervisor;
}

async function startOwn(o: TargetOptions): Promise<{ own: OwnGraph; ingressUrl: string | undefined }> {
  o.progress(`no running graph found: starting ${o.graphs.join(" + ")} (nats-server and every node on this machine)`);
  const nats = await startNats();
  const nc = await connectNats({ servers: nats.url, name: NAME });
  const nodeEnv: Record<string, Record<string, string>> = {};
  for (const n of Object.values(o.graph.nodes)) if (n.http) nodeEnv[n.name] = { PORT: "0", HOST: "127.0.0.1" };
  let sup: Supervisor;
  try {
    sup = await startSupervisor({
      graph: o.graph,
      graphs: o.graphs,
      natsUrl: nats.url,
      nc,
      nodeEnv,
      restart: false,
      stdio: "inherit",
      env: { SG_LOG_LEVEL: process.env.SG_LOG_LEVEL ?? "warn" },
      log: o.progress,
    });
  } catch (err) {
    await nc.close().catch(() => {});
    await nats.stop();
    throw err;
  }
  return { own: { nats, nc, sup }, ingressUrl: await ingressUrlOf(nc, o.graph, sup) };
}

export async function openTarget(o: TargetOptions): Promise<BenchTarget> {
  let source: TargetSource;
  let ingressUrl: string | undefined;
  let natsUrl: string | undefined;
  let own: OwnGraph | undefined;
  const state = readState();
  if (o.url) {
    source = "url";
    ingressUrl = o.url.replace(/\/+$/, "");
    natsUrl = o.nats || process.env.NATS_URL || (state?.ingressUrl === ingressUrl ? state.natsUrl : undefined);
  } else if (state?.ingressUrl) {
    source = "running";
    ingressUrl = state.ingressUrl;
    natsUrl = o.nats || state.natsUrl;
  } else {
    source = "started";
    ({ own, ingressUrl } = await startOwn(o));
  }

  let nc = own?.nc;
  const close = async (): Promise<void> => {
    if (own) {
      o.progress("stopping the graph it started");
      await own.sup.stop();
      await own.nc.close().catch(() => {});
      await own.nats.stop();
    } else {
      await nc?.close().catch(() => {});
    }
  };
  try {
    if (!ingressUrl) throw new Error("the graph has no HTTP ingress to load");
    if (!LOOPBACK.has(new URL(ingressUrl).hostname))
      throw new BenchUsageError(`${ingressUrl} is not a loopback address: bench loads this machine only`);
    if (!nc && natsUrl) {
      // The broker of `servegraph up` admits its ops user only (credentials in its state file).
      nc = await connectNats({
        servers: natsUrl,
        credentials: opsCredentials(natsUrl, state),
        name: NAME,
        timeoutMs: 2000,
        waitOnFirstConnect: false,
      }).catch(() => undefined);
      if (!nc) o.warnings.push(`NATS at ${natsUrl} is unreachable: no batch sizes, no stage measurements`);
    }
  } catch (err) {
    await close();
    throw err;
  }

  const graphPids = async (): Promise<number[]> => {
    if (own)
      return [
        own.nats.process.pid ?? 0,
        ...own.sup.nodes.flatMap((n) => own.sup.replicas(n).map((r) => r.child.pid ?? 0)),
      ].filter((p) => p > 0);
    if (source === "running" && state) return [state.pid, ...descendants(state.pid)];
    if (!nc) return [];
    const infos = await gather<{ metadata?: Record<string, string> }>(nc, Discovery.info(), 300);
    return infos.map((i) => Number(i.metadata?.pid)).filter((p) => Number.isInteger(p) && p > 0);
  };
  return { source, ingressUrl, nc, graphPids, close };
}

/** The ingress's /readyz: the nodes behind its routes and their replica counts (also on 503); {} when it does not answer. */
export async function readyReplicas(ingressUrl: string): Promise<Record<string, number>> {
  try {
    const res = await fetch(`${ingressUrl}/readyz`, { signal: AbortSignal.timeout(5000) });
    const body = (await res.json()) as {
      replicas?: Record<string, number>;
      details?: { replicas?: Record<string, number> };
    };
    return body.replicas ?? body.details?.replicas ?? {};
  } catch {
    return {};
  }
}

/** Whether the graph serves each target, from /readyz replica counts. */
export function servedTargets(replicas: Readonly<Record<string, number>>): Record<Target, boolean> {
  return {
    [Target.CHAIN]: (replicas[ENTRY_NODE.chain] ?? 0) > 0,
    [Target.CLASSIFY]: (replicas[ENTRY_NODE.classify] ?? 0) > 0,
  };
}
