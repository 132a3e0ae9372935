/**
 * `servegraph up --watch` in a copy of the project: editing a node's code replaces its replicas one at a time
 * while requests keep being answered; an edit that breaks the node leaves the old replicas serving. Bounded: one
 * up, a polling loop of at most 60 s per step, the copy removed whatever happens.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { copyProject, startUp, stopUp } from "../helpers/project.ts";

test(
  "up --watch - a changed node is replaced one replica at a time with no failed request; a broken edit leaves it serving",
  { timeout: 240_000 },
  async () => {
    const dir = copyProject();
    let up: ChildProcess | undefined;
    try {
      let summary;
      let output: () => string;
      ({ up, summary, output } = await startUp(dir, ["chain", "--watch", "--port", "0", "--replicas", "greeter=2"], {
        SG_STATE_FILE: join(dir, ".servegraph/state.json"),
        SG_LOG_LEVEL: "info",
      }));
      const url = `${summary.ingress}/greeting/ada`;
      const greet = async (): Promise<{ status: number; message?: string }> => {
        const res = await fetch(url);
        return { status: res.status, ...((await res.json()) as { message?: string }) };
      };
      assert.equal((await greet()).message, "Hello, ada!");

      // Requests all along, while the code changes under them.
      let polling = true;
      const seen: { status: number; message?: string }[] = [];
      const poller = (async () => {
        while (polling) {
          seen.push(await greet());
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const mainFile = join(dir, "services/greeter/src/main.ts");
      const original = readFileSync(mainFile, "utf8");
      writeFileSync(mainFile, original.replace("`${greeting}, ${name}!`", "`${greeting} again, ${name}!`"));
      const t0 = Date.now();
      while (!seen.some((s) => s.message === "Hello again, ada!") && Date.now() - t0 < 60_000)
        await new Promise((r) => setTimeout(r, 100));
      // Both replicas replaced: every answer from here on is the new one.
      while (!/watch: greeter serves the new code \(2 replica/.test(output()) && Date.now() - t0 < 60_000)
        await new Promise((r) => setTimeout(r, 100));
      const after = seen.length;
      await new Promise((r) => setTimeout(r, 500));
      polling = false;
      await poller;
      assert.match(output(), /watch: greeter serves the new code \(2 replica\(s\) replaced\)/);
      assert.deepEqual(
        seen.filter((s) => s.status !== 200),
        [],
        "no request failed while the replicas were replaced",
      );
      assert.ok(
        seen.slice(after).every((s) => s.message === "Hello again, ada!"),
        "only the new code answers after the last replacement",
      );

      // A broken edit: the new replica cannot start, the old ones keep answering, and up says why.
      writeFileSync(mainFile, "this is not TypeScript(\n");
      const t1 = Date.now();
      while (!/watch: node greeter: the new replica exited/.test(output()) && Date.now() - t1 < 60_000)
        await new Promise((r) => setTimeout(r, 100));
      assert.match(output(), /watch: node greeter: the new replica exited .* the others keep running as they were/);
      assert.equal((await greet()).message, "Hello again, ada!");
    } finally {
      await stopUp(up);
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
