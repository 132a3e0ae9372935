/**
 * The autoscaler of `servegraph up`: moves the replica count of every node it runs that has an `autoscale` policy
 * (graph.config.ts `replicas: [min, max]`, runtime/config.ts) within [min, max], and owns every change of a
 * node's count after start-up: its own decisions, `servegraph scale` (which pins the node), and the wake-ups of
 * the activator of a node at zero (ops/activator.ts). Changes of one node run one at a time, in order.
 *
 * Each tick (1 s by default) it asks the node's replicas for $SRV.STATS and reads the policy's metric over the
 * replicas this `up` runs (metadata `replica`, which carries the host): in-flight requests or batch-queue depth,
 * summed, plus the requests the node's activator holds; or the recent batch fill.
 *
 * Desired count:
 *  - inFlight, queueDepth: ceil(total / target), the count at which each replica carries `target`.
 *  - batchFill: the fill is a fraction that saturates at 1, so it cannot say how many replicas a load needs: one
 *    more replica while the fill is above the target, one fewer while it is below half the target (with n >= 2
 *    replicas at fill f < target/2, n - 1 replicas see about f * n / (n - 1) <= target: no flapping back up), else
 *    unchanged. A replica that ran no batch since the last tick counts as fill 0 (its figure is of past batches).
 *  - Scale to zero (min 0): 0 only when the node was idle through the tick: no request in flight or held, and no
 *    replica's request count moved (a fast request between two ticks is not in flight at either).
 *  - Clamped to [floor, max]: floor is min, but 1 for a node with min 0 whose activator cannot subscribe here
 *    (a worker host, or a broker that does not allow it): without an activator, zero replicas would refuse requests.
 *
 * Windows: the count changes only after the desire has held for `scaleUpAfterMs` (more) or `scaleDownAfterMs`
 * (fewer) on every tick, and then goes straight to the count the metric's mean over the window asks for (as
 * Knative's stable window), not one step at a time: ceil(total / target) already measures what the load needs, and
 * single steps would take n windows to reach a load step that the first window measured. The mean, not the last
 * or the extreme tick: the first ticks after a load step still read the old load draining, the last one may be a
 * dip. If the mean asks for no change yet, the window slides on. The windows start over after every change, so a
 * new replica is serving before the next decision is taken. A tick that wants the current count, or a change in
 * the other direction, resets a window.
 *
 * Worker hosts: several `up`s on one NATS each run an autoscaler that counts only its own replicas (their
 * replica ids, which its supervisor made and which name its host) and changes only those: each host scales on the
 * share of the load that reaches it, and two hosts never both react to the same replicas' numbers. A node with
 * min 0 goes to zero only on the full `up` (it holds the activator); a worker host keeps one replica of it.
 *
 * Pins: `servegraph scale <node> <n>` sets the count and pins it: the autoscaler keeps computing the desired count
 * (status shows it) but does not act until `servegraph scale <node> --auto`. A request to a node pinned at 0 still
 * wakes one replica (a request is never refused for a pin); the pin moves to 1.
 *
 * Every decision is logged with its reason (metric value, target, current -> new, window) and kept per node as
 * `last_decision` of {@link AutoscalerSnapshot}: the `{op: "autoscaler"}` answer of `up`'s control service.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { gather, type AutoscalePolicy, type Logger, type ResolvedGraph, type StatsReply } from "../runtime/index.ts";
import { GraphError } from "../subjects/errors.ts";
import { Discovery } from "../subjects/names.ts";
import { readStatsData } from "../subjects/stats.ts";
import type { Activator } from "./activator.ts";
import type { AutoscaleDecision, AutoscaleNodeSnapshot, AutoscalerSnapshot } from "../subjects/ops.ts";
import type { Supervisor } from "./supervisor.ts";

export const DEFAULT_TICK_MS = 1000;
/** How long one tick waits for the replicas' $SRV.STATS answers (a replica busy on its CPU answers late). */
const STATS_WINDOW_MS = 300;
/** Ticks in a row without an answer from a replica that answered before, after which it reads as idle. */
const MAX_MISSED_TICKS = 3;
/** batchFill scales down below this share of its target (see the top of this file). */
const BATCH_FILL_DOWN_SHARE = 0.5;

/** One change of a node's count, by the autoscaler, a `servegraph scale`, or an activator's wake-up. */
// The snapshot's shape is the control service's contract, defined once with its reader (subjects/ops.ts).
export type { AutoscaleDecision, AutoscaleNodeSnapshot, AutoscalerSnapshot };

export interface AutoscalerOptions {
  graph: ResolvedGraph;
  sup: Supervisor;
  nc: NatsConnection;
  host: string;
  log: Logger;
  /** Nodes with min 0 whose activator subscribed here (armed or able to arm). */
  activators?: ReadonlyMap<string, Activator>;
  tickMs?: number;
}

export interface Autoscaler {
  /** `servegraph scale`: sets the count (0 only with an activator) and pins the node. */
  scale(node: string, replicas: number): Promise<number>;
  /** `servegraph scale --auto`: the autoscaler moves the node again. */
  unpin(node: string): number;
  /** The activator of `node` holds a request: one replica, ready, then the activator forwards. */
  wake(node: string): Promise<void>;
  snapshot(): AutoscalerSnapshot;
  /** Ends the ticks (waits for the one running); changes in progress finish with the supervisor's stop. */
  stop(): Promise<void>;
}

interface Window {
  since: number;
  ticks: { t: number; value: number; active: boolean }[];
}

interface NodeState {
  policy: AutoscalePolicy;
  floor: number;
  pinned: number | null;
  desired: number | null;
  value: number | null;
  /** Since when (ms, monotonic) the current desire to go up / down has held, with each tick's reading since. */
  up: Window | null;
  down: Window | null;
  /** Per replica id: num_requests and batches at the last tick (activity and fresh batch fill). */
  seen: Map<string, { requests: number; batches: number }>;
  /** Ticks skipped in a row because a replica did not answer. */
  missed: number;
  last: AutoscaleDecision | null;
}

const num = (x: unknown): number => (typeof x === "number" && Number.isFinite(x) ? x : 0);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const round = (x: number): number => Math.round(x * 100) / 100;
const secs = (ms: number): string => `${(ms / 1000).toFixed(ms % 1000 ? 1 : 0)} s`;

/**
 * The count a node's metric asks for (pure; see the top of this file): inFlight and queueDepth ceil(value / target),
 * batchFill one step (up above the target, down below half of it); within [floor, max]; never 0 for a node that had
 * anything to do (`active`). `floor` is min, or 1 for a min-0 node without an activator.
 */
export function desiredCount(
  policy: Pick<AutoscalePolicy, "metric" | "target">,
  r: { value: number; current: number; floor: number; max: number; active: boolean },
): number {
  const { metric, target } = policy;
  let want =
    metric === "batchFill"
      ? r.value > target
        ? r.current + 1
        : r.value < target * BATCH_FILL_DOWN_SHARE
          ? r.current - 1
          : r.current
      : Math.ceil(r.value / target);
  if (r.active) want = Math.max(want, 1);
  return Math.min(r.max, Math.max(r.floor, want));
}

export function createAutoscaler(opts: AutoscalerOptions): Autoscaler {
  const { graph, sup, nc, host, log } = opts;
  const tickMs = opts.tickMs ?? DEFAULT_TICK_MS;
  const activators = opts.activators ?? new Map<string, Activator>();
  const states = new Map<string, NodeState>();
  for (const name of sup.nodes) {
    const policy = graph.nodes[name]!.autoscale;
    if (!policy) continue;
    const min = graph.nodes[name]!.replicas.min;
    states.set(name, {
      policy,
      floor: min === 0 && !activators.has(name) ? 1 : min,
      pinned: null,
      desired: null,
      value: null,
      up: null,
      down: null,
      seen: new Map(),
      missed: 0,
      last: null,
    });
  }
  /** The change in progress per node: changes of one node run in order; a node with one in progress is not read. */
  const queues = new Map<string, Promise<unknown>>();
  let stopped = false;

  const enqueue = <T>(name: string, job: () => Promise<T>): Promise<T> => {
    const prev = queues.get(name) ?? Promise.resolve();
    const p = prev.catch(() => {}).then(job);
    const settled = p
      .catch(() => {})
      .finally(() => {
        if (queues.get(name) === settled) queues.delete(name);
      });
    queues.set(name, settled);
    return p;
  };

  const record = (name: string, d: Omit<AutoscaleDecision, "at">): void => {
    const s = states.get(name);
    const decision = { at: new Date().toISOString(), ...d };
    if (s) {
      s.last = decision;
      s.up = s.down = null;
    }
    log.info(`autoscale ${name}: ${d.from} -> ${d.to} (${d.by}): ${d.reason}`, {
      node: name,
      host,
      from: d.from,
      to: d.to,
      by: d.by,
    });
  };

  /** Sets the count; to 0 the activator subscribes first, from 0 it forwards what it held once the replicas answer. */
  const setReplicas = async (name: string, n: number): Promise<number> => {
    const act = activators.get(name);
    if (n === 0) {
      if (!act)
        throw new GraphError(
          "BAD_REQUEST",
          `${name} cannot scale to zero on host ${host}: no activator holds its requests here (min 0 scales to zero on the full \`servegraph up\` only)`,
        );
      if (!(await act.arm()))
        throw new GraphError(
          "UNAVAILABLE",
          `${name} cannot scale to zero: the broker refused the activator's subscription to its subjects`,
        );
      return sup.scale(name, 0);
    }
    const r = await sup.scale(name, n);
    if (act) await act.release();
    return r;
  };

  const checkNode = (name: string): NodeState | undefined => {
    if (!sup.nodes.includes(name))
      throw new GraphError("NOT_FOUND", `node ${name} does not run on host ${host} (it runs: ${sup.nodes.join(", ")})`);
    return states.get(name);
  };

  /** One node's reading and decision. */
  const tickNode = async (name: string, s: NodeState): Promise<void> => {
    const ours = new Set(sup.replicas(name).map((r) => r.id));
    const current = ours.size;
    const stats = (
      await gather<StatsReply>(nc, Discovery.stats(name), STATS_WINDOW_MS).catch(() => [] as StatsReply[])
    ).filter((st) => ours.has(st.metadata?.replica ?? ""));
    if (stopped || queues.has(name)) return;
    // A replica that answered the last reading and not this one (busy on its CPU, its answer late) would read as an
    // idle one: no reading this tick, the windows wait. A replica that is starting has not answered yet and may be
    // absent; one that stays silent MAX_MISSED_TICKS in a row is read as idle.
    const answered = new Set(stats.map((st) => st.metadata!.replica!));
    if ([...s.seen.keys()].some((id) => ours.has(id) && !answered.has(id)) && s.missed < MAX_MISSED_TICKS) {
      s.missed++;
      return;
    }
    s.missed = 0;
    const held = activators.get(name)?.held() ?? 0;
    const { metric, target } = s.policy;
    let total = held;
    let active = held > 0;
    const fills: number[] = [];
    const seen = new Map<string, { requests: number; batches: number }>();
    for (const st of stats) {
      const id = st.metadata!.replica!;
      const eps = st.endpoints ?? [];
      const data = readStatsData(eps[0]?.data);
      const requests = eps.reduce((a, e) => a + num(e.num_requests), 0);
      const batches = num(data.batches);
      const before = s.seen.get(id);
      seen.set(id, { requests, batches });
      if (num(data.in_flight) > 0 || requests !== (before?.requests ?? 0)) active = true;
      if (metric === "inFlight") total += num(data.in_flight);
      else if (metric === "queueDepth") total += num(data.queue_depth);
      else fills.push(batches !== (before?.batches ?? 0) ? num(data.batch_fill) : 0);
    }
    s.seen = seen;
    const value = metric === "batchFill" ? (fills.length ? fills.reduce((a, f) => a + f, 0) / fills.length : 0) : total;
    const { max } = graph.nodes[name]!.replicas;
    const desiredFor = (v: number, wasActive: boolean): number =>
      desiredCount(s.policy, { value: v, current, floor: s.floor, max, active: wasActive });
    const desired = desiredFor(value, active);
    s.desired = desired;
    s.value = value;
    if (s.pinned !== null) return;
    const now = performance.now();
    const tick = { t: now, value, active };
    if (desired > current) {
      s.down = null;
      s.up ??= { since: now, ticks: [] };
      s.up.ticks.push(tick);
    } else if (desired < current) {
      s.up = null;
      s.down ??= { since: now, ticks: [] };
      s.down.ticks.push(tick);
    } else {
      s.up = s.down = null;
    }
    const w = s.up ?? s.down;
    if (!w) return;
    const windowMs = s.up ? s.policy.scaleUpAfterMs : s.policy.scaleDownAfterMs;
    const heldMs = now - w.since;
    // The window slides: only the last windowMs of readings count.
    w.ticks = w.ticks.filter((x) => x.t > now - windowMs - tickMs / 2);
    if (heldMs < windowMs) return;
    const mean = w.ticks.reduce((a, x) => a + x.value, 0) / w.ticks.length;
    const to = desiredFor(
      mean,
      w.ticks.some((x) => x.active),
    );
    if (s.up ? to <= current : to >= current) return;
    const measured =
      metric === "batchFill"
        ? `batch fill ${(mean * 100).toFixed(0)}% (mean of the window; target ${(target * 100).toFixed(0)}%, down below ${(target * BATCH_FILL_DOWN_SHARE * 100).toFixed(0)}%)`
        : `${metric} ${round(mean)} (mean of the window; now ${value}) over ${current} replica(s)${held ? ` (${held} held by the activator)` : ""}, target ${target} per replica`;
    const reason =
      to === 0
        ? `idle (no request in flight or started) for ${secs(heldMs)} (scale-down window ${secs(windowMs)})`
        : `${measured}: wanted ${s.up ? "more" : "fewer"} for ${secs(heldMs)} (scale-${s.up ? "up" : "down"} window ${secs(windowMs)})`;
    record(name, { from: current, to, by: "autoscaler", reason });
    void enqueue(name, () => setReplicas(name, to)).catch((err: unknown) => {
      log.error(`autoscale ${name}: ${current} -> ${to} failed: ${err instanceof Error ? err.message : String(err)}`, {
        node: name,
      });
    });
  };

  let running: Promise<void> = Promise.resolve();
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const t0 = performance.now();
      await Promise.all(
        [...states]
          .filter(([n]) => !queues.has(n))
          .map(([n, s]) =>
            tickNode(n, s).catch((err: unknown) => {
              log.warn(`autoscale ${n}: tick failed: ${err instanceof Error ? err.message : String(err)}`);
            }),
          ),
      );
      if (stopped) return;
      await sleep(Math.max(0, tickMs - (performance.now() - t0)));
    }
  };
  if (states.size) {
    running = loop();
    const list = [...states].map(
      ([n, s]) =>
        `${n} (${s.policy.metric} target ${s.policy.target}, [${graph.nodes[n]!.replicas.min}, ${graph.nodes[n]!.replicas.max}]${activators.has(n) ? ", to zero" : ""})`,
    );
    log.info(`autoscaler: every ${tickMs} ms on host ${host}: ${list.join(", ")}`);
  }

  return {
    async scale(name, n) {
      const s = checkNode(name);
      const node = graph.nodes[name]!;
      if (!Number.isInteger(n) || n < node.replicas.min || n > node.replicas.max) {
        throw new GraphError(
          "BAD_REQUEST",
          `replicas of ${name} must be within [${node.replicas.min}, ${node.replicas.max}] (graph.config.ts), got ${n}`,
        );
      }
      return enqueue(name, async () => {
        const from = sup.replicas(name).length;
        const r = await setReplicas(name, n);
        if (s) {
          s.pinned = n;
          record(name, {
            from,
            to: n,
            by: "manual",
            reason: `servegraph scale ${name} ${n}: pinned until \`servegraph scale ${name} --auto\``,
          });
        }
        return r;
      });
    },
    unpin(name) {
      const s = checkNode(name);
      if (!s)
        throw new GraphError(
          "BAD_REQUEST",
          `${name} has no autoscale policy (its replicas are fixed in graph.config.ts)`,
        );
      if (s.pinned !== null)
        log.info(`autoscale ${name}: unpinned (was ${s.pinned}); the autoscaler moves it again`, { node: name });
      s.pinned = null;
      s.up = s.down = null;
      return sup.replicas(name).length;
    },
    wake(name) {
      return enqueue(name, async () => {
        const from = sup.replicas(name).length;
        if (from === 0) {
          const s = states.get(name);
          if (s && s.pinned === 0) s.pinned = 1;
          record(name, {
            from: 0,
            to: 1,
            by: "activator",
            reason: `a request arrived while ${name} had no replica (held by the activator)`,
          });
          await setReplicas(name, 1);
        } else {
          await activators.get(name)?.release();
        }
      });
    },
    snapshot() {
      return {
        host,
        tick_ms: tickMs,
        nodes: [...states].map(([name, s]): AutoscaleNodeSnapshot => {
          const node = graph.nodes[name]!;
          const act = activators.get(name);
          return {
            node: name,
            metric: s.policy.metric,
            target: s.policy.target,
            min: node.replicas.min,
            max: node.replicas.max,
            scale_up_after_ms: s.policy.scaleUpAfterMs,
            scale_down_after_ms: s.policy.scaleDownAfterMs,
            replicas: sup.replicas(name).length,
            desired: s.desired,
            value: s.value,
            pinned: s.pinned,
            scale_to_zero: act !== undefined,
            activator: act ? act.state() : null,
            held: act?.held() ?? 0,
            last_decision: s.last,
          };
        }),
      };
    },
    async stop() {
      stopped = true;
      await running;
    },
  };
}
