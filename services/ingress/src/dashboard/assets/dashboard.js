// servegraph dashboard: draws the graph from the `topology` event of /dashboard/events and updates it from each
// `status` event; the panels call the ingress's own routes. Plain browser JavaScript, no dependencies, same origin.
(() => {
  "use strict";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const W = 290,
    GAP_X = 140,
    GAP_Y = 14,
    PAD = 16,
    LINE = 15,
    TOP = 22;
  const $ = (id) => document.getElementById(id);

  /** @type {{graph: string, nodes: any[], edges: any[]} | null} */
  let topo = null;
  /** node name -> its drawn card */
  const cards = new Map();
  /** drawn edges: {edge, g} */
  let edgeEls = [];
  let httpNode = null;

  function svg(tag, attrs, parent) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (parent) parent.appendChild(e);
    return e;
  }
  function text(parent, x, y, cls, content) {
    const t = svg("text", { x, y, class: cls }, parent);
    t.textContent = content || "";
    return t;
  }
  const fmtMs = (x) =>
    (x === null || x === undefined ? "–" : x < 1 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : String(Math.round(x))) +
    " ms";
  const fmtRate = (x) => (x >= 100 ? String(Math.round(x)) : x.toFixed(1));
  const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + "…" : s);

  // --- the graph ---------------------------------------------------------------------------------------------
  function linesOf(n) {
    let lines = 5; // title, replicas, traffic, latency, last error
    if (n.batching) lines += 2; // execution provider and queue, batch fill
    if (n.kind === "ab-router") lines += 1; // A/B split
    if (n.autoscale) lines += 2; // policy and the autoscaler's figures; its last decision
    return lines;
  }

  function build(t) {
    topo = t;
    $("graph-name").textContent = t.graph;
    const root = $("graph-svg");
    root.replaceChildren();
    cards.clear();
    const defs = svg("defs", {}, root);
    const marker = svg(
      "marker",
      {
        id: "arrow",
        viewBox: "0 0 10 10",
        refX: 10,
        refY: 5,
        markerWidth: 7,
        markerHeight: 7,
        orient: "auto-start-reverse",
      },
      defs,
    );
    svg("path", { d: "M0,0 L10,5 L0,10 z" }, marker);
    const edgeLayer = svg("g", { class: "edges" }, root);
    const nodeLayer = svg("g", { class: "nodes" }, root);

    const columns = [];
    for (const n of t.nodes) (columns[n.column] = columns[n.column] || []).push(n);
    const heights = columns.map((col) => col.reduce((a, n) => a + linesOf(n) * LINE + PAD + GAP_Y, -GAP_Y));
    const total = Math.max(0, ...heights);
    columns.forEach((col, c) => {
      let y = PAD + (total - heights[c]) / 2;
      for (const n of col) {
        const h = linesOf(n) * LINE + PAD;
        drawNode(nodeLayer, n, PAD + c * (W + GAP_X), y, h);
        y += h + GAP_Y;
      }
    });
    const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GAP_X;
    const height = total + PAD * 2;
    root.setAttribute("viewBox", `0 0 ${width} ${height}`);
    root.setAttribute("width", String(width));
    root.setAttribute("height", String(height));

    httpNode = (t.nodes.find((n) => n.http) || {}).name || null;
    edgeEls = t.edges.map((e) => drawEdge(edgeLayer, e)).filter(Boolean);
    showPanels(t);
  }

  function drawNode(layer, n, x, y, h) {
    const g = svg(
      "g",
      { class: `node${n.http ? " http" : ""} down`, "data-node": n.name, "data-replicas": "0", "data-rps": "0" },
      layer,
    );
    svg("title", {}, g).textContent =
      `${n.name}: ${n.description}${n.http ? " (requests/s, errors and latency: the HTTP answers of the replica serving this page)" : ""}`;
    svg("rect", { class: "box", x, y, width: W, height: h, rx: 7 }, g);
    const L = (i) => y + TOP + i * LINE;
    const tx = x + 10,
      mid = x + W / 2 + 6;
    text(g, tx, L(0), "title", n.name);
    text(g, x + W - 10, L(0), "kind", n.kind).setAttribute("text-anchor", "end");
    const range = n.replicas.min === n.replicas.max ? `${n.replicas.min}` : `${n.replicas.min}..${n.replicas.max}`;
    const el = {
      replicas: text(g, tx, L(1), "replicas", "0 replicas"),
      range: text(g, x + W - 10, L(1), "muted", `want ${range}`),
      inflight: text(g, tx, L(2), "inflight", "in flight 0"),
      rps: text(g, tx + 86, L(2), "rps", "0.0 req/s"),
      err: text(g, tx + 184, L(2), "err", "0.0 err/s"),
      lat: text(g, tx, L(3), "lat", "p50 – · p99 –"),
      totals: text(g, x + W - 10, L(3), "muted", ""),
      lasterr: text(g, tx, L(4), "lasterr muted", "last error: none"),
    };
    el.range.setAttribute("text-anchor", "end");
    el.totals.setAttribute("text-anchor", "end");
    let i = 5;
    if (n.batching) {
      el.ep = text(g, tx, L(i++), "ep", "execution provider –");
      const fy = L(i++);
      el.fill = text(g, tx, fy, "fill", "batch fill –");
      svg("rect", { class: "fill-bg", x: mid + 40, y: fy - 9, width: W / 2 - 56, height: 9, rx: 2 }, g);
      el.fillBar = svg("rect", { class: "fill", x: mid + 40, y: fy - 9, width: 0, height: 9, rx: 2 }, g);
      el.fillMax = W / 2 - 56;
    }
    if (n.kind === "ab-router") el.split = text(g, tx, L(i++), "split", "A/B split: no answers yet");
    if (n.autoscale) {
      el.scale = text(
        g,
        tx,
        L(i++),
        "scale",
        `autoscale ${n.autoscale.metric} ${target(n.autoscale.metric, n.autoscale.target)}`,
      );
      el.decision = text(g, tx, L(i++), "decision muted", "");
    }
    cards.set(n.name, { n, g, el, x, y, h, out: 0, in: 0 });
  }

  function drawEdge(layer, e) {
    const a = cards.get(e.from),
      b = cards.get(e.to);
    if (!a || !b) return null;
    const outs = topo.edges.filter((x) => x.from === e.from);
    const ins = topo.edges.filter((x) => x.to === e.to);
    const y1 = a.y + (a.h * (outs.indexOf(e) + 1)) / (outs.length + 1);
    const y2 = b.y + (b.h * (ins.indexOf(e) + 1)) / (ins.length + 1);
    const x1 = a.x + W,
      x2 = b.x;
    const dx = (x2 - x1) / 2;
    const g = svg("g", { class: `edge${e.via.length ? "" : " deps"}`, "data-from": e.from, "data-to": e.to }, layer);
    svg("path", { d: `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }, g);
    const label = e.via.length ? e.via.join(", ") : "dependsOn";
    // An edge over more than one column passes behind the cards between: its label goes just before its target.
    const far = b.n.column - a.n.column > 1;
    const t = text(g, far ? x2 - GAP_X / 2 : (x1 + x2) / 2, far ? y2 - 6 : (y1 + y2) / 2 - 5, "", clip(label, 30));
    t.setAttribute("text-anchor", "middle");
    svg("title", {}, g).textContent =
      `${e.from} → ${e.to}: ${label}${e.dependsOn && e.via.length ? " (also dependsOn)" : ""}`;
    return { e, g };
  }

  // --- live figures ------------------------------------------------------------------------------------------
  function update(frame) {
    if (!topo) return;
    const conn = $("conn");
    const at = new Date(frame.at);
    conn.textContent = frame.error ? `${frame.error} (showing the last figures)` : `live · ${at.toLocaleTimeString()}`;
    conn.className = frame.error ? "conn bad" : "conn ok";
    const live = new Map(frame.nodes.map((n) => [n.node, n]));
    for (const [name, c] of cards) {
      const n = live.get(name);
      const replicas = n ? n.replicas : 0;
      c.g.classList.toggle("down", replicas === 0);
      c.g.dataset.replicas = String(replicas);
      c.g.dataset.rps = n ? String(n.requests_per_s) : "0";
      const hosts = n
        ? Object.entries(n.hosts)
            .map(([h, k]) => `${h} ×${k}`)
            .join(", ")
        : "";
      c.el.replicas.textContent =
        replicas === 0 ? "0 replicas" : `${replicas} replica${replicas === 1 ? "" : "s"} · ${clip(hosts, 26)}`;
      if (!n) continue;
      c.el.inflight.textContent = `in flight ${n.in_flight}`;
      c.el.rps.textContent = `${fmtRate(n.requests_per_s)} req/s`;
      c.el.err.textContent = `${fmtRate(n.errors_per_s)} err/s`;
      c.el.err.classList.toggle("has", n.errors_per_s > 0);
      c.el.lat.textContent = `p50 ${fmtMs(n.p50_ms)} · p99 ${fmtMs(n.p99_ms)}`;
      c.el.totals.textContent = `${n.requests} req · ${n.errors} err`;
      c.el.lasterr.textContent = `last error: ${n.last_error ? clip(n.last_error, 32) : "none"}`;
      c.el.lasterr.classList.toggle("has", Boolean(n.last_error));
      if (n.last_error) svg("title", {}, c.el.lasterr).textContent = n.last_error;
      if (c.el.ep) {
        const b = n.batch;
        c.el.ep.textContent = b
          ? `EP ${b.execution_provider}${b.adapter ? ` (${b.adapter})` : ""} · queue ${b.queue_depth} · avg batch ${b.avg_batch_size.toFixed(1)}/${b.max_batch_size}`
          : "execution provider –";
        c.el.fill.textContent = b ? `batch fill ${Math.round(b.batch_fill * 100)}%` : "batch fill –";
        c.el.fillBar.setAttribute("width", String(b ? Math.min(1, b.batch_fill) * c.el.fillMax : 0));
      }
      if (c.el.split) c.el.split.textContent = splitOf(name, live);
      if (c.el.scale) showAutoscale(c, n.autoscaler);
    }
    for (const { e, g } of edgeEls) {
      const n = live.get(e.to);
      g.classList.toggle("busy", Boolean(n && n.requests_per_s > 0 && e.via.length));
    }
  }

  function target(metric, t) {
    return metric === "batchFill" ? `${Math.round(t * 100)}%` : `${t}/replica`;
  }
  function value(metric, v) {
    return v === null ? "–" : metric === "batchFill" ? `${Math.round(v * 100)}%` : String(Math.round(v * 10) / 10);
  }
  /** The policy from the config, and, when `servegraph up`'s autoscaler reports the node, its figures and last decision. */
  function showAutoscale(c, a) {
    const p = c.n.autoscale;
    const t = a && a.target !== null ? a.target : p.target;
    const live = a
      ? ` · now ${value(p.metric, a.value)} · want ${a.desired ?? "–"}${a.mode && a.mode !== "auto" ? ` · ${a.mode}` : ""}`
      : "";
    c.el.scale.textContent = clip(`autoscale ${p.metric} ${target(p.metric, t)}${live}`, 46);
    const when = a && a.decided_at ? new Date(a.decided_at).toLocaleTimeString() + " " : "";
    c.el.decision.textContent = a && a.decision ? clip(`last: ${when}${a.decision}`, 46) : "";
    c.g.dataset.autoscaler = a ? "1" : "";
    // Setting textContent above dropped the last reading's tooltips.
    if (a) {
      for (const el of [c.el.scale, c.el.decision])
        svg("title", {}, el).textContent =
          `autoscaler: ${p.metric}, target ${target(p.metric, t)}, value ${value(p.metric, a.value)}, desired ${a.desired ?? "–"}, ${a.mode ?? "auto"}; last decision: ${a.decision ? when + a.decision : "none"}`;
    }
  }

  /**
   * The A/B split of a router: its own decisions by variant (counted by ab-router where it decides, so a variant
   * scaled to zero keeps its share), labelled by the node each variant's edge goes to.
   */
  function splitOf(router, live) {
    const d = live.get(router)?.ab_decisions;
    if (!d) return "A/B split: no answers yet";
    const counts = Object.entries(d).sort(([a], [b]) => a.localeCompare(b));
    const sum = counts.reduce((a, [, n]) => a + n, 0);
    if (sum === 0) return "A/B split: no answers yet";
    return "A/B " + counts.map(([v, n]) => `${v.toLowerCase()} ${n} (${Math.round((100 * n) / sum)}%)`).join(" · ");
  }

  // --- the panels --------------------------------------------------------------------------------------------
  function routes(t) {
    return new Set(t.edges.filter((e) => e.from === httpNode).flatMap((e) => e.via));
  }
  function showPanels(t) {
    const r = routes(t);
    $("try-classify").hidden = !r.has("POST /classify");
    $("try-greeting").hidden = !r.has("GET /greeting/:name");
    $("try-ab").hidden = !r.has("GET /process/:message");
  }

  async function callJson(url, init) {
    const res = await fetch(url, init);
    let body = null;
    try {
      body = await res.json();
    } catch {
      /* not JSON */
    }
    if (!res.ok)
      throw new Error(body && body.code ? `${res.status} ${body.code}: ${body.message}` : `HTTP ${res.status}`);
    return { res, body };
  }
  function fail(el, err) {
    el.textContent = err instanceof Error ? err.message : String(err);
    el.classList.add("bad");
  }

  let previewUrl = null;
  async function classify(file) {
    const status = $("classify-status");
    status.classList.remove("bad");
    status.textContent = `classifying ${file.name || "image"} (${Math.round(file.size / 1024)} KB)…`;
    $("bars").replaceChildren();
    $("hops").hidden = true;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    $("preview").src = previewUrl;
    $("preview").hidden = false;
    const t0 = performance.now();
    try {
      const { res, body } = await callJson("/classify?top_k=5", {
        method: "POST",
        headers: { "content-type": file.type || "application/octet-stream" },
        body: file,
      });
      const rtt = performance.now() - t0;
      status.textContent = `top ${body.length} of ${file.name || "image"}`;
      const top = Math.max(...body.map((p) => p.score), 1e-9);
      for (const p of body) {
        const li = document.createElement("li");
        const label = document.createElement("span");
        label.className = "label";
        label.textContent = label.title = p.label;
        const track = document.createElement("span");
        track.className = "track";
        const bar = document.createElement("span");
        bar.className = "bar";
        bar.style.width = `${Math.max(1, (100 * p.score) / top)}%`;
        track.appendChild(bar);
        const score = document.createElement("span");
        score.className = "score";
        score.textContent = `${(100 * p.score).toFixed(1)}%`;
        li.append(label, track, score);
        $("bars").appendChild(li);
      }
      showHops(res.headers.get("server-timing"), rtt);
    } catch (err) {
      fail(status, err);
    }
  }

  function showHops(header, rttMs) {
    const entries = (header || "")
      .split(",")
      .map((p) => {
        const [name, ...params] = p.trim().split(";");
        const dur = params.map((x) => /^dur=([0-9.]+)$/.exec(x.trim())).find(Boolean);
        return dur ? { name, ms: Number(dur[1]) } : null;
      })
      .filter(Boolean);
    // A dotted name is a detail of the hop before the dot (infer.queue): shown with it, not as a hop of its own.
    const hops = entries.filter((e) => e.name !== "total" && !e.name.includes("."));
    const details = (hop) =>
      entries.filter((e) => e.name.startsWith(`${hop}.`)).map((e) => `${e.name.slice(hop.length + 1)} ${fmtMs(e.ms)}`);
    const total = entries.find((e) => e.name === "total");
    const bar = $("hop-bar"),
      list = $("hop-list");
    bar.replaceChildren();
    list.replaceChildren();
    const sum = hops.reduce((a, e) => a + e.ms, 0) || 1;
    for (const h of hops) {
      const cls = ["ingress", "preprocess", "infer"].includes(h.name) ? `hop-${h.name}` : "hop-other";
      const seg = document.createElement("span");
      seg.className = cls;
      seg.title = `${h.name} ${fmtMs(h.ms)}`;
      seg.style.width = `${(100 * h.ms) / sum}%`;
      bar.appendChild(seg);
      const li = document.createElement("li");
      li.dataset.hop = h.name;
      const key = document.createElement("i");
      key.className = cls;
      const more = details(h.name);
      li.append(key, `${h.name} ${fmtMs(h.ms)}${more.length ? ` (${more.join(" · ")})` : ""}`);
      list.appendChild(li);
    }
    const li = document.createElement("li");
    li.dataset.hop = "total";
    li.textContent = `${total ? `total ${fmtMs(total.ms)} at the ingress · ` : ""}${fmtMs(rttMs)} in the browser`;
    list.appendChild(li);
    $("hops").hidden = false;
  }

  function wirePanels() {
    const drop = $("drop"),
      file = $("file");
    file.addEventListener("change", () => {
      if (file.files && file.files[0]) void classify(file.files[0]);
    });
    drop.addEventListener("dragover", (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      const f = e.dataTransfer && e.dataTransfer.files[0];
      if (f) void classify(f);
    });
    drop.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        file.click();
      }
    });

    $("greeting-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const out = $("greeting-out");
      out.classList.remove("bad");
      out.textContent = "…";
      try {
        const { body } = await callJson(`/greeting/${encodeURIComponent($("greeting-name").value)}`);
        out.textContent = `${body.message} (served by ${body.served_by})`;
      } catch (err) {
        fail(out, err);
      }
    });
    $("ab-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const out = $("ab-out");
      out.classList.remove("bad");
      out.textContent = "…";
      try {
        const key = $("ab-key").value,
          msg = $("ab-message").value;
        const { body } = await callJson(`/process/${encodeURIComponent(msg)}?user_key=${encodeURIComponent(key)}`);
        const v = body.ab_test_result.selected_variant;
        const badge = document.createElement("span");
        badge.className = `variant ${v}`;
        badge.textContent = `variant ${v}`;
        out.replaceChildren(
          badge,
          ` for ${body.ab_test_result.user_key} (gate ${body.ab_test_result.gate_name}, ${body.ab_test_result.decided_by}): ${body.response.message}`,
        );
        out.dataset.variant = v;
      } catch (err) {
        fail(out, err);
      }
    });
  }

  // --- the feed ----------------------------------------------------------------------------------------------
  function connect() {
    const es = new EventSource("/dashboard/events");
    es.addEventListener("topology", (e) => build(JSON.parse(e.data)));
    es.addEventListener("status", (e) => update(JSON.parse(e.data)));
    es.addEventListener("open", () => {
      $("conn").textContent = "connected, waiting for the first reading…";
      $("conn").className = "conn ok";
    });
    es.addEventListener("error", () => {
      $("conn").textContent = "disconnected from the ingress; reconnecting…";
      $("conn").className = "conn bad";
    });
    window.addEventListener("pagehide", () => es.close());
  }

  wirePanels();
  connect();
})();
