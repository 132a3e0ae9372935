/**
 * GET /dashboard/events, the dashboard's Server-Sent Events, over real sockets:
 *  - with the ingress app on a port and a counting discovery reader: one reading a second however many streams are
 *    open, none once the last stream closed, failed readings as frames (the ingress keeps serving), and a shutdown
 *    that does not wait on open streams;
 *  - under `servegraph up` with its own broker and per-node NATS users: the ingress reads discovery of every node
 *    and the autoscaler's figures (its permissions allow both), and a node scaled to zero shows 0 replicas.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { buildApp } from "../../services/ingress/src/app.ts";
import type { Client, GraphStatus } from "../../runtime/index.ts";
import type { LiveFrame } from "../../services/ingress/src/dashboard/live.ts";
import type { Topology } from "../../services/ingress/src/dashboard/topology.ts";
import { startUp } from "../helpers/autoscale-up.ts";

interface Event {
  event: string;
  data: unknown;
}

/** Opens the event stream; `next()` resolves with the next event (bounded), `close()` aborts the request. */
async function openEvents(url: string): Promise<{ next(timeoutMs?: number): Promise<Event>; close(): void }> {
  const ac = new AbortController();
  const res = await fetch(`${url}/dashboard/events`, { signal: ac.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = "";
  return {
    async next(timeoutMs = 10_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const cut = buf.indexOf("\n\n");
        if (cut >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data !== undefined) return { event, data: JSON.parse(data) };
          continue; // a keep-alive comment
        }
        const left = end - Date.now();
        if (left <= 0) throw new Error(`no event within ${timeoutMs} ms`);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const r = await Promise.race([
          reader.read(),
          new Promise<never>((_, rej) => {
            timer = setTimeout(() => rej(new Error(`no event within ${timeoutMs} ms`)), left);
          }),
        ]);
        clearTimeout(timer);
        if (r.done) throw new Error("stream ended");
        buf += dec.decode(r.value, { stream: true });
      }
    },
    close: () => ac.abort(),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const TOPOLOGY: Topology = {
  graph: "g",
  nodes: [
    {
      name: "greeter",
      kind: "greeter",
      description: "",
      replicas: { min: 1, max: 1 },
      autoscale: null,
      http: false,
      batching: false,
      column: 0,
    },
  ],
  edges: [],
};

function status(requests: number): GraphStatus {
  return {
    nats: "n",
    graph: "g",
    at: new Date().toISOString(),
    control: { replicas: 0, graph: null },
    nodes: [
      {
        node: "greeter",
        replicas: 1,
        replica_list: [{ id: "r1", host: "h", in_flight: 0, requests }],
        hosts: { h: 1 },
        in_flight: 0,
        requests,
        errors: 0,
        p50_ms: 1,
        p99_ms: 2,
        endpoints: [],
        batch: null,
        ab_decisions: null,
        metrics_urls: [],
        http_url: null,
      },
    ],
  };
}

test(
  "dashboard events - one discovery reading a second for all streams, none after the last closes, failures as frames",
  { timeout: 60_000 },
  async () => {
    let reads = 0;
    let failing = false;
    const app = await buildApp({
      client: {} as Client,
      routes: [],
      countReplicas: async () => 1,
      isConnected: () => true,
      maxBodyBytes: 1024,
      imageFetchTimeoutMs: 1000,
      allowPrivateImageUrls: false,
      dashboard: {
        topology: TOPOLOGY,
        readStatus: async () => {
          reads++;
          if (failing) throw new Error("broker gone");
          return status(reads * 5);
        },
        readAutoscaler: async () => {
          throw new Error("no responders");
        },
      },
    });
    await app.listen({ port: 0, host: "127.0.0.1" });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    try {
      const page = await fetch(`${url}/dashboard`);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<script src="\/dashboard\/dashboard\.js" defer><\/script>/);
      for (const asset of ["dashboard.js", "dashboard.css", "favicon.svg"])
        assert.equal((await fetch(`${url}/dashboard/${asset}`)).status, 200, asset);

      const streams = await Promise.all(Array.from({ length: 6 }, () => openEvents(url)));
      for (const s of streams) {
        const first = await s.next();
        assert.equal(first.event, "topology");
        assert.deepEqual(first.data, TOPOLOGY);
      }
      const t0 = Date.now();
      const frames: LiveFrame[] = [];
      for (let i = 0; i < 3; i++)
        for (const s of streams) {
          const e = await s.next();
          assert.equal(e.event, "status");
          frames.push(e.data as LiveFrame);
        }
      const elapsedS = (Date.now() - t0) / 1000;
      // six streams, three frames each: about three readings, never one per stream
      assert.ok(reads <= Math.ceil(elapsedS) + 2, `${reads} readings in ${elapsedS.toFixed(1)} s for 6 streams`);
      const last = frames.at(-1)!;
      assert.equal(last.error, null);
      assert.equal(last.nodes[0]!.node, "greeter");
      assert.ok(last.nodes[0]!.requests_per_s > 0, "a rate from successive readings");
      assert.equal(last.nodes[0]!.autoscaler, null, "no autoscaler is no error");

      failing = true;
      const bad = await streams[0]!.next(5000);
      const failed = bad.event === "status" && (bad.data as LiveFrame).error ? bad : await streams[0]!.next(5000);
      assert.match((failed.data as LiveFrame).error ?? "", /discovery failed: broker gone/);
      assert.equal((failed.data as LiveFrame).nodes[0]!.node, "greeter", "the last known nodes are kept");
      assert.equal((await fetch(`${url}/healthz`)).status, 200, "the ingress keeps serving");
      failing = false;

      for (const s of streams) s.close();
      await sleep(1500);
      const after = reads;
      await sleep(2500);
      assert.equal(reads, after, "no reading once every stream is closed");

      // a stream left open does not hold up the shutdown
      const open = await openEvents(url);
      await open.next();
      const c0 = Date.now();
      await app.close();
      assert.ok(Date.now() - c0 < 5000, `closed in ${Date.now() - c0} ms with a stream open`);
      // the frames sent before the close, then the end of the stream
      await assert.rejects(async () => {
        for (let i = 0; i < 20; i++) await open.next(3000);
      }, /stream ended|terminated|other side closed/);
    } finally {
      await app.close();
    }
  },
);

test("dashboard - in the OpenAPI document; behind the bearer key when requiresAuth is on, like every route", async () => {
  const deps = {
    client: {} as Client,
    routes: [],
    countReplicas: async () => 1,
    isConnected: () => true,
    maxBodyBytes: 1024,
    imageFetchTimeoutMs: 1000,
    allowPrivateImageUrls: false,
    dashboard: { topology: TOPOLOGY, readStatus: async () => status(1) },
  };
  const open = await buildApp(deps);
  const secured = await buildApp({ ...deps, apiKey: "k3y-for-tests" });
  try {
    const spec = (await open.inject({ method: "GET", url: "/docs/json" })).json() as {
      paths: Record<string, { get: { description: string } }>;
    };
    assert.match(spec.paths["/dashboard"]!.get.description, /HTML/);
    assert.match(spec.paths["/dashboard/events"]!.get.description, /text\/event-stream/);
    assert.equal(spec.paths["/dashboard/dashboard.js"], undefined, "assets are not API");
    const page = await open.inject({ method: "GET", url: "/dashboard" });
    assert.equal(page.statusCode, 200);
    assert.match(page.headers["content-type"] as string, /^text\/html/);
    assert.match(page.headers["content-security-policy"] as string, /connect-src 'self'/);
    assert.doesNotMatch(page.body, /https?:\/\//, "no absolute URL in the page");
    for (const url of ["/dashboard", "/dashboard/events", "/dashboard/dashboard.js"]) {
      const r = await secured.inject({ method: "GET", url });
      assert.equal(r.statusCode, 401, url);
      assert.equal(r.json().code, "UNAUTHENTICATED");
    }
    assert.equal(
      (await secured.inject({ method: "GET", url: "/dashboard", headers: { authorization: "Bearer k3y-for-tests" } }))
        .statusCode,
      200,
    );
  } finally {
    await open.close();
    await secured.close();
  }
});

test(
  "dashboard events - under servegraph up's broker the ingress reads discovery and the autoscaler; a node at zero shows 0 replicas",
  { timeout: 180_000 },
  async () => {
    const up = await startUp(["chain"]);
    let events: Awaited<ReturnType<typeof openEvents>> | undefined;
    try {
      assert.ok(up.summary.ingress, "up serves HTTP");
      events = await openEvents(up.summary.ingress);
      const topo = (await events.next()).data as Topology;
      assert.deepEqual(topo.nodes.map((n) => n.name).sort(), ["greeter", "greeter-proxy", "ingress"]);
      const end = Date.now() + 60_000;
      let frame: LiveFrame | undefined;
      const node = (f: LiveFrame, n: string) => f.nodes.find((x) => x.node === n);
      // greeter ([0, 3], nothing calls it) is scaled to zero after its 2 s window; greeter-proxy stays at 1
      while (Date.now() < end) {
        const e = await events.next(15_000);
        if (e.event !== "status") continue;
        frame = e.data as LiveFrame;
        if (
          frame.error === null &&
          node(frame, "greeter")?.replicas === 0 &&
          node(frame, "greeter")?.autoscaler?.mode === "at zero" &&
          node(frame, "greeter-proxy")?.autoscaler
        )
          break;
      }
      assert.ok(frame, "a status frame");
      assert.equal(frame.error, null, "discovery is allowed to the ingress's NATS user");
      assert.equal(node(frame, "greeter-proxy")?.replicas, 1);
      assert.equal(node(frame, "ingress")?.replicas, 1);
      assert.equal(node(frame, "greeter")?.replicas, 0, JSON.stringify(frame.nodes));
      assert.deepEqual(
        node(frame, "greeter")?.autoscaler && {
          target: node(frame, "greeter")!.autoscaler!.target,
          mode: node(frame, "greeter")!.autoscaler!.mode,
        },
        { target: 2, mode: "at zero" },
      );
      const decision = node(frame, "greeter")?.autoscaler?.decision;
      if (decision) assert.match(decision, /-> 0 \(autoscaler\)/, "its last decision, if any, took it to zero");
      assert.equal(
        node(frame, "greeter-proxy")?.autoscaler?.target,
        2,
        "the autoscaler answers the ingress over the read-only sg.ops.autoscaler",
      );
    } finally {
      events?.close();
      await up.stop();
    }
  },
);
