/**
 * A node of one's own, as a new user makes it: `servegraph new node shout` in a copy of this project, then the
 * node edited to call the chain (pattern A: `ctx.subjectOf` with the call declared in `calls`; pattern B: a subject
 * parameter), `servegraph check`, `servegraph up shout` (its own nats-server with per-node permissions), and the
 * node called over HTTP on the route graph.config.ts declares (listed in /docs) and over NATS. Bounded: one up,
 * stopped with SIGINT (then SIGKILL) whatever happens; the copy is removed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { copyProject, startUp, stopUp } from "../helpers/project.ts";

test(
  "new node - scaffolded, calling greeter both ways, checked, started with up, served over HTTP and NATS",
  { timeout: 240_000 },
  async () => {
    const dir = copyProject();
    const cli = (args: string[], env: Record<string, string> = {}) =>
      spawnSync(process.execPath, ["--import", "tsx", join(dir, "ops/cli.ts"), ...args], {
        cwd: dir,
        encoding: "utf8",
        timeout: 90_000,
        env: { ...process.env, ...env },
      });
    let up: ChildProcess | undefined;
    try {
      const t0 = Date.now();
      const made = cli(["new", "node", "shout"]);
      assert.equal(made.status, 0, made.stderr);
      for (const f of [
        "subjects/shout.ts",
        "services/shout/package.json",
        "services/shout/src/main.ts",
        "services/shout/src/params.ts",
        "test/nodes/shout.test.ts",
      ]) {
        assert.match(made.stdout, new RegExp(`wrote ${f.replace(/[./]/g, "\\$&")}`));
      }
      assert.match(
        readFileSync(join(dir, "package-lock.json"), "utf8"),
        /"services\/shout": \{/,
        "the new workspace is in the lock file",
      );
      assert.match(readFileSync(join(dir, "subjects/registry.ts"), "utf8"), /\.\.\.shoutEndpoints,/);
      const again = cli(["new", "node", "shout"]);
      assert.equal(again.status, 1, "a name in use is refused");
      assert.match(again.stderr, /already has a node "shout"/);

      // Pattern A: ctx.subjectOf(...) with the call declared in `calls`; pattern B: a subject parameter.
      writeFileSync(
        join(dir, "services/shout/src/params.ts"),
        `import { defineParams, param } from "../../../runtime/params.ts";
export default defineParams({ GREETING_SUBJECT: param.subject("greeter-proxy's greeting endpoint.") });
`,
      );
      writeFileSync(
        join(dir, "services/shout/src/main.ts"),
        `import { runNode } from "../../../runtime/index.ts";
import { Greet, Greeting } from "../../../subjects/index.ts";
import { ShoutRun } from "../../../subjects/shout.ts";
import Params from "./params.ts";

await runNode(async (ctx) => {
  ctx.serve(ShoutRun, async ({ text }) => {
    const a = await ctx.client.call(Greet, ctx.subjectOf("greeter", "greet"), { name: text });
    const b = await ctx.client.call(Greeting, ctx.params.GREETING_SUBJECT, { name: text });
    return { text: \`\${a.message.toUpperCase()} | \${b.message}\`, served_by: ctx.replicaId };
  });
}, { params: Params });
`,
      );
      const graphFile = join(dir, "graph.config.ts");
      const g = readFileSync(graphFile, "utf8");
      // new writes the entry formatted: a name that is an identifier loses its quotes.
      const block = g.slice(g.search(/^ {4}"?shout"?: \{/m));
      const edited = block.replace(
        "      parameters: {},",
        `      dependsOn: ["greeter", "greeter-proxy"],
      calls: [subjectOf("greeter", "greet")],
      parameters: { GREETING_SUBJECT: subjectOf("greeter-proxy", "greeting") },`,
      );
      assert.notEqual(edited, block, "the scaffolded node's entry is where new put it");
      writeFileSync(graphFile, g.replace(block, edited));

      const checked = cli(["check"]);
      assert.equal(checked.status, 0, checked.stderr);
      assert.match(checked.stdout, /route POST \/shout -> sg\.v1\.shout\.run/);
      assert.match(checked.stdout, /calls: sg\.v1\.greeter\.greet/);
      // A misspelt call is refused by check, with a suggestion.
      writeFileSync(
        graphFile,
        g.replace(
          block,
          edited.replace(`calls: [subjectOf("greeter", "greet")]`, `calls: [subjectOf("greeter", "gret")]`),
        ),
      );
      const typo = cli(["check"]);
      assert.equal(typo.status, 1);
      assert.match(
        typo.stderr,
        /nodes\.shout\.calls\.0: node "greeter" \(services\/greeter\) has no endpoint "gret": it serves greet; did you mean "greet"\?/,
      );
      writeFileSync(graphFile, g.replace(block, edited));

      const stateFile = join(dir, ".servegraph/state.json");
      let summary;
      ({ up, summary } = await startUp(dir, ["shout", "--port", "0"], { SG_STATE_FILE: stateFile }));
      assert.deepEqual(summary.nodes.map((n) => n.node).sort(), ["greeter", "greeter-proxy", "ingress", "shout"]);

      const res = await fetch(`${summary.ingress}/shout`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ text: "ada" }),
      });
      const body = (await res.json()) as { text: string; served_by: string };
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(
        body.text,
        "HELLO, ADA! | Hello, ada!",
        "pattern A and pattern B, each through the broker's permissions",
      );
      assert.match(body.served_by, /^shout-/);
      const docs = (await (await fetch(`${summary.ingress}/docs/json`)).json()) as {
        paths: Record<string, Record<string, unknown>>;
      };
      assert.ok(docs.paths["/shout"]?.post, "the route is in the OpenAPI document");
      const bad = await fetch(`${summary.ingress}/shout`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      assert.equal(bad.status, 400);
      assert.equal(((await bad.json()) as { code: string }).code, "BAD_REQUEST");

      const direct = cli(["request", "sg.v1.shout.run", '{"text":"lin"}', "--json"], { SG_STATE_FILE: stateFile });
      assert.equal(direct.status, 0, direct.stderr);
      assert.match(direct.stdout, /HELLO, LIN! \| Hello, lin!/);
      process.stdout.write(
        `# new node: from \`new\` to a served HTTP answer in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`,
      );
    } finally {
      await stopUp(up);
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
