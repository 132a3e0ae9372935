/** The `servegraph` command as a user runs it: up (with its own nats-server), request, check, scale, Ctrl-C. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, TEST_GRAPH_FILE } from "../helpers/graph.ts";
import { spawnUp } from "../../tools/harness/spawn-up.ts";

const CLI = join(REPO_ROOT, "ops/cli.ts");

function cli(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, ["--import", "tsx", CLI, ...args], {
    cwd: REPO_ROOT,
    encoding: "utf8",
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
}

test("cli - check validates the graph and prints it; --json is machine-readable", () => {
  const human = cli(["check"]);
  assert.equal(human.status, 0, human.stderr);
  assert.match(human.stdout, /is valid/);
  assert.match(human.stdout, /greeter-proxy/);
  const machine = cli(["check", "--json"]);
  const parsed = JSON.parse(machine.stdout) as { ok: boolean; graph: { nodes: Record<string, unknown> } };
  assert.equal(parsed.ok, true);
  assert.ok(parsed.graph.nodes.infer);
  const unknown = cli(["frobnicate"]);
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown command/);
});

test("cli - check and up refuse a misspelt parameter name or value with its path, before starting anything", () => {
  const typo = join(REPO_ROOT, "test/fixtures/typo-graph.config.ts");
  const human = cli(["check", "--graph", typo]);
  assert.equal(human.status, 1);
  assert.match(
    human.stderr,
    /nodes\.preprocess\.parameters\.PREPROCESS_MODE: must be one of fast, exact \(got "fsat"\)/,
  );
  assert.match(human.stderr, /nodes\.greeter\.parameters\.DELAY_MS: must be a decimal number/);
  assert.match(human.stderr, /nodes\.greeter\.parameters: not a parameter of services\/greeter: GREETNG/);
  const machine = cli(["check", "--json", "--graph", typo]);
  const parsed = JSON.parse(machine.stdout) as { ok: boolean; issues: { path: string }[] };
  assert.equal(parsed.ok, false);
  assert.deepEqual(parsed.issues.map((i) => i.path).sort(), [
    "nodes.greeter.parameters",
    "nodes.greeter.parameters.DELAY_MS",
    "nodes.preprocess.parameters.PREPROCESS_MODE",
  ]);
  const up = cli(["up", "chain", "--graph", typo], { NATS_URL: "nats://127.0.0.1:1" });
  assert.equal(up.status, 1, "up refuses before connecting to NATS");
  assert.match(up.stderr, /GREETNG/);
});

test("cli - check refuses a service folder without its entry (src/main.ts), beside every other problem", () => {
  const dir = mkdtempSync(join(tmpdir(), "sg-noentry-"));
  try {
    mkdirSync(join(dir, "services/half/src"), { recursive: true });
    writeFileSync(
      join(dir, "services/half/src/params.ts"),
      `import { defineParams, param } from ${JSON.stringify(join(REPO_ROOT, "runtime/params.ts"))};\nexport default defineParams({ N: param.number("n").default(1) });\n`,
    );
    writeFileSync(
      join(dir, "graph.config.ts"),
      `import { defineGraph } from ${JSON.stringify(join(REPO_ROOT, "runtime/config.ts"))};\nexport default defineGraph({ name: "half", nodes: { half: { service: "services/half", parameters: { N: "x" } } }, graphs: { half: { nodes: ["half"] } }, defaultGraphs: ["half"] });\n`,
    );
    const r = cli(["check", "--graph", join(dir, "graph.config.ts")]);
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, /nodes\.half\.service: services\/half has no src\/main\.ts, the node's entry/);
    assert.match(r.stderr, /nodes\.half\.parameters\.N: /, "its parameters are still checked");
    // A graph that fails its own checks (an unknown dependsOn, a bad replica count) still gets its valid nodes'
    // parameters checked in the same run.
    writeFileSync(
      join(dir, "graph.config.ts"),
      `import { defineGraph } from ${JSON.stringify(join(REPO_ROOT, "runtime/config.ts"))};\nexport default defineGraph({ name: "half", nodes: { half: { service: "services/half", dependsOn: ["nobody"], parameters: { N: "x" } }, broken: { service: "services/half", replicas: -1 } }, graphs: { half: { nodes: ["half"] } }, defaultGraphs: ["half"] });\n`,
    );
    const both = cli(["check", "--json", "--graph", join(dir, "graph.config.ts")]);
    assert.equal(both.status, 1);
    const paths = (JSON.parse(both.stdout) as { issues: { path: string }[] }).issues.map((i) => i.path);
    assert.ok(
      paths.some((p) => p.startsWith("nodes.broken.replicas")),
      paths.join(),
    );
    assert.ok(
      paths.includes("nodes.half.dependsOn") || paths.some((p) => p.startsWith("nodes.half.dependsOn")),
      paths.join(),
    );
    assert.ok(
      paths.includes("nodes.half.parameters.N"),
      `parameters checked beside the graph's own problems: ${paths.join()}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("cli - run from a subfolder of a project, the command works on that project's graph.config.ts", () => {
  const dir = mkdtempSync(join(tmpdir(), "sg-project-"));
  try {
    mkdirSync(join(dir, "services/echo/src"), { recursive: true });
    mkdirSync(join(dir, "docs/deep"), { recursive: true });
    writeFileSync(
      join(dir, "services/echo/src/params.ts"),
      `import { defineParams } from ${JSON.stringify(join(REPO_ROOT, "runtime/params.ts"))};\nexport default defineParams({});\n`,
    );
    writeFileSync(join(dir, "services/echo/src/main.ts"), "// a node's entry\n");
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "my-project", private: true, type: "module" }));
    writeFileSync(
      join(dir, "graph.config.ts"),
      `import { defineGraph } from ${JSON.stringify(join(REPO_ROOT, "runtime/config.ts"))};\nexport default defineGraph({ name: "my-project", nodes: { echo: { service: "services/echo" } }, graphs: { echo: { nodes: ["echo"] } }, defaultGraphs: ["echo"] });\n`,
    );
    const r = spawnSync(process.execPath, [join(REPO_ROOT, "ops/bin/servegraph.js"), "check"], {
      cwd: join(dir, "docs/deep"),
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(
        `graph my-project \\(${join(dir, "graph.config.ts").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\) is valid`,
      ),
    );
    // outside any project: the package's own reference graph
    const outside = spawnSync(process.execPath, [join(REPO_ROOT, "ops/bin/servegraph.js"), "check"], {
      cwd: tmpdir(),
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.match(outside.stdout, /graph servegraph-demo/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("cli - a node that cannot start because of its configuration stops up at once, naming the node and the reason", () => {
  const env: Record<string, string> = {
    SG_LOG_LEVEL: "warn",
    SG_STATE_FILE: join(mkdtempSync(join(tmpdir(), "sg-state-")), "state.json"),
  };
  const t0 = Date.now();
  const up = spawnSync(
    process.execPath,
    ["--import", "tsx", CLI, "up", "chain", "--graph", join(REPO_ROOT, "test/fixtures/noauth-graph.config.ts")],
    {
      cwd: REPO_ROOT,
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, ...env, SERVEGRAPH_API_KEY: "", NATS_URL: "" },
    },
  );
  assert.equal(up.status, 1, up.stderr);
  assert.match(up.stderr, /node ingress cannot start: .*requiresAuth is set but the API_KEY secret is empty/);
  assert.doesNotMatch(up.stderr, /restarting in/, "a configuration error is not retried");
  assert.ok(Date.now() - t0 < 30_000, `up gave up in ${Date.now() - t0} ms`);
});

test("cli - up --param overrides a parameter for one run: a forced GPU provider that cannot load stops up at once, naming infer", () => {
  // No Vulkan driver, made explicit (CI installs lavapipe for test/integration/webgpu.test.ts): forced webgpu cannot load.
  const env = {
    ...process.env,
    SG_LOG_LEVEL: "warn",
    NATS_URL: "",
    VK_ICD_FILENAMES: "/nonexistent/no-vulkan-driver.json",
    SG_STATE_FILE: join(mkdtempSync(join(tmpdir(), "sg-state-")), "state.json"),
  };
  const bad = spawnSync(
    process.execPath,
    ["--import", "tsx", CLI, "up", "classify", "--graph", TEST_GRAPH_FILE, "--param", "infer.EXECUTION_PROVIDER=fpga"],
    { cwd: REPO_ROOT, encoding: "utf8", timeout: 60_000, env },
  );
  assert.equal(bad.status, 1);
  assert.match(
    bad.stderr,
    /nodes\.infer\.parameters\.EXECUTION_PROVIDER: must be one of auto, cuda, webgpu, cpu \(got "fpga"\)/,
  );
  const unknown = spawnSync(
    process.execPath,
    ["--import", "tsx", CLI, "up", "classify", "--graph", TEST_GRAPH_FILE, "--param", "nope.X=1"],
    { cwd: REPO_ROOT, encoding: "utf8", timeout: 60_000, env },
  );
  assert.match(unknown.stderr, /--param nope\.X=1: unknown node "nope"/);
  const t0 = Date.now();
  const gpu = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      CLI,
      "up",
      "classify",
      "--graph",
      TEST_GRAPH_FILE,
      "--param",
      "infer.EXECUTION_PROVIDER=webgpu",
    ],
    { cwd: REPO_ROOT, encoding: "utf8", timeout: 90_000, env },
  );
  assert.equal(gpu.status, 1, gpu.stderr);
  assert.match(gpu.stderr, /node infer cannot start: execution provider webgpu did not start: \S/);
  assert.ok(Date.now() - t0 < 45_000, `gave up in ${Date.now() - t0} ms`);
});

test("cli - up starts its own nats-server and the chain, request reaches it over NATS, Ctrl-C stops everything", async () => {
  const stateFile = join(mkdtempSync(join(tmpdir(), "sg-state-")), "state.json");
  const up = await spawnUp({
    args: ["chain", "--graph", TEST_GRAPH_FILE],
    env: { SG_STATE_FILE: stateFile, SG_LOG_LEVEL: "warn" },
    startTimeoutMs: 60_000,
  });
  const { summary } = up;
  try {
    assert.match(summary.nats, /^nats:\/\/127\.0\.0\.1:\d+$/);
    assert.deepEqual(summary.nodes.map((n) => n.node).sort(), ["greeter", "greeter-proxy", "ingress"]);
    const res = await fetch(`${summary.ingress!}/greeting/ada`);
    assert.deepEqual(((await res.json()) as { message: string }).message, "Hello, ada!");

    // other commands find the running graph without flags (state file)
    const req = cli(["request", "sg.v1.greeter.greet", '{"name":"lin"}', "--json"], { SG_STATE_FILE: stateFile });
    assert.equal(req.status, 0, req.stderr);
    assert.equal((JSON.parse(req.stdout) as { reply: { message: string } }).reply.message, "Hello, lin!");
    const bad = cli(["request", "sg.v1.greeter.greet", '{"nom":1}', "--json"], { SG_STATE_FILE: stateFile });
    assert.equal(bad.status, 1);
    assert.equal((JSON.parse(bad.stdout) as { error: { code: string } }).error.code, "BAD_REQUEST");

    const scaled = cli(["scale", "greeter", "2", "--json"], { SG_STATE_FILE: stateFile });
    assert.equal(scaled.status, 0, scaled.stderr + scaled.stdout);
    assert.deepEqual(JSON.parse(scaled.stdout), { node: "greeter", replicas: 2, host: hostname() });
    const outOfRange = cli(["scale", "greeter", "99", "--json"], { SG_STATE_FILE: stateFile });
    assert.equal(outOfRange.status, 1);
    assert.equal((JSON.parse(outOfRange.stdout) as { error: { code: string } }).error.code, "BAD_REQUEST");
  } finally {
    up.proc.kill("SIGINT");
  }
  const code = await up.exited;
  assert.equal(code, 0, up.stderr());
  // the nats-server it started is gone: nothing listens there any more
  const port = Number(new URL(summary.nats).port);
  const net = await import("node:net");
  const refused = await new Promise<boolean>((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", () => resolve(true));
  });
  assert.ok(refused, "nats-server stopped");
});
