/**
 * A replica that can no longer serve (ctx.fail, e.g. infer's model worker died) leaves its queue group and exits
 * non-zero, so its supervisor replaces it, instead of answering $SRV.PING and failing every request.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { countReplicas, createClient } from "../../runtime/index.ts";
import { GraphError } from "../../subjects/index.ts";
import { REPO_ROOT, startGraph } from "../helpers/graph.ts";

test(
  "health - a failed replica leaves its queue group and exits non-zero; the other replica serves everything",
  { timeout: 120_000 },
  async () => {
    await using g = await startGraph({
      graphs: ["fragile"],
      graphFile: resolve(REPO_ROOT, "test/fixtures/health-graph.config.ts"),
      replicas: { fragile: 2 },
    });
    const client = createClient(g.nc, { caller: "test", defaultTimeoutMs: 3000 });
    const subject = "sg.v1.fragile.work";
    assert.equal(await countReplicas(g.nc, "fragile", 300), 2);
    const exits = g.sup
      .replicas("fragile")
      .map((r) => new Promise<number | null>((res) => r.child.once("exit", (code) => res(code))));

    await assert.rejects(
      client.request(subject, "break"),
      (e: unknown) => e instanceof GraphError && e.code === "MODEL_ERROR",
    );
    const code = await Promise.race(exits);
    assert.equal(code, 1, "the broken replica exits with a failure status");
    assert.equal(await countReplicas(g.nc, "fragile", 300), 1, "and no longer answers discovery");

    const served = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = (await client.requestJson(subject, "ok")) as { replica: string };
      served.add(r.replica);
    }
    assert.equal(served.size, 1, "every later request goes to the healthy replica");
  },
);
