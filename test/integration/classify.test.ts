/**
 * Image classification end to end: ingress -> preprocess -> infer as real processes on a real nats-server,
 * with the deterministic generated model. HTTP over a socket, and direct NATS to the preprocess subject.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import sharp from "sharp";
import { createClient } from "../../runtime/client.ts";
import { GraphError } from "../../subjects/errors.ts";
import { isTimingDetail, parseServerTiming } from "../../subjects/server-timing.ts";
import { Predictions } from "../../subjects/schemas.ts";
import { REPO_ROOT, startGraph, type RunningGraph } from "../helpers/graph.ts";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = async (r: Response): Promise<any> => r.json();
const image = (name: string) => readFileSync(`${REPO_ROOT}/data/images/${name}`);
let g: RunningGraph;
let url: string;

before(async () => {
  g = await startGraph({ graphs: ["classify"] });
  url = g.ingressUrl!;
});
after(async () => g?.stop());

const post = (body: string | Uint8Array, contentType: string, query = "") =>
  fetch(`${url}/classify${query}`, { method: "POST", body, headers: { "content-type": contentType } });

test("classify - a raw JPEG body answers top-5 labels with scores, in descending order", async () => {
  const res = await post(image("cat-chelsea.jpg"), "image/jpeg");
  assert.equal(res.status, 200);
  const preds = Predictions.parse(await json(res));
  assert.equal(preds.length, 5);
  for (let i = 1; i < preds.length; i++) assert.ok(preds[i - 1]!.score >= preds[i]!.score);
  assert.ok(preds.every((p) => p.score > 0 && p.score < 1));
  const labels: string[] = await json(await fetch(`${url}/labels`));
  assert.equal(labels.length, 1000);
  assert.ok(preds.every((p) => labels.includes(p.label)));
  // deterministic: the same image gives the same answer
  assert.deepEqual(Predictions.parse(await json(await post(image("cat-chelsea.jpg"), "image/jpeg"))), preds);
});

test("classify - the answer's Server-Timing gives each hop (ingress, preprocess, infer with its queue and compute), adding up to total", async () => {
  const res = await post(image("cat-chelsea.jpg"), "image/jpeg");
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  const entries = parseServerTiming(res.headers.get("server-timing") ?? undefined);
  assert.deepEqual(
    entries.map((e) => e.name),
    ["ingress", "preprocess", "infer", "infer.queue", "infer.compute", "total"],
  );
  assert.ok(entries.every((e) => e.durMs >= 0));
  const hops = entries.filter((e) => !isTimingDetail(e) && e.name !== "total").reduce((a, e) => a + e.durMs, 0);
  const total = entries.find((e) => e.name === "total")!.durMs;
  assert.ok(Math.abs(hops - total) < 0.05, `hops ${hops} add up to total ${total}`);
});

test("classify - PNG with alpha, grayscale JPEG, octet-stream and top_k", async () => {
  const png = await post(image("retina-alpha.png"), "image/png", "?top_k=3");
  assert.equal(png.status, 200);
  assert.equal((await json(png)).length, 3);
  const gray = await post(image("cameraman-gray.jpg"), "application/octet-stream", "?top_k=1000");
  assert.equal(gray.status, 200);
  const all = Predictions.parse(await json(gray));
  assert.equal(all.length, 1000);
  assert.ok(Math.abs(all.reduce((a, p) => a + p.score, 0) - 1) < 1e-6, "softmax sums to 1");
});

test("classify - bad input gets the right status and code, and the graph keeps serving", async () => {
  const cases: [string, () => Promise<Response>, number, string][] = [
    [
      "random bytes",
      () =>
        post(
          new Uint8Array(2048).map((_, i) => (i * 7919) % 251),
          "image/jpeg",
        ),
      400,
      "INVALID_IMAGE",
    ],
    ["truncated JPEG", () => post(image("cat-chelsea.jpg").subarray(0, 5000), "image/jpeg"), 400, "INVALID_IMAGE"],
    ["empty body", () => post(new Uint8Array(0), "image/jpeg"), 400, "INVALID_IMAGE"],
    ["wrong content type", () => post("a,b\n1,2", "text/csv"), 415, "UNSUPPORTED_MEDIA_TYPE"],
    ["top_k 0", () => post(image("cat-chelsea.jpg"), "image/jpeg", "?top_k=0"), 400, "BAD_REQUEST"],
    ["top_k 1001", () => post(image("cat-chelsea.jpg"), "image/jpeg", "?top_k=1001"), 400, "BAD_REQUEST"],
    [
      "top_k in JSON",
      () => post(JSON.stringify({ image_url: "http://example.com/a.jpg", top_k: 5000 }), "application/json"),
      400,
      "BAD_REQUEST",
    ],
    ["unknown JSON key", () => post(JSON.stringify({ image: "x" }), "application/json"), 400, "BAD_REQUEST"],
    ["invalid JSON", () => post("{", "application/json"), 400, "BAD_REQUEST"],
    ["body over the limit", () => post(new Uint8Array(9 * 1024 * 1024), "image/jpeg"), 413, "PAYLOAD_TOO_LARGE"],
    [
      "private URL",
      () => post(JSON.stringify({ image_url: "http://127.0.0.1:1/cat.jpg" }), "application/json"),
      400,
      "URL_NOT_ALLOWED",
    ],
    [
      "metadata URL",
      () => post(JSON.stringify({ image_url: "http://169.254.169.254/latest/meta-data/" }), "application/json"),
      400,
      "URL_NOT_ALLOWED",
    ],
    [
      "file URL",
      () => post(JSON.stringify({ image_url: "file:///etc/passwd" }), "application/json"),
      400,
      "URL_NOT_ALLOWED",
    ],
    ["not a URL", () => post(JSON.stringify({ image_url: "not a url" }), "application/json"), 400, "BAD_REQUEST"],
  ];
  for (const [what, send, status, code] of cases) {
    const res = await send();
    const body = await json(res);
    assert.equal(res.status, status, `${what}: ${JSON.stringify(body)}`);
    assert.equal(body.code, code, what);
    assert.equal(typeof body.message, "string");
  }
  assert.equal((await post(image("ladybird.jpg"), "image/jpeg")).status, 200, "still serving");
});

test("classify - a pixel bomb is refused by its header, not decoded", async () => {
  // 10000 x 10000 solid PNG: tiny on the wire, 100 MP (over the 50 MP limit) when decoded.
  const bomb = await sharp({ create: { width: 10000, height: 10000, channels: 3, background: "#808080" } })
    .png({ compressionLevel: 9 })
    .toBuffer();
  assert.ok(bomb.length < 1024 * 1024);
  const res = await post(bomb, "image/png");
  assert.equal(res.status, 413);
  assert.equal((await json(res)).code, "PAYLOAD_TOO_LARGE");
});

test("classify - image_url is fetched when private addresses are allowed for local testing", async () => {
  // A second graph with ALLOW_PRIVATE_IMAGE_URLS=true and a local image server on loopback.
  const img = image("kite-sky-small.jpg");
  const server: Server = createServer((req, res) => {
    if (req.url === "/kite.jpg") {
      res.writeHead(200, { "content-type": "image/jpeg" });
      res.end(img);
    } else if (req.url === "/redirect") {
      res.writeHead(302, { location: "/kite.jpg" });
      res.end();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  try {
    await using g2 = await startGraph({
      graphs: ["classify"],
      nodeEnv: { ingress: { ALLOW_PRIVATE_IMAGE_URLS: "true" } },
    });
    const ok = await fetch(`${g2.ingressUrl}/classify`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ image_url: `http://127.0.0.1:${port}/redirect`, top_k: 2 }),
    });
    assert.equal(ok.status, 200, JSON.stringify(await ok.clone().json()));
    const viaUrl = Predictions.parse(await json(ok));
    const direct = Predictions.parse(
      await json(
        await fetch(`${g2.ingressUrl}/classify?top_k=2`, {
          method: "POST",
          headers: { "content-type": "image/jpeg" },
          body: img,
        }),
      ),
    );
    assert.deepEqual(viaUrl, direct, "fetching the URL gives the same answer as posting the bytes");
    const missing = await fetch(`${g2.ingressUrl}/classify`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ image_url: `http://127.0.0.1:${port}/nope.jpg` }),
    });
    assert.equal(missing.status, 502);
    assert.equal((await json(missing)).code, "UPSTREAM_FETCH_FAILED");
  } finally {
    server.close();
  }
});

test("classify - direct NATS: image bytes to the preprocess subject give the same JSON", async () => {
  const client = createClient(g.nc, { caller: "test", defaultTimeoutMs: 10_000 });
  const viaNats = await client.requestJson("sg.v1.preprocess.classify", image("coffee-cup.jpg"), {
    headers: { "Graph-Top-K": "4" },
    schema: Predictions,
  });
  const viaHttp = Predictions.parse(await json(await post(image("coffee-cup.jpg"), "image/jpeg", "?top_k=4")));
  assert.deepEqual(viaNats, viaHttp);
  const err = await client
    .request("sg.v1.preprocess.classify", new TextEncoder().encode("hello"))
    .catch((e: unknown) => e);
  assert.ok(err instanceof GraphError && err.code === "INVALID_IMAGE");
});

test("classify - concurrent callers are micro-batched and each gets its own row", async () => {
  const client = createClient(g.nc, { caller: "test", defaultTimeoutMs: 30_000 });
  const names = [
    "astronaut.jpg",
    "ladybird.jpg",
    "fallen-leaf.jpg",
    "water-drop.jpg",
    "yellow-flower.jpg",
    "forest-path.jpg",
    "coins-gray.jpg",
    "rocket-launch.jpg",
  ];
  // one at a time: the reference answer of each image
  const singles: { label: string; score: number }[][] = [];
  for (const n of names)
    singles.push(await client.requestJson("sg.v1.preprocess.classify", image(n), { schema: Predictions }));
  const before = await inferStats(g);
  // all at once, several rounds, so the batcher sees them together
  for (let round = 0; round < 3; round++) {
    const together = await Promise.all(
      names.map((n) => client.requestJson("sg.v1.preprocess.classify", image(n), { schema: Predictions })),
    );
    together.forEach((preds, i) => {
      assert.deepEqual(
        preds.map((p) => p.label),
        singles[i]!.map((p) => p.label),
        `${names[i]} got its own row`,
      );
      preds.forEach((p, j) => assert.ok(Math.abs(p.score - singles[i]![j]!.score) < 1e-4));
    });
  }
  const afterStats = await inferStats(g);
  const batches = afterStats.batches - before.batches;
  const items = afterStats.batched_requests - before.batched_requests;
  assert.equal(items, names.length * 3);
  assert.equal(
    afterStats.inputs_by_dtype.uint8 - before.inputs_by_dtype.uint8,
    items,
    "preprocess sends uint8 pixels, not float32",
  );
  assert.equal(afterStats.inputs_by_dtype.float32, before.inputs_by_dtype.float32);
  assert.ok(batches < items, `expected batches larger than 1: ${items} requests in ${batches} forward passes`);
});

interface InferStats {
  batches: number;
  batched_requests: number;
  inputs_by_dtype: { uint8: number; float32: number };
}
async function inferStats(g: RunningGraph): Promise<InferStats> {
  const msg = await g.nc.request("$SRV.STATS.infer", new Uint8Array(0), { timeout: 2000 });
  return (msg.json() as { endpoints: { data: InferStats }[] }).endpoints[0]!.data;
}
