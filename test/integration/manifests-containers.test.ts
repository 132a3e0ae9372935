import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { CONTAINERFILE, SRV_PING_PROBE } from "../../ops/manifests/index.ts";
import { REPO_ROOT } from "../helpers/graph.ts";

/**
 * deploy/containers/Containerfile without a container engine (containers cannot run on the test machines): what
 * it copies exists, and its own `npm ci` line, run in a temp directory laid out as its deps stage lays out /app,
 * installs the preprocess image without onnxruntime-node and the infer image without sharp, each able to load
 * its native library with no install script run. npm works from its cache (--offline): nothing is downloaded.
 */

const containerfile = readFileSync(join(REPO_ROOT, CONTAINERFILE), "utf8");
/** The instructions, continuation lines joined, comments dropped. */
const instructions = containerfile
  .replace(/\\\n\s*/g, " ")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"));
const WORKSPACES = readdirSync(join(REPO_ROOT, "services"))
  .filter((d) => existsSync(join(REPO_ROOT, "services", d, "package.json")))
  .sort();

/** The instructions of each build stage, in order (stage 0 is `deps`). */
function stages(): string[][] {
  const out: string[][] = [];
  for (const i of instructions) {
    if (/^FROM\s/i.test(i)) out.push([]);
    else out.at(-1)?.push(i);
  }
  return out;
}

/** `COPY [--chown..] src... dest` of a stage: [sources, dest], with ${WORKSPACE} filled in; `COPY --from` left out. */
function copies(stage: readonly string[], ws: string): [string[], string][] {
  return stage
    .filter((i) => /^COPY\s/i.test(i) && !/--from=/.test(i))
    .map((i) => {
      const parts = i
        .replace(/\$\{WORKSPACE\}/g, ws)
        .split(/\s+/)
        .slice(1)
        .filter((p) => !p.startsWith("--"));
      return [parts.slice(0, -1), parts.at(-1)!];
    });
}

/** .containerignore patterns as path prefixes (the file uses only plain paths and `**\/` prefixes). */
const IGNORED = readFileSync(join(REPO_ROOT, ".containerignore"), "utf8")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"));
const ignored = (path: string): boolean =>
  IGNORED.some((p) =>
    p.startsWith("**/") ? path.split("/").includes(p.slice(3)) : path === p || path.startsWith(`${p}/`),
  );

test("manifests-containers - every COPY source of the Containerfile exists for every workspace, outside .containerignore", () => {
  assert.ok(WORKSPACES.includes("preprocess") && WORKSPACES.includes("infer"));
  const [deps, final] = stages();
  assert.ok(deps && final, "two stages: deps and the node");
  let n = 0;
  for (const ws of WORKSPACES) {
    for (const [sources] of [...copies(deps, ws), ...copies(final, ws)]) {
      for (const s of sources) {
        assert.ok(existsSync(join(REPO_ROOT, s)), `${ws}: COPY ${s}: no such file in the repository`);
        assert.ok(!ignored(s), `${ws}: COPY ${s} is excluded by .containerignore`);
        n++;
      }
    }
  }
  assert.ok(n > WORKSPACES.length * 5);
  // what the manifests run in the image is in it
  assert.ok(
    copies(final, "x").some(([s]) => s.some((p) => SRV_PING_PROBE.startsWith(`${p}/`) || p === SRV_PING_PROBE)),
    "the $SRV.PING probe script is copied",
  );
  assert.ok(
    copies(final, "x").some(([s]) => s.includes("services/x")),
    "the workspace's sources are copied",
  );
  // docker reads .dockerignore, podman .containerignore: the same patterns
  const patterns = (f: string) =>
    readFileSync(join(REPO_ROOT, f), "utf8")
      .split("\n")
      .filter((l) => l.trim() && !l.startsWith("#"));
  assert.deepEqual(patterns(".dockerignore"), patterns(".containerignore"));
  // non-root, numeric (runAsNonRoot can check it), on the Node 24 (LTS) slim base
  assert.match(containerfile, /^USER 1000:1000$/m);
  assert.match(containerfile, /^ARG BASE=node:24-bookworm-slim$/m);
});

/** The deps stage's `npm ci` command, without what follows it (`&& npm cache clean` must not run here). */
function npmCi(ws: string): string[] {
  const run = stages()[0]!.find((i) => /^RUN npm ci\s/.test(i));
  assert.ok(run, "the deps stage runs npm ci");
  const cmd = run
    .slice(4)
    .split("&&")[0]!
    .trim()
    .replace(/\$\{WORKSPACE\}/g, ws)
    .split(/\s+/);
  assert.ok(cmd.includes("--ignore-scripts"), "no dependency's install script runs (package.json allowScripts)");
  assert.ok(cmd.includes("--omit=dev"));
  return cmd;
}

/** Lays out the deps stage's COPYs in a temp dir and runs its npm ci there, offline; null when npm's cache lacks a package. */
function installLikeTheImage(ws: string): { dir: string; packages: Set<string> } | null {
  const dir = mkdtempSync(join(tmpdir(), `sg-image-${ws}-`));
  for (const [sources, dest] of copies(stages()[0]!, ws)) {
    for (const s of sources) {
      const to = dest.endsWith("/") ? join(dir, dest, s.split("/").pop()!) : join(dir, dest === "./" ? s : dest);
      mkdirSync(dirname(to), { recursive: true });
      cpSync(join(REPO_ROOT, s), to);
    }
  }
  const [bin, ...args] = npmCi(ws);
  const r = spawnSync(bin!, [...args, "--offline"], {
    cwd: dir,
    encoding: "utf8",
    timeout: 240_000,
    env: { ...process.env, npm_config_update_notifier: "false" },
  });
  if (r.status !== 0 && /ENOTCACHED/.test(r.stderr)) {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  assert.equal(r.status, 0, `npm ci for ${ws}: ${r.stderr.slice(-2000)}`);
  const packages = new Set<string>();
  const walk = (nm: string) => {
    if (!existsSync(nm)) return;
    for (const e of readdirSync(nm)) {
      if (e.startsWith(".")) continue;
      if (e.startsWith("@"))
        for (const s of readdirSync(join(nm, e))) {
          packages.add(`${e}/${s}`);
          walk(join(nm, e, s, "node_modules"));
        }
      else {
        packages.add(e);
        walk(join(nm, e, "node_modules"));
      }
    }
  };
  walk(join(dir, "node_modules"));
  return { dir, packages };
}

const loads = (dir: string, mod: string, expr: string): string => {
  const r = spawnSync(
    process.execPath,
    ["--input-type=module", "-e", `const m = await import(${JSON.stringify(mod)}); console.log(${expr});`],
    { cwd: dir, encoding: "utf8", timeout: 60_000 },
  );
  assert.equal(r.status, 0, `${mod} does not load in the image's install: ${r.stderr}`);
  return r.stdout.trim();
};

test(
  "manifests-containers - the preprocess image installs sharp and no onnxruntime; the infer image onnxruntime-node and no sharp",
  { timeout: 600_000 },
  (t) => {
    const pre = installLikeTheImage("preprocess");
    if (!pre)
      return t.skip("npm's cache lacks a package of the lockfile (run npm ci once): nothing is downloaded in tests");
    try {
      assert.ok(pre.packages.has("sharp"));
      assert.ok(![...pre.packages].some((p) => p.startsWith("onnxruntime")), "the CPU image holds no onnxruntime");
      for (const p of ["typescript", "kubernetes-models", "autocannon", "playwright-core"])
        assert.ok(!pre.packages.has(p), `dev dependency ${p} in the image`);
      for (const p of ["@nats-io/transport-node", "zod", "prom-client", "tsx"])
        assert.ok(pre.packages.has(p), `root dependency ${p}`);
      assert.ok(
        !pre.packages.has("statsig-node") && !pre.packages.has("@fastify/swagger"),
        "other workspaces' dependencies stay out",
      );
      assert.match(
        loads(pre.dir, "sharp", "m.default.versions.vips"),
        /^\d+\.\d+/,
        "sharp loads its prebuilt libvips with no install script run",
      );
    } finally {
      rmSync(pre.dir, { recursive: true, force: true });
    }
    const inf = installLikeTheImage("infer");
    if (!inf) return t.skip("npm's cache lacks a package of the lockfile");
    try {
      assert.ok(inf.packages.has("onnxruntime-node"));
      assert.ok(![...inf.packages].some((p) => p === "sharp" || p.startsWith("@img/")), "the GPU image holds no sharp");
      assert.ok(
        !existsSync(
          join(inf.dir, "node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so"),
        ),
        "onnxruntime-node's installer did not run",
      );
      assert.match(
        loads(inf.dir, "onnxruntime-node", "m.listSupportedBackends().map((b) => b.name).join()"),
        /cpu/,
        "onnxruntime-node loads its bundled CPU provider",
      );
    } finally {
      rmSync(inf.dir, { recursive: true, force: true });
    }
  },
);
