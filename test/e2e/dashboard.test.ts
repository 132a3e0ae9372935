/**
 * GET /dashboard in a real browser: Debian's chromium (headless, never downloaded) driven by playwright-core, on the
 * three graphs as real processes. The page must load with no console or page error and no request to another
 * origin, draw every node, show non-zero rates under traffic, follow a scale of a node within seconds, show the
 * top-5 and the time per hop of an uploaded photo, and mark a node whose replicas are gone.
 *
 * A screenshot goes to the test's temp dir, and to SG_DASHBOARD_SCREENSHOT when set (docs/dashboard.png).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { REPO_ROOT, startGraph } from "../helpers/graph.ts";

const CHROMIUM = "/usr/bin/chromium";
const SKIP = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} is not installed (CI installs Debian's chromium with apt; no browser is ever downloaded)`;
const PHOTO = resolve(REPO_ROOT, "data/images/cat-chelsea.jpg");
/** How long the page may take to reflect a change (readings are one a second). */
const WAIT_MS = 20_000;

/** The little of the DOM that the functions run in the page use (this file compiles without the DOM lib). */
interface El {
  dataset: Record<string, string | undefined>;
  textContent: string | null;
  classList: { contains(name: string): boolean };
  querySelector(selector: string): El | null;
}
declare const document: {
  querySelectorAll(selector: string): Iterable<El> & { length: number };
  querySelector(selector: string): El | null;
  getElementById(id: string): El | null;
};

/** Polls `fn` in the page until it returns a truthy value, at most `ms`; fails with `what` and the last value. */
async function until<T>(page: Page, what: string, fn: () => T | Promise<T>, ms = WAIT_MS): Promise<T> {
  const end = Date.now() + ms;
  let last: T | undefined;
  for (;;) {
    last = await page.evaluate(fn);
    if (last) return last;
    if (Date.now() > end) assert.fail(`${what}: not seen within ${ms} ms (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Requests through the ingress until stopped: a greeting, an A/B request with a rotating user key, a photo. */
function startTraffic(url: string): { stop(): Promise<void>; sent(): number } {
  const photo = readFileSync(PHOTO);
  let stopped = false;
  let n = 0;
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const i = n++;
      await Promise.all([
        fetch(`${url}/greeting/dash${i % 7}`).then((r) => r.arrayBuffer()),
        fetch(`${url}/process/hello?user_key=user-${i % 50}`).then((r) => r.arrayBuffer()),
        fetch(`${url}/classify?top_k=5`, {
          method: "POST",
          headers: { "content-type": "image/jpeg" },
          body: photo,
        }).then((r) => r.arrayBuffer()),
      ]).catch(() => {});
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const running = loop();
  return {
    async stop() {
      stopped = true;
      await running;
    },
    sent: () => n,
  };
}

test(
  "dashboard - the live graph in headless chromium: nodes, rates, scaling, and a photo's top-5 with time per hop",
  { skip: SKIP, timeout: 300_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "sg-dashboard-"));
    let browser: Browser | undefined;
    let traffic: ReturnType<typeof startTraffic> | undefined;
    await using g = await startGraph({ graphs: ["chain", "classify", "ab"] });
    try {
      const url = g.ingressUrl!;
      const origin = new URL(url).origin;
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
      });
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      const problems: string[] = [];
      const foreign: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") problems.push(`console: ${m.text()}`);
      });
      page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
      page.on("request", (r) => {
        let o = "null";
        try {
          o = new URL(r.url()).origin;
        } catch {
          /* unparsable: foreign */
        }
        if (o !== origin) foreign.push(r.url());
      });

      const res = await page.goto(`${url}/dashboard`);
      assert.equal(res?.status(), 200);
      assert.match(res?.headers()["content-security-policy"] ?? "", /default-src 'none'/);

      // every node of the three graphs is drawn, each with its replicas once the first reading is in
      const nodes = Object.keys(g.graph.nodes).sort();
      const drawn = await until(page, "every node drawn with at least one replica", () => {
        const els = [...document.querySelectorAll("g.node")];
        return els.length > 0 && els.every((e) => Number(e.dataset.replicas) > 0)
          ? els.map((e) => e.dataset.node!).sort()
          : null;
      });
      assert.deepEqual(drawn, nodes);
      const edges = await page.evaluate(() =>
        [...document.querySelectorAll("g.edge")].map((e) => `${e.dataset.from}->${e.dataset.to}`).sort(),
      );
      for (const e of [
        "ingress->greeter-proxy",
        "ingress->preprocess",
        "ingress->ab-router",
        "greeter-proxy->greeter",
        "preprocess->infer",
        "ab-router->variant-a",
        "ab-router->variant-b",
      ]) {
        assert.ok(edges.includes(e), `edge ${e} drawn (got ${edges.join(", ")})`);
      }
      assert.match((await page.textContent('g.node[data-node="infer"] text.ep')) ?? "", /^EP (cpu|cuda|webgpu)/);

      // under traffic every called node shows a non-zero rate, and the router its A/B split
      traffic = startTraffic(url);
      const busy = ["greeter", "greeter-proxy", "preprocess", "infer", "ab-router"];
      await until(page, `non-zero requests/s on ${busy.join(", ")}`, () =>
        ["greeter", "greeter-proxy", "preprocess", "infer", "ab-router"].every((n) => {
          const el = document.querySelector(`g.node[data-node="${n}"]`);
          return (
            el && Number(el.dataset.rps) > 0 && Number.parseFloat(el.querySelector("text.rps")?.textContent ?? "") > 0
          );
        }),
      );
      assert.match(
        (await page.textContent('g.node[data-node="ab-router"] text.split')) ?? "",
        /^A\/B a \d+ \(\d+%\) · b \d+ \(\d+%\)$/,
      );
      assert.match((await page.textContent('g.node[data-node="infer"] text.fill')) ?? "", /^batch fill \d+%$/);

      // scaling a node shows on the page within seconds
      const scaled = await g.sup.scale("greeter", 3);
      assert.equal(scaled, 3);
      await until(page, "greeter at 3 replicas", () => {
        const el = document.querySelector('g.node[data-node="greeter"]');
        return el?.dataset.replicas === "3" && /^3 replicas/.test(el.querySelector("text.replicas")?.textContent ?? "");
      });
      await traffic.stop();
      traffic = undefined;

      // try-it: a photo gives five bars and the time of each hop
      await page.setInputFiles("#file", PHOTO);
      await until(page, "five bars", () => document.querySelectorAll("#bars li").length === 5);
      const hops = await until(page, "time per hop", () => {
        const li = [...document.querySelectorAll("#hop-list li")];
        return li.length ? li.map((l): [string, string] => [l.dataset.hop!, l.textContent!]) : null;
      });
      const hop = new Map(hops);
      for (const h of ["ingress", "preprocess"])
        assert.match(hop.get(h) ?? "", new RegExp(`^${h} [0-9.]+ ms$`), `hop ${h} shown`);
      assert.match(
        hop.get("infer") ?? "",
        /^infer [0-9.]+ ms \(queue [0-9.]+ ms · compute [0-9.]+ ms\)$/,
        "infer's hop with its queue wait and compute",
      );
      assert.match(hop.get("total") ?? "", /^total [0-9.]+ ms at the ingress · [0-9.]+ ms in the browser$/);
      const scores = await page.$$eval("#bars .score", (els) => els.map((e) => Number.parseFloat(e.textContent ?? "")));
      assert.equal(scores.length, 5);
      for (let i = 1; i < scores.length; i++) assert.ok(scores[i - 1]! >= scores[i]!, "bars in descending order");

      // greeting and A/B boxes
      await page.fill("#greeting-name", "Grace");
      await page.click("#greeting-form button");
      await until(page, "a greeting", () => /Grace/.test(document.getElementById("greeting-out")?.textContent ?? ""));
      await page.fill("#ab-key", "user-42");
      await page.click("#ab-form button");
      const variant = await until(page, "a variant", () => document.getElementById("ab-out")?.dataset.variant);
      assert.ok(variant === "A" || variant === "B");

      const shot = join(dir, "dashboard.png");
      await page.screenshot({ path: shot, fullPage: true });
      if (process.env.SG_DASHBOARD_SCREENSHOT) copyFileSync(shot, resolve(process.env.SG_DASHBOARD_SCREENSHOT));

      // a node left without a replica stands out (the test's supervisor does not restart it)
      for (const r of g.sup.replicas("variant-a")) r.child.kill("SIGKILL");
      await until(page, "variant-a drawn as down with 0 replicas", () => {
        const el = document.querySelector('g.node[data-node="variant-a"]');
        return (
          el?.dataset.replicas === "0" &&
          el.classList.contains("down") &&
          el.querySelector("text.replicas")?.textContent === "0 replicas"
        );
      });

      assert.deepEqual(problems, [], "no console or page errors");
      assert.deepEqual(foreign, [], "no request to another origin");
    } finally {
      await traffic?.stop();
      await browser?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
