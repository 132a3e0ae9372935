/**
 * A process that takes one JSON input (its first argument, else stdin), checks it with a schema and prints one
 * JSON result line on stdout: how ops runs a service's own measurements (e.g. `stage-bench.ts`) across a process
 * boundary without importing the service. Exit codes: 0 result printed, 1 the work failed, 2 bad input.
 */
import { z } from "zod";

async function readInput(): Promise<unknown> {
  if (process.argv[2] !== undefined) return JSON.parse(process.argv[2]);
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const explain = (err: unknown): string =>
  err instanceof z.ZodError ? z.prettifyError(err) : err instanceof Error ? err.message : String(err);

export async function runJsonScript<S extends z.ZodType>(
  name: string,
  input: S,
  work: (input: z.output<S>) => Promise<unknown>,
): Promise<void> {
  let parsed: z.output<S>;
  try {
    parsed = input.parse(await readInput());
  } catch (err) {
    process.stderr.write(`${name}: bad input: ${explain(err)}\n`);
    process.exit(2);
  }
  try {
    process.stdout.write(JSON.stringify(await work(parsed)) + "\n");
  } catch (err) {
    process.stderr.write(`${name}: ${explain(err)}\n`);
    process.exitCode = 1;
  }
}
