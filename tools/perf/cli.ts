/**
 * The performance tools of servegraph, apart from the product: benchmarks and the soak, run from the project's
 * root as `npm run bench -- ...` and `npm run soak -- ...` (a workspace of their own: autocannon is theirs, and a
 * production install, `npm ci --omit=dev`, has none of this).
 *   bench [...]   closed-loop load of a graph (chain, classify, infer's own ceiling), against the hardware limit and,
 *                 with --baseline <rev>, against another commit; `bench autoscale` for up's autoscaler
 *   soak [...]    classify held at a share of its capacity for a long time: memory and latency drift
 */
const USAGE = `usage: npm run bench -- [options]   |   npm run soak -- [options]

commands:
  bench                             closed-loop HTTP load test of the running graph (or one it starts)
    [--target chain|classify|infer|all] [--duration 8] [--warmup 2] [--concurrency 1,4,16] [--max-requests n]
    [--images dir] [--url u] [--out dir] [--no-stages] [--param node.KEY=VALUE]
  bench --baseline <rev>            the same bench of this checkout and of another commit, alternating in passes
    [--passes 2] [--fail-on-regression]  (each side its own graph), ratios; >10% worse headline figures called out
  bench autoscale                   up's autoscaler under a stepped load: time to the new count serving, failed
                                    requests per step, cold start from zero
  soak [--duration s] [--load 0.8]  classify at a share of its measured capacity for a long time (default 10 min):
                                    RSS per process, p50/p99 per minute, p99 drift, errors

common options: --json  --graph <file>  --nats <url> (or NATS_URL)`;

export const PERF_COMMANDS = ["bench", "soak"] as const;
type PerfCommand = (typeof PERF_COMMANDS)[number];

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (!verb || verb === "-h" || verb === "--help" || verb === "help") {
    process.stdout.write(USAGE + "\n");
    return verb ? 0 : 2;
  }
  if (!PERF_COMMANDS.includes(verb as PerfCommand)) {
    process.stderr.write(`unknown command "${verb}"\n\n${USAGE}\n`);
    return 2;
  }
  const beforeDashes = rest.indexOf("--") === -1 ? rest : rest.slice(0, rest.indexOf("--"));
  if (beforeDashes.includes("--help") || beforeDashes.includes("-h")) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  const mod = (await import(`./commands/${verb}.ts`)) as { run(argv: string[]): Promise<number> };
  return mod.run(rest);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`servegraph perf: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
