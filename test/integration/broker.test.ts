/**
 * `servegraph up` as the owner of its broker and its replicas, run as a user runs it (a child process, Ctrl-C as
 * SIGINT): the nats-server it starts is restarted when it dies and the graph recovers; a signal ends everything
 * within 10 s whatever state NATS is in, start-up included; a node that cannot start stops `up`; the broker enforces
 * the graph's per-node permissions while the ops commands still work from another process.
 *
 * Every process `up` starts inherits a marker in its environment: the test finds them (and kills leftovers) by it.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { execFile, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { REPO_ROOT, TEST_GRAPH_FILE } from "../helpers/graph.ts";
import { startUpProcess } from "../../tools/harness/spawn-up.ts";
import { createClient } from "../../runtime/index.ts";
import { GraphError } from "../../subjects/index.ts";
import type { UpState } from "../../ops/state.ts";

const CLI = join(REPO_ROOT, "ops/cli.ts");
const MARK = "SG_BROKER_TEST_MARK";
const STOP_LIMIT_MS = 10_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `p`, or "timeout" after `ms` (the timer is cleared either way: it must not keep the test process alive). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<"timeout">((r) => {
        t = setTimeout(() => r("timeout"), ms);
      }),
    ]);
  } finally {
    clearTimeout(t);
  }
}

interface Summary {
  nats: string;
  nats_pid: number;
  ingress: string;
  nodes: { node: string; replicas: number }[];
}

/** The environment of a live process (empty when it is gone or not ours). */
function environOf(pid: number): Record<string, string> {
  try {
    return Object.fromEntries(
      readFileSync(`/proc/${pid}/environ`, "utf8")
        .split("\0")
        .filter(Boolean)
        .map((kv) => {
          const i = kv.indexOf("=");
          return [kv.slice(0, i), kv.slice(i + 1)];
        }),
    );
  } catch {
    return {};
  }
}

/** Live processes carrying `mark` (zombies excluded: they have exited). */
function marked(mark: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/stat`, "utf8").split(") ")[1]?.startsWith("Z")) continue;
    } catch {
      continue;
    }
    if (environOf(Number(d))[MARK] === mark) out.push(Number(d));
  }
  return out;
}

interface Up {
  child: ChildProcess;
  dir: string;
  stateFile: string;
  mark: string;
  stderr(): string;
  /** The `--json` summary, once start-up is done. */
  summary: Promise<Summary>;
  exited: Promise<number | null>;
  state(): UpState;
  /** Resolves when stderr matches. */
  waitLog(re: RegExp, timeoutMs?: number): Promise<void>;
  /** Leaves nothing behind, whatever happened. */
  cleanup(): Promise<void>;
}

function startUp(args: string[], opts: { logLevel?: string } = {}): Up {
  const dir = mkdtempSync(join(tmpdir(), "sg-broker-"));
  const stateFile = join(dir, "state.json");
  const mark = randomUUID();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    SG_STATE_FILE: stateFile,
    TMPDIR: dir,
    SG_LOG_LEVEL: opts.logLevel ?? "warn",
    [MARK]: mark,
  };
  for (const k of ["NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_INBOX_PREFIX"]) delete env[k];
  const up = startUpProcess({ args: [...args, "--graph", TEST_GRAPH_FILE], env, label: "up" });
  const child = up.proc;
  const exited = up.exited;
  return {
    child,
    dir,
    stateFile,
    mark,
    summary: up.summary as Promise<Summary>,
    exited,
    stderr: up.stderr,
    state: () => JSON.parse(readFileSync(stateFile, "utf8")) as UpState,
    waitLog: up.waitLog,
    async cleanup() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGINT");
        await within(exited, 15_000);
      }
      for (const pid of [...marked(mark), child.pid!]) {
        try {
          process.kill(pid, "SIGCONT");
          process.kill(pid, "SIGKILL");
        } catch {
          /* gone */
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Sends SIGINT and asserts `up` and every process it started are gone within 10 s, leaving no broker dir. */
async function interruptAndCheck(t: TestContext, up: Up, expectedCode: number): Promise<number> {
  const t0 = performance.now();
  up.child.kill("SIGINT");
  const code = await within(up.exited, STOP_LIMIT_MS + 2000);
  const ms = performance.now() - t0;
  assert.notEqual(
    code,
    "timeout",
    `up still running ${STOP_LIMIT_MS + 2000} ms after SIGINT: ${up.stderr().slice(-2000)}`,
  );
  assert.ok(ms < STOP_LIMIT_MS, `up took ${Math.round(ms)} ms to stop`);
  assert.equal(code, expectedCode, up.stderr().slice(-2000));
  assert.deepEqual(marked(up.mark), [], "no nats-server and no replica outlives up");
  assert.deepEqual(
    readdirSync(up.dir).filter((f) => f.startsWith("servegraph-nats-")),
    [],
    "the broker's temp dir is gone",
  );
  assert.ok(!existsSync(up.stateFile), "the state file is gone");
  t.diagnostic(`SIGINT to exit: ${Math.round(ms)} ms`);
  return ms;
}

/** A server that accepts on `port` and never answers, once the port is free (within `ms`); undefined if it never was. */
async function listenOn(port: number, ms: number): Promise<Server | undefined> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    const srv = createServer(() => {});
    const ok = await new Promise<boolean>((resolve) => {
      srv.once("error", () => resolve(false));
      srv.listen(port, "127.0.0.1", () => resolve(true));
    });
    if (ok) return srv;
    await sleep(2);
  }
  return undefined;
}

async function greeting(ingress: string, name = "ada"): Promise<string | undefined> {
  try {
    const res = await fetch(`${ingress}/greeting/${name}`, { signal: AbortSignal.timeout(1000) });
    return res.status === 200 ? ((await res.json()) as { message: string }).message : undefined;
  } catch {
    return undefined;
  }
}

/** Server errors (e.g. permission violations) a connection reports while `act` runs. */
async function violations(nc: NatsConnection, act: () => void): Promise<string[]> {
  const seen: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === "error") seen.push(String(s.error.message));
  })();
  act();
  await nc.flush(); // the server answers -ERR before the PONG of this flush
  await new Promise((r) => setImmediate(r));
  return seen;
}

test(
  "broker - up restarts a killed nats-server on the same port and the graph answers again; Ctrl-C while it cannot come back ends everything",
  { timeout: 120_000 },
  async (t) => {
    const up = startUp(["chain"]);
    let blocker: Server | undefined;
    try {
      const s = await up.summary;
      assert.equal(await greeting(s.ingress), "Hello, ada!");
      const port = new URL(s.nats).port;
      assert.equal(up.state().natsPid, s.nats_pid, "the state file names the broker's pid");

      process.kill(s.nats_pid, "SIGKILL");
      const t0 = performance.now();
      let answer: string | undefined;
      while (!(answer = await greeting(s.ingress)) && performance.now() - t0 < 10_000) await sleep(100);
      const ms = performance.now() - t0;
      assert.equal(answer, "Hello, ada!", `no answer within 10 s of the broker's death: ${up.stderr().slice(-2000)}`);
      t.diagnostic(`broker SIGKILL to first successful request: ${Math.round(ms)} ms`);
      await up.waitLog(new RegExp(`nats-server restarted on port ${port} \\(pid \\d+\\)`), 5000);
      const after = up.state();
      assert.equal(after.natsUrl, s.nats, "same port");
      assert.notEqual(after.natsPid, s.nats_pid, "the state file follows the new broker");
      assert.match(up.stderr(), /nats-server \(pid \d+, port \d+\) died \(SIGKILL\)/);

      // Kill it again and take its port, so that it cannot come back; interrupt while up keeps trying.
      process.kill(after.natsPid!, "SIGKILL");
      blocker = await listenOn(Number(port), 500);
      if (blocker) await up.waitLog(new RegExp(`nats-server did not restart on port ${port}`), 5000);
      else
        t.diagnostic("the broker came back before its port could be taken: interrupting right after its death instead");
      await interruptAndCheck(t, up, 0);
    } finally {
      await up.cleanup();
      blocker?.close();
    }
  },
);

test(
  "broker - Ctrl-C while the broker is frozen (SIGSTOP) ends up, the broker and every replica within 10 s",
  { timeout: 120_000 },
  async (t) => {
    const up = startUp(["chain"]);
    try {
      const s = await up.summary;
      assert.equal(await greeting(s.ingress), "Hello, ada!");
      // A stopped broker keeps its sockets open: nothing reconnects, every drain waits on it.
      process.kill(s.nats_pid, "SIGSTOP");
      const pending = greeting(s.ingress, "frozen");
      await sleep(200);
      await interruptAndCheck(t, up, 0);
      await pending;
    } finally {
      await up.cleanup();
    }
  },
);

test("broker - Ctrl-C during start-up leaves no process and no temp dir", { timeout: 120_000 }, async (t) => {
  // While the broker starts, and while up waits for the replicas of a node.
  for (const moment of [/starting nats-server/, /node greeter: 1 replica\(s\) ready/]) {
    const up = startUp(["chain"], { logLevel: "info" });
    try {
      await up.waitLog(moment);
      t.diagnostic(`interrupting at ${moment}`);
      await interruptAndCheck(t, up, 130);
    } finally {
      await up.cleanup();
    }
  }
});

test(
  "broker - a node whose replica keeps exiting at start makes up stop with its last error line and exit 1",
  { timeout: 120_000 },
  async (t) => {
    // The ingress cannot listen on a port that is taken: it exits at once, every time.
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const port = (blocker.address() as { port: number }).port;
    const up = startUp(["chain", "--port", String(port)]);
    try {
      const t0 = performance.now();
      const code = await within(up.exited, 90_000);
      assert.equal(code, 1, up.stderr().slice(-3000));
      t.diagnostic(`gave up after ${Math.round(performance.now() - t0)} ms`);
      const line = up
        .stderr()
        .split("\n")
        .find((l) => l.includes("cannot start"));
      assert.ok(line, up.stderr().slice(-3000));
      assert.match(line, new RegExp(`node ingress cannot start: .*EADDRINUSE.*127\\.0\\.0\\.1:${port}`));
      assert.doesNotMatch(line, /\\n\s+at /, "the message, not the stack");
      await up.summary.then(
        () => assert.fail("up reported the graph up"),
        () => {},
      );
      assert.deepEqual(marked(up.mark), [], "nothing left running");
      assert.deepEqual(
        readdirSync(up.dir).filter((f) => f.startsWith("servegraph-nats-")),
        [],
      );
    } finally {
      await up.cleanup();
      blocker.close();
    }
  },
);

test(
  "broker - up's own broker enforces the graph's permissions; status and scale from another process still work",
  { timeout: 120_000 },
  async () => {
    const up = startUp(["chain"]);
    const conns: NatsConnection[] = [];
    try {
      const s = await up.summary;
      const state = up.state();
      assert.equal(statSync(up.stateFile).mode & 0o777, 0o600, "the state file holds a password");
      assert.ok(state.natsUser && state.natsPassword);

      // Nobody gets in without credentials: so nobody anonymous reaches sg.ops.control.
      await assert.rejects(connect({ servers: s.nats, timeout: 2000 }), /Authorization Violation/);

      // greeter-proxy's own credentials, as up gave them to its replica.
      const proxyPid = marked(up.mark).find((p) => environOf(p).SG_NODE === "greeter-proxy");
      assert.ok(proxyPid, "greeter-proxy replica found");
      const env = environOf(proxyPid);
      assert.equal(env.NATS_USER, "greeter-proxy");
      assert.equal(env.NATS_INBOX_PREFIX, "_INBOX_greeter-proxy");
      const proxy = await connect({
        servers: s.nats,
        user: env.NATS_USER,
        pass: env.NATS_PASSWORD!,
        inboxPrefix: env.NATS_INBOX_PREFIX!,
        name: "test-as-proxy",
      });
      conns.push(proxy);
      assert.equal(
        (
          (await proxy.request("sg.v1.greeter.greet", JSON.stringify({ name: "edge" }), { timeout: 5000 })).json() as {
            message: string;
          }
        ).message,
        "Hello, edge!",
        "its edge works",
      );
      assert.match(
        (await violations(proxy, () => proxy.publish("sg.v1.infer.run", "x"))).join(),
        /Permissions Violation for Publish to "sg\.v1\.infer\.run"/,
      );
      assert.match(
        (await violations(proxy, () => proxy.publish("sg.ops.control", "{}"))).join(),
        /Permissions Violation for Publish to "sg\.ops\.control"/,
      );

      // The ops commands, each in a process of its own, find the graph and its credentials through the state file.
      const cli = (args: string[]) =>
        new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
          const childEnv: NodeJS.ProcessEnv = { ...process.env, SG_STATE_FILE: up.stateFile };
          for (const k of ["NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_INBOX_PREFIX"]) delete childEnv[k];
          execFile(
            process.execPath,
            ["--import", "tsx", CLI, ...args],
            { cwd: REPO_ROOT, env: childEnv, timeout: 60_000 },
            (err, stdout, stderr) => {
              resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
            },
          );
        });
      const status = await cli(["status", "--json"]);
      assert.equal(status.code, 0, status.stderr);
      const st = JSON.parse(status.stdout) as {
        nats: string;
        nodes: { node: string; replicas: number }[];
        control: { replicas: number };
      };
      assert.equal(st.nats, s.nats);
      assert.deepEqual(st.nodes.map((n) => [n.node, n.replicas]).sort(), [
        ["greeter", 1],
        ["greeter-proxy", 1],
        ["ingress", 1],
      ]);
      assert.equal(st.control.replicas, 1);
      const scaled = await cli(["scale", "greeter", "2", "--json"]);
      assert.equal(scaled.code, 0, scaled.stderr + scaled.stdout);
      assert.deepEqual(JSON.parse(scaled.stdout), { node: "greeter", replicas: 2, host: hostname() });
    } finally {
      for (const c of conns) await c.close().catch(() => {});
      await up.cleanup();
    }
  },
);

/** The violations `act` causes, waiting (bounded) for one when `expect` says one must come. */
async function violationsWithin(nc: NatsConnection, act: () => void, expect: boolean): Promise<string[]> {
  const seen: string[] = [];
  const it = nc.status();
  void (async () => {
    for await (const s of it) if (s.type === "error") seen.push(String(s.error.message));
  })();
  act();
  await nc.flush();
  for (const t0 = Date.now(); Date.now() - t0 < (expect ? 3000 : 300) && (!expect || seen.length === 0);)
    await new Promise((r) => setTimeout(r, 20));
  return seen;
}

test(
  "broker - under up's permissions heartbeats keep a request slower than the liveness window alive; a node may send them only to its callers",
  { timeout: 120_000 },
  async () => {
    // The test graph gives greeter 1 s: a request of that deadline is lost after ~330 ms without a heartbeat
    // (runtime/client.ts), and its retry after 250 ms more, so 700 ms of work is answered only if heartbeats arrive.
    const delayMs = 700;
    const up = startUp(["chain", "--param", `greeter.DELAY_MS=${delayMs}`]);
    const conns: NatsConnection[] = [];
    try {
      const s = await up.summary;
      const as = async (node: string) => {
        const pid = marked(up.mark).find((p) => environOf(p).SG_NODE === node);
        assert.ok(pid, `${node} replica found`);
        const env = environOf(pid);
        const nc = await connect({
          servers: s.nats,
          user: env.NATS_USER,
          pass: env.NATS_PASSWORD!,
          inboxPrefix: env.NATS_INBOX_PREFIX!,
          name: `test-as-${node}`,
        });
        conns.push(nc);
        return nc;
      };
      // greeter-proxy's client asks greeter for heartbeats (idempotent): without them the attempt would be lost
      // after LIVENESS_MS and retried, and the retry lost again.
      const proxy = await as("greeter-proxy");
      const client = createClient(proxy, { caller: "greeter-proxy", defaultTimeoutMs: 1000 });
      const reply = await client.request("sg.v1.greeter.greet", JSON.stringify({ name: "slow" }), {
        idempotent: true,
        timeoutMs: 1000,
      });
      assert.equal((reply.json() as { message: string }).message, "Hello, slow!");
      // A call outside greeter-proxy's declared edges is refused by the broker: FORBIDDEN at once, not retried, never
      // a heartbeat wait that reads as a dead replica.
      await assert.rejects(
        client.request("sg.v1.infer.run", "x", { idempotent: true, timeoutMs: 1000 }),
        (e: unknown) => {
          assert.ok(e instanceof GraphError, String(e));
          assert.equal(e.code, "FORBIDDEN");
          assert.equal(
            e.message,
            "greeter-proxy may not call sg.v1.infer.run: add the call to graph.config.ts (the broker's permissions come from the graph's declared edges)",
          );
          return true;
        },
      );

      // greeter may send heartbeats to its caller's heartbeat subjects, and nothing else of its inbox.
      const greeter = await as("greeter");
      assert.deepEqual(
        await violationsWithin(greeter, () => greeter.publish("_INBOX_greeter-proxy.abc.hb.1"), false),
        [],
      );
      assert.match(
        (await violationsWithin(greeter, () => greeter.publish("_INBOX_greeter-proxy.abc.1"), true)).join(),
        /Permissions Violation for Publish to "_INBOX_greeter-proxy\.abc\.1"/,
      );
      assert.match(
        (await violationsWithin(greeter, () => greeter.publish("_INBOX_ingress.abc.hb.1"), true)).join(),
        /Permissions Violation for Publish to "_INBOX_ingress\.abc\.hb\.1"/,
      );
    } finally {
      for (const c of conns) await c.close().catch(() => {});
      await up.cleanup();
    }
  },
);
