/**
 * Each node loads only its own native stack: preprocess never maps onnxruntime, infer never maps libvips
 * (sharp). Checked on the running processes' memory maps (Linux /proc), and in the workspaces' manifests.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { REPO_ROOT, startGraph } from "../helpers/graph.ts";

const ORT = /onnxruntime/;
const VIPS = /libvips|sharp-linux/;

test(
  "isolation - preprocess does not load onnxruntime and infer does not load sharp",
  { skip: existsSync("/proc/self/maps") ? false : "needs Linux /proc to read process memory maps" },
  async () => {
    await using g = await startGraph({ graphs: ["classify"] });
    // one request so both nodes have done real work (lazy loads included)
    const res = await fetch(`${g.ingressUrl}/classify`, {
      method: "POST",
      headers: { "content-type": "image/jpeg" },
      body: readFileSync(`${REPO_ROOT}/data/images/ladybird.jpg`),
    });
    assert.equal(res.status, 200);
    const maps = (node: string) => readFileSync(`/proc/${g.sup.replicas(node)[0]!.child.pid}/maps`, "utf8");
    const pre = maps("preprocess");
    const inf = maps("infer");
    assert.match(pre, VIPS, "preprocess maps libvips (sanity check of the method)");
    assert.doesNotMatch(pre, ORT, "preprocess must not load onnxruntime");
    assert.match(inf, ORT, "infer maps onnxruntime (sanity check of the method)");
    assert.doesNotMatch(inf, VIPS, "infer must not load sharp");
    for (const node of ["ingress"]) {
      const m = maps(node);
      assert.doesNotMatch(m, ORT);
      assert.doesNotMatch(m, VIPS);
    }
  },
);

test("isolation - each workspace declares only its own native dependency", () => {
  const deps = (name: string) =>
    Object.keys(
      (
        JSON.parse(readFileSync(`${REPO_ROOT}/services/${name}/package.json`, "utf8")) as {
          dependencies?: Record<string, string>;
        }
      ).dependencies ?? {},
    );
  assert.ok(deps("preprocess").includes("sharp"));
  assert.ok(!deps("preprocess").includes("onnxruntime-node"));
  assert.ok(deps("infer").includes("onnxruntime-node"));
  assert.ok(!deps("infer").includes("sharp"));
  for (const n of ["ingress", "greeter", "greeter-proxy", "variant", "ab-router"]) {
    assert.ok(!deps(n).includes("sharp") && !deps(n).includes("onnxruntime-node"), n);
  }
  const root = JSON.parse(readFileSync(`${REPO_ROOT}/package.json`, "utf8")) as {
    dependencies: Record<string, string>;
  };
  assert.ok(
    !("sharp" in root.dependencies) && !("onnxruntime-node" in root.dependencies),
    "the root package carries no native model/image stack",
  );
});
