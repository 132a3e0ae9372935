import { GraphConfigError } from "../runtime/index.ts";

/** Prints a graph config error for a person, or as JSON; returns the exit code, rethrows anything else. */
export function reportConfigError(err: unknown, json: boolean | undefined): number {
  if (!(err instanceof GraphConfigError)) throw err;
  if (json) process.stdout.write(JSON.stringify({ ok: false, issues: err.issues }, null, 2) + "\n");
  else process.stderr.write(err.message + "\n");
  return 1;
}
