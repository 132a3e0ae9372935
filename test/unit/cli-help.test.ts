/** `servegraph <command> --help` (and -h) for every command: its usage on stdout, exit 0, nothing started. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { COMMANDS, main } from "../../ops/cli.ts";

async function capture(argv: string[]): Promise<{ code: number; out: string }> {
  let out = "";
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => { out += String(chunk); return true; }) as typeof process.stdout.write;
  try {
    return { code: await main(argv), out };
  } finally {
    process.stdout.write = write;
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
  // a subcommand's --help is its command's
  const { out } = await capture(["bench", "autoscale", "--help"]);
  assert.match(out, /bench autoscale/);
});
