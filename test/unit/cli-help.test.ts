/** `servegraph <command> --help` (and -h) for every command: its usage on stdout, exit 0, nothing started. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { COMMANDS, main } from "../../ops/cli.ts";
import { PERF_COMMANDS, main as perfMain } from "../../tools/perf/cli.ts";

async function capture(
  argv: string[],
  run: (argv: string[]) => Promise<number> = main,
): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    err += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    return { code: await run(argv), out, err };
  } finally {
    process.stdout.write = write;
    process.stderr.write = writeErr;
  }
}

test("cli - every command answers --help and -h with its usage and exit 0", async () => {
  for (const c of COMMANDS) {
    for (const flag of ["--help", "-h"]) {
      const { code, out } = await capture([c, flag]);
      assert.equal(code, 0, `${c} ${flag}`);
      assert.match(out, new RegExp(`usage: servegraph ${c}\\b`), `${c} ${flag}: ${out.slice(0, 200)}`);
    }
  }
  // the performance tools are not servegraph's: it says where they are
  const redirected = await capture(["bench", "--target", "chain"]);
  assert.equal(redirected.code, 2);
  assert.match(redirected.err, /npm run bench -- --target chain/);
  for (const c of PERF_COMMANDS) {
    const { code, out } = await capture([c, "--help"], perfMain);
    assert.equal(code, 0);
    assert.match(out, new RegExp(`^  ${c} `, "m"));
  }
  const { out } = await capture(["bench", "autoscale", "--help"], perfMain);
  assert.match(out, /bench autoscale/);
});
