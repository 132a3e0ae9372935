/**
 * Fault tests: SIGKILL of a replica under load loses no request when another replica can answer within the
 * deadline. Real processes on a real nats-server, closed-loop HTTP clients on loopback, bounded in count and time.
 * Each kill lands while requests are in flight at that replica; callers see a slower answer (the attempt is lost
 * after the liveness window and retried on the other replica), never an error.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { LIVENESS_MS } from "../../runtime/index.ts";
import { REPO_ROOT, startGraph, type RunningGraph } from "../helpers/graph.ts";

const IMAGES = ["coffee-cup.jpg", "ladybird.jpg", "cat-chelsea.jpg", "water-drop.jpg"].map((n) =>
  readFileSync(`${REPO_ROOT}/data/images/${n}`),
);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface LoadResult {
  ok: number;
  failed: { status: number; body: string }[];
  slowestMs: number;
}

/** `clients` closed loops until `stop` resolves (or `maxRequests` answers); every answer is counted. */
async function closedLoop(
  send: (i: number) => Promise<Response>,
  clients: number,
  stop: Promise<void>,
  maxRequests: number,
): Promise<LoadResult> {
  const r: LoadResult = { ok: 0, failed: [], slowestMs: 0 };
  let stopped = false;
  void stop.then(() => {
    stopped = true;
  });
  let n = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (!stopped && n < maxRequests) {
        const i = n++;
        const t0 = performance.now();
        try {
          const res = await send(i);
          const body = await res.text();
          if (res.status === 200) r.ok++;
          else r.failed.push({ status: res.status, body: body.slice(0, 200) });
        } catch (err) {
          r.failed.push({ status: 0, body: String(err) });
        }
        r.slowestMs = Math.max(r.slowestMs, performance.now() - t0);
      }
    }),
  );
  return r;
}

async function killOneUnderLoad(
  g: RunningGraph,
  node: string,
  send: (i: number) => Promise<Response>,
  clients: number,
  maxRequests: number,
): Promise<LoadResult> {
  const [victim, survivor] = g.sup.replicas(node);
  assert.ok(victim && survivor, `${node} runs 2 replicas`);
  const exited = new Promise<void>((res) => victim.child.once("exit", () => res()));
  let stopLoad!: () => void;
  const stop = new Promise<void>((res) => {
    stopLoad = res;
  });
  const load = closedLoop(send, clients, stop, maxRequests);
  await sleep(1500);
  victim.child.kill("SIGKILL");
  await exited;
  // Long enough for the lost attempts to be retried and for traffic to continue on the survivor.
  await sleep(LIVENESS_MS + 2000);
  stopLoad();
  const r = await load;
  assert.equal(survivor.child.exitCode, null, "the other replica still runs");
  return r;
}

test(
  "faults - SIGKILL of one of 2 preprocess replicas, then of one of 2 infer replicas, under load: no request fails",
  { timeout: 240_000 },
  async (t) => {
    await using g = await startGraph({ graphs: ["classify"], replicas: { preprocess: 2, infer: 2 } });
    const send = (i: number) =>
      fetch(`${g.ingressUrl}/classify`, {
        method: "POST",
        body: IMAGES[i % IMAGES.length]!,
        headers: { "content-type": "image/jpeg" },
      });
    for (const node of ["preprocess", "infer"]) {
      const r = await killOneUnderLoad(g, node, send, 6, 2000);
      t.diagnostic(`${node}: ${r.ok} ok, ${r.failed.length} failed, slowest ${Math.round(r.slowestMs)} ms`);
      assert.deepEqual(r.failed, [], `${node}: no request failed`);
      assert.ok(r.ok > 10, `${node}: traffic went on (${r.ok} answers)`);
    }
  },
);

test("faults - SIGKILL of one of 2 greeter replicas under load: no request fails", { timeout: 120_000 }, async (t) => {
  await using g = await startGraph({ graphs: ["chain"], replicas: { greeter: 2 } });
  const send = (i: number) => fetch(`${g.ingressUrl}/greeting/n${i}`);
  const r = await killOneUnderLoad(g, "greeter", send, 8, 50_000);
  t.diagnostic(`greeter: ${r.ok} ok, ${r.failed.length} failed, slowest ${Math.round(r.slowestMs)} ms`);
  assert.deepEqual(r.failed, []);
  assert.ok(r.ok > 50);
});

test(
  "faults - SIGKILL of the only infer replica under load: requests fail fast while it is down and succeed once it is back",
  { timeout: 180_000 },
  async (t) => {
    await using g = await startGraph({ graphs: ["classify"], restart: true });
    const send = (i: number) =>
      fetch(`${g.ingressUrl}/classify`, {
        method: "POST",
        body: IMAGES[i % IMAGES.length]!,
        headers: { "content-type": "image/jpeg" },
      });
    const [victim] = g.sup.replicas("infer");
    assert.ok(victim);
    const outcomes: { at: number; ms: number; status: number }[] = [];
    let stopped = false;
    const t0 = performance.now();
    let n = 0;
    const loops = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!stopped) {
          const s = performance.now();
          const res = await send(n++).catch(() => undefined);
          await res?.arrayBuffer().catch(() => {});
          outcomes.push({ at: s - t0, ms: performance.now() - s, status: res?.status ?? 0 });
          if (res?.status !== 200) await sleep(20);
        }
      }),
    );
    await sleep(1500);
    const killedAt = performance.now() - t0;
    victim.child.kill("SIGKILL");
    // Wait for the supervisor's replacement to answer, then for traffic to flow again.
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline && !outcomes.some((o) => o.at > killedAt + 100 && o.status === 200)) await sleep(200);
    await sleep(1000);
    stopped = true;
    await loops;
    const after = outcomes.filter((o) => o.at + o.ms > killedAt);
    const failed = after.filter((o) => o.status !== 200);
    const firstOkAfter = after.find((o) => o.status === 200 && o.at > killedAt + 100);
    t.diagnostic(
      `infer (only replica): ${outcomes.length} requests, ${failed.length} failed (${[...new Set(failed.map((f) => f.status))].join(",")}), slowest failure ${Math.round(Math.max(0, ...failed.map((f) => f.ms)))} ms, first success ${firstOkAfter ? Math.round(firstOkAfter.at + firstOkAfter.ms - killedAt) : "never"} ms after the kill`,
    );
    assert.ok(
      failed.every((f) => f.status === 503),
      "while infer has no replica, callers get 503 UNAVAILABLE",
    );
    assert.ok(
      failed.every((f) => f.ms < LIVENESS_MS + 1500),
      "failures come fast, not after the 30 s deadline",
    );
    assert.ok(firstOkAfter, "the graph serves again once the supervisor restarted infer");
  },
);
