#!/usr/bin/env node
// The `servegraph` command when installed (npm link / npm install -g): runs ops/cli.ts through tsx.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../cli.ts");
try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`servegraph: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
