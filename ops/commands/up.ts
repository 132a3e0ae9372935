/**
 * servegraph up [graph...] [--keep-going] [--param node.KEY=VALUE ...]: the embedded single-machine deployment of a
 * graph; --param overrides a node parameter for this run (checked like graph.config.ts).
 *
 * Worker host: `servegraph up --nats nats://seed:4222 --only preprocess=4,infer=1 [--host name]` starts just those
 * nodes here (no dependency closure, no local broker), joining the graph that runs on that NATS (one server of a
 * cluster: each host connects to its own). Replicas report `--host` (default: the machine's hostname) in discovery,
 * so `servegraph status` run anywhere lists them by host. Every `up` answers `sg.ops.control.<host>`
 * (`servegraph scale --host`); a full `up` also answers `sg.ops.control`.
 *
 * Start: check the graph -> a local nats-server (unless --nats / NATS_URL name a broker) with the users and
 * edge-derived permissions of `servegraph manifests` and passwords made for this run, supervised: restarted on the
 * same port when it dies -> connect as the ops user -> every node's replicas (supervisor.ts), each given its own
 * NATS user -> serve `sg.ops.control` (scale) -> write the state file (mode 0600: it holds the ops password) ->
 * run until SIGINT / SIGTERM, or until a node cannot start (its replica keeps exiting right after it starts): then
 * stop everything and exit 1, or with --keep-going report it and keep the rest running.
 *
 * Autoscaling (ops/autoscaler.ts): every node this `up` runs that has `replicas: [min, max]` is moved within its
 * bounds by its policy; `servegraph scale <node> <n>` pins a node, `servegraph scale <node> --auto` unpins it, and
 * `{op: "autoscaler"}` on the control subjects answers each node's policy, count, desired count, pin and last
 * decision (`servegraph status` shows them). A node with min 0 starts with no replica (unless --replicas or --only
 * give it some): its activator (ops/activator.ts) holds its requests and starts a replica on the first one, and it
 * goes back to zero after its scale-down window idle. Starting at zero rather than at one then idling down: `up`
 * runs what graph.config.ts says it needs, and the first request shows the cold start the node will have in
 * production, instead of a warm answer that hides it for a minute. A worker host (`--only`) keeps at least one
 * replica of such a node: the activator belongs to the full `up`.
 *
 * Stop: a signal at any point, start-up included, stops whatever has started: the control service, the replicas
 * (SIGTERM, SIGKILL for what still runs), the connection, the broker (its temp dir goes with it), the state file.
 * Every wait there is bounded, so `up` ends within STOP_BUDGET_MS whatever state NATS is in (down, restarting,
 * frozen); a second signal kills every process at once.
 *
 * Exit codes: 0 after a signal, 130 when a signal interrupted start-up, 1 when a node cannot start or the
 * graph config is invalid.
 */
import { parseArgs } from "node:util";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  checkParams,
  connectNats,
  createLogger,
  createService,
  GraphConfigError,
  loadGraph,
  nodesOfGraphs,
  withParameterOverrides,
  type ResolvedGraph,
  type Service,
} from "../../runtime/index.ts";
import { hostname } from "node:os";
import { OPS_AUTOSCALER_SUBJECT, OPS_CONTROL_SUBJECT, opsControlSubjectOf } from "../../subjects/names.ts";
import {
  OpsAutoscaler,
  OpsControl,
  type AutoscalerSnapshot,
  type OpsControlRequest,
  type ScaleReply,
} from "../../subjects/ops.ts";
import { OPS_USER } from "../manifests/index.ts";
import { localNatsAuth, startNats, type LocalNats } from "../nats-server.ts";
import { reportConfigError } from "../output.ts";
import { clearState, writeState, type UpState } from "../state.ts";
import { createActivator, type Activator } from "../activator.ts";
import { createAutoscaler, DEFAULT_TICK_MS, type Autoscaler } from "../autoscaler.ts";
import { ingressUrlOf, NodeStartError, startSupervisor, type Supervisor } from "../supervisor.ts";
import { watchGraph, type Watcher } from "../watch.ts";

/**
 * A signal ends `up` and every process it started within about this time (the promise is 10 s): the replicas get
 * what the other steps leave; with NATS frozen they cannot drain and are killed when it runs out.
 */
const STOP_BUDGET_MS = 7500;
/** Of that budget: the control service, the connection's drain, the broker's SIGTERM before its SIGKILL. */
const CONTROL_STOP_MS = 500;
const DRAIN_MS = 500;
const BROKER_GRACE_MS = 1000;
/** Whether NATS answers at all when the stop begins: a PING/PONG round trip within this time. */
const NATS_PROBE_MS = 500;
/** Replicas' grace when it does not: they cannot drain through it (unless it returns at once: it restarts in ms). */
const NATS_DOWN_GRACE_MS = 2000;
/** Replicas stopping because start-up failed or was interrupted. */
const STARTUP_STOP_GRACE_MS = 5000;

/** A signal arrived (local: the reason of the start-up abort). */
class Interrupted extends Error {
  override readonly name = "Interrupted";
  constructor(readonly signal: string) {
    super(`${signal} during start-up`);
  }
}

/** The routes graph.config.ts declares for the running HTTP nodes whose targets run (the ones their ingress serves). */
export function routesOf(graph: ResolvedGraph, running: readonly string[]): string[] {
  const out: string[] = [];
  for (const n of running) {
    for (const r of graph.nodes[n]?.routes ?? []) {
      if (!running.includes(r.node)) continue;
      const body =
        r.body === "image"
          ? "  (an image body, or JSON {image_url, ...})"
          : r.body === "json"
            ? "  (JSON body)"
            : r.body === "raw"
              ? "  (raw body)"
              : "";
      out.push(`${r.method.padEnd(5)}${r.path.padEnd(24)}-> ${r.node}.${r.endpoint}${body}`);
    }
  }
  out.push("GET  /healthz  /readyz  /metrics  /docs  /dashboard");
  return out;
}

/** `--only preprocess=4,infer=1` (a node alone: its minimum, at least 1) -> node -> replicas. */
export function parseOnly(spec: string, graph: ResolvedGraph): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of spec
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^([A-Za-z0-9_-]+)(?:=(\d{1,3}))?$/.exec(part);
    if (!m) throw new GraphConfigError([{ path: "--only", message: `expected node=N[,node=N...], got "${part}"` }]);
    const node = graph.nodes[m[1]!];
    if (!node)
      throw new GraphConfigError([
        { path: "--only", message: `unknown node "${m[1]}" (nodes: ${Object.keys(graph.nodes).join(", ")})` },
      ]);
    const n = m[2] === undefined ? Math.max(node.replicas.min, 1) : Number(m[2]);
    if (n > node.replicas.max)
      throw new GraphConfigError([
        { path: "--only", message: `${m[1]}=${n} is above its max replicas ${node.replicas.max}` },
      ]);
    out[m[1]!] = n;
  }
  if (Object.keys(out).length === 0) throw new GraphConfigError([{ path: "--only", message: "names no node" }]);
  return out;
}

/** Waits for `p` at most `ms` (its failure ignored): a wait on NATS must not hold up a stop. */
async function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([
    p.catch(() => {}),
    new Promise((r) => {
      t = setTimeout(r, Math.max(0, ms));
    }),
  ]);
  clearTimeout(t);
}

/** Whether the server answers a PING within `ms`. */
async function answersWithin(nc: NatsConnection, ms: number): Promise<boolean> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((r) => {
    t = setTimeout(() => r(false), ms);
  });
  const ok = await Promise.race([
    nc.flush().then(
      () => true,
      () => false,
    ),
    timeout,
  ]);
  clearTimeout(t);
  return ok;
}

/** `p`, or a rejection with signal.reason as soon as the signal aborts; a value that comes later goes to `late`. */
function abortable<T>(p: Promise<T>, signal: AbortSignal, late: (v: T) => void): Promise<T> {
  if (signal.aborted) {
    void p.then(late, () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      void p.then(late, () => {});
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) late(v);
        else resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      json: { type: "boolean" },
      graph: { type: "string" },
      nats: { type: "string" },
      port: { type: "string" },
      replicas: { type: "string", multiple: true },
      "keep-going": { type: "boolean" },
      param: { type: "string", multiple: true },
      only: { type: "string" },
      host: { type: "string" },
      "autoscale-tick-ms": { type: "string" },
      watch: { type: "boolean" },
    },
    allowPositionals: true,
  });
  const externalNats = values.nats || process.env.NATS_URL;
  let graph: ResolvedGraph;
  let graphs: string[];
  let only: Record<string, number> | undefined;
  const host = values.host || process.env.SG_HOST || hostname();
  const tickMs = values["autoscale-tick-ms"] === undefined ? DEFAULT_TICK_MS : Number(values["autoscale-tick-ms"]);
  try {
    if (!Number.isInteger(tickMs) || tickMs < 50 || tickMs > 60_000)
      throw new GraphConfigError([{ path: "--autoscale-tick-ms", message: "milliseconds within 50..60000" }]);
    // --param node.KEY=VALUE overrides a parameter for this run; checked below like the file's values.
    graph = withParameterOverrides(await loadGraph(values.graph), values.param ?? []);
    graphs = positionals.length ? positionals : [...graph.defaultGraphs];
    if (values.only !== undefined) {
      if (!externalNats)
        throw new GraphConfigError([
          {
            path: "--only",
            message: "a worker host joins a running graph: give its NATS with --nats nats://<seed>:4222 (or NATS_URL)",
          },
        ]);
      only = parseOnly(values.only, graph);
    }
    if (!/^[A-Za-z0-9_.-]{1,63}$/.test(host))
      throw new GraphConfigError([
        { path: "--host", message: `"${host}": a host name is 1-63 letters, digits, '.', '_' or '-'` },
      ]);
    // Every node's parameters are checked before anything starts: a typo fails here, not in a replica.
    const issues = await checkParams(graph, only ? Object.keys(only) : nodesOfGraphs(graph, graphs));
    if (!externalNats && graph.nodes[OPS_USER])
      issues.push({
        path: `nodes.${OPS_USER}`,
        message: `"${OPS_USER}" is the NATS user of the ops commands: rename the node`,
      });
    if (issues.length) throw new GraphConfigError(issues);
  } catch (err) {
    return reportConfigError(err, values.json);
  }
  const log = createLogger("servegraph");
  const keepGoing = values["keep-going"] ?? false;
  const replicas: Record<string, number> = {};
  for (const r of values.replicas ?? []) {
    const [k, v] = r.split("=");
    if (!k || !Number.isInteger(Number(v))) throw new Error(`bad --replicas ${r}: expected node=N`);
    replicas[k] = Number(v);
  }
  Object.assign(replicas, only);

  // From here on a signal stops whatever has started: nothing may outlive `up`.
  const interrupt = new AbortController();
  const signal = interrupt.signal;
  let nats: LocalNats | undefined;
  let nc: NatsConnection | undefined;
  let sup: Supervisor | undefined;
  let control: Service | undefined;
  let autoscaler: Autoscaler | undefined;
  let watcher: Watcher | undefined;
  const activators = new Map<string, Activator>();
  let state: UpState | undefined;
  let failure: NodeStartError | undefined;
  let forced = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (!signal.aborted) {
      log.info(`${sig}: stopping the graph`);
      interrupt.abort(new Interrupted(sig));
    } else if (!forced) {
      forced = true;
      log.warn(`${sig} again: killing every process now`);
      sup?.kill();
      void nats?.stop({ graceMs: 0 });
    }
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const shutdown = async (): Promise<void> => {
    const deadline = Date.now() + STOP_BUDGET_MS;
    const left = (): number => deadline - Date.now();
    // A broker that does not answer (dead, restarting, frozen) lets nobody drain: then nobody is waited for long.
    const answers = nc ? await answersWithin(nc, NATS_PROBE_MS) : false;
    if (nc && !answers) log.warn(`NATS does not answer: replicas get ${NATS_DOWN_GRACE_MS} ms to stop, then SIGKILL`);
    if (control) await bounded(control.stop({ maxWaitMs: CONTROL_STOP_MS }), answers ? CONTROL_STOP_MS : 100);
    if (autoscaler) await bounded(autoscaler.stop(), 200);
    // Requests an activator still holds get UNAVAILABLE: nothing will start for them now.
    await bounded(Promise.all([...activators.values()].map((a) => a.stop())), answers ? 300 : 100);
    const replicaGraceMs = Math.max(500, left() - DRAIN_MS - BROKER_GRACE_MS - 500);
    if (sup)
      await sup.stop({ graceMs: answers || !nc ? replicaGraceMs : Math.min(replicaGraceMs, NATS_DOWN_GRACE_MS) });
    if (nc) {
      if (answers) await bounded(nc.drain(), Math.min(DRAIN_MS, left() - BROKER_GRACE_MS));
      await bounded(nc.close(), 200);
    }
    await nats?.stop({ graceMs: Math.max(100, Math.min(answers ? BROKER_GRACE_MS : 300, left())) });
    clearState(process.pid);
    log.info("stopped");
  };

  let code = 0;
  let error: unknown;
  try {
    let natsUrl: string;
    const nodeEnv: Record<string, Record<string, string>> = {};
    let ops: { user: string; password: string } | undefined;
    if (externalNats) {
      natsUrl = externalNats;
    } else {
      const auth = localNatsAuth(graph, nodesOfGraphs(graph, graphs));
      log.info("starting nats-server");
      nats = await startNats({
        config: auth.config,
        env: auth.serverEnv,
        restart: true,
        signal,
        log: (line) => log.warn(line),
        onRestart: (pid) => {
          if (state) writeState((state = { ...state, natsPid: pid }));
        },
      });
      natsUrl = nats.url;
      log.info("started nats-server", { url: natsUrl, pid: nats.process.pid });
      // `up` itself is the ops user; each replica gets its node's user (nodeEnv).
      ops = auth.ops;
      Object.assign(nodeEnv, auth.nodeEnv);
    }
    for (const [name, n] of Object.entries(graph.nodes))
      if (n.http && values.port !== undefined) nodeEnv[name] = { ...nodeEnv[name], PORT: values.port };

    nc = await abortable(
      connectNats({ name: "servegraph-up", servers: natsUrl, ...(ops ? { credentials: ops } : {}) }),
      signal,
      (late) => void late.close().catch(() => {}),
    );
    // Nodes with min 0 (full `up` only): an activator each, subscribed before anything can call the node when it
    // starts with no replica. A request that comes before the autoscaler exists waits for it.
    let autoscalerReady!: (a: Autoscaler) => void;
    const autoscalerP = new Promise<Autoscaler>((r) => {
      autoscalerReady = r;
    });
    if (!only) {
      for (const name of nodesOfGraphs(graph, graphs)) {
        const node = graph.nodes[name]!;
        if (node.replicas.min !== 0) continue;
        const act = createActivator({ nc, node, log, wake: () => autoscalerP.then((a) => a.wake(name)) });
        if (replicas[name] === undefined || replicas[name] === 0) {
          if (await act.arm()) {
            replicas[name] = 0;
          } else {
            log.warn(
              `node ${name}: the broker refused the activator's subscription to its subjects: it keeps one replica (no scale to zero)`,
            );
            continue;
          }
        }
        activators.set(name, act);
      }
    }
    sup = await startSupervisor({
      graph,
      graphs,
      natsUrl,
      nc,
      nodeEnv,
      replicas,
      keepGoing,
      signal,
      stopGraceMs: STARTUP_STOP_GRACE_MS,
      host,
      ...(only ? { only: Object.keys(only) } : {}),
      log: (l) => log.info(l),
      onGiveUp: (err) => {
        log.error(err.message);
        if (keepGoing) {
          log.warn(`--keep-going: the rest of the graph keeps running without node ${err.node}`);
        } else {
          failure = err;
          interrupt.abort(err);
        }
      },
    });

    autoscaler = createAutoscaler({ graph, sup, nc, host, log, activators, tickMs });
    autoscalerReady(autoscaler);
    const scaler = autoscaler;
    const ingressUrl = await ingressUrlOf(nc, graph, sup, 2000);
    // Control endpoint: `servegraph scale` talks to this supervisor.
    const running = sup;
    // A scale waits for its replicas to be ready; `{op: "autoscaler"}` (status, the dashboard) must not queue behind it.
    control = createService(nc, {
      name: "servegraph-ops",
      maxInFlight: 64,
      defaultTimeoutMs: 130_000,
      log,
      metadata: { graph: graph.name, host, nodes: running.nodes.join(",") },
    });
    const handler = async (r: OpsControlRequest): Promise<ScaleReply | AutoscalerSnapshot> => {
      if (r.op === "autoscaler") return scaler.snapshot();
      if ("auto" in r) return { node: r.node, replicas: scaler.unpin(r.node), host, auto: true };
      const n = await scaler.scale(r.node, r.replicas);
      log.info(`scaled ${r.node}`, { replicas: n, host });
      return { node: r.node, replicas: n, host };
    };
    // A worker host answers only its own subject: `scale` without --host reaches the full `up`.
    if (!only) {
      control.serve(OpsControl, OPS_CONTROL_SUBJECT, handler);
      control.serve(OpsAutoscaler, OPS_AUTOSCALER_SUBJECT, () => scaler.snapshot());
    }
    // Its name is the endpoint's with the host: one service may not have two endpoints of one name.
    control.serve({ ...OpsControl, name: "control-host" }, opsControlSubjectOf(host), handler);
    control.announce();
    state = {
      pid: process.pid,
      natsUrl,
      ...(nats && ops ? { natsPid: nats.process.pid!, natsUser: ops.user, natsPassword: ops.password } : {}),
      ...(ingressUrl ? { ingressUrl } : {}),
      graphs,
      nodes: [...sup.nodes],
      startedAt: new Date().toISOString(),
    };
    // The state file is this machine's full `up` (status and scale find its broker and credentials there); a worker
    // host leaves it alone: it was given --nats, and hosts simulated on one machine share the file system.
    if (!only) writeState(state);
    printSummary(values.json ?? false, {
      graph,
      graphs,
      natsUrl,
      nats,
      ingressUrl,
      sup,
      atZero: new Set(activators.keys()),
    });
    if (values.watch) {
      watcher = watchGraph(graph, sup, log);
      log.info(
        "watching the nodes' service folders, subjects/ and runtime/: a change replaces the node's replicas one at a time",
      );
    }

    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener("abort", () => resolve(), { once: true });
    });
    code = failure ? 1 : 0;
  } catch (err) {
    if (err instanceof NodeStartError) {
      if (!failure) log.error(err.message);
      code = 1;
    } else if (err instanceof Interrupted) {
      code = 130;
    } else {
      error = err;
    }
  }
  watcher?.close();
  // The signal handlers stay on while stopping: a second signal kills, and none ends `up` with the broker left behind.
  await shutdown();
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  // nats.js may keep a timer for a server that is gone; the graph has stopped, so nothing is lost by not waiting.
  setTimeout(() => process.exit(error === undefined ? code : 1), 500).unref();
  if (error !== undefined) throw error;
  return code;
}

/** The one line of JSON `servegraph up --json` prints once every node is ready (what scripts and tests wait for). */
export interface UpSummary {
  graph: string;
  graphs: string[];
  /** The NATS URL the graph runs on (its embedded broker, or --nats). */
  nats: string;
  /** The embedded broker's pid; null with --nats. */
  nats_pid: number | null;
  /** The HTTP node's URL; null when none runs. */
  ingress: string | null;
  nodes: { node: string; replicas: number; subjects: string }[];
}

function printSummary(
  json: boolean,
  s: {
    graph: ResolvedGraph;
    graphs: string[];
    natsUrl: string;
    nats: LocalNats | undefined;
    ingressUrl: string | undefined;
    sup: Supervisor;
    atZero: ReadonlySet<string>;
  },
): void {
  const { graph, graphs, natsUrl, nats, ingressUrl, sup, atZero } = s;
  if (json) {
    const summary: UpSummary = {
      graph: graph.name,
      graphs,
      nats: natsUrl,
      nats_pid: nats?.process.pid ?? null,
      ingress: ingressUrl ?? null,
      nodes: sup.nodes.map((n) => ({
        node: n,
        replicas: sup.replicas(n).length,
        subjects: `${graph.subjectPrefix}.${n}.*`,
      })),
    };
    process.stdout.write(JSON.stringify(summary) + "\n");
    return;
  }
  const lines = [
    "",
    `servegraph: ${graphs.join(", ")} up (graph ${graph.name})`,
    `  NATS     ${natsUrl}${nats ? ` (embedded, pid ${nats.process.pid}; per-node users, restarted if it dies)` : ""}`,
    ...(ingressUrl ? [`  HTTP     ${ingressUrl}`] : []),
    "",
    "  node            replicas  subject",
    ...sup.nodes.map((n) => {
      const count = sup.replicas(n).length;
      const where =
        count === 0 && atZero.has(n)
          ? `${graph.subjectPrefix}.${n}.* (scaled to zero: the first request starts a replica)`
          : count === 0
            ? "cannot start (see above)"
            : graph.nodes[n]!.http
              ? (ingressUrl ?? "")
              : `${graph.subjectPrefix}.${n}.*`;
      return `  ${n.padEnd(16)}${String(count).padEnd(10)}${where}`;
    }),
    "",
    ...(ingressUrl ? routesOf(graph, sup.nodes).map((r) => `  ${r}`) : []),
    ...(ingressUrl && sup.nodes.includes("greeter-proxy") ? ["", `  try: curl ${ingressUrl}/greeting/ada`] : []),
    "  Ctrl-C stops everything.",
    "",
  ];
  process.stdout.write(lines.join("\n") + "\n");
}
