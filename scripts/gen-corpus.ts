/**
 * Generates the bad-input corpus, test/fixtures/corpus/cases.jsonl, from one seed: every run with the same seed
 * (and the same data/images) writes the same file. test/integration/corpus.test.ts sends every case to a running
 * graph and checks the answer.
 *
 *   node --import tsx scripts/gen-corpus.ts [--seed 20261125] [--check]
 *
 * --check writes nothing and exits 1 when the committed file differs from what the seed generates.
 *
 * Every case is a bad input with the outcome the contract gives it (subjects/endpoints.ts, docs/errors.md): the
 * exact code where the input leaves no doubt, a set of codes where it leaves some (random bytes behind a PNG
 * signature may be refused as undecodable or as too many pixels), any 4xx table code where the contract does not
 * say. Bodies are specs (test/fixtures/corpus/format.ts): slices and patches of data/images, seeded random bytes,
 * repeated text; the large ones are built at run time, so the file stays small.
 *
 * Image URLs are only ones the ingress refuses before any connection: unparsable, not http(s), with
 * credentials, or whose host is an IP literal (in any spelling the URL parser accepts) that is not public, or
 * `localhost` (answered by /etc/hosts). refusedWithoutConnection (corpus/oracles.ts) checks each one and the generator fails
 * on any other, so the corpus never makes the ingress resolve a real name or dial out.
 *
 * The cases are made by category in scripts/corpus/ (http-*, urls, unicode, numbers, nats-*), over one seeded
 * random source (corpus/builder.ts), in the order of corpus/index.ts.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { CASES_FILE } from "../test/fixtures/corpus/format.ts";
import { MIB } from "./corpus/graph.ts";
import { DEFAULT_SEED, generateCorpus, serialize, summarize } from "./corpus/index.ts";

export {
  DEFAULT_SEED,
  generateCorpus,
  refusedWithoutConnection,
  serialize,
  summarize,
  topKValid,
} from "./corpus/index.ts";

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { seed: { type: "string" }, check: { type: "boolean", default: false } } });
  const seed = values.seed === undefined ? DEFAULT_SEED : Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
  const cases = generateCorpus(seed);
  const out = serialize(cases);
  if (values.check) {
    let committed = "";
    try {
      committed = readFileSync(CASES_FILE, "utf8");
    } catch {
      // missing: differs
    }
    if (committed !== out) {
      process.stderr.write(
        `${CASES_FILE} is not what seed ${seed} generates: run node --import tsx scripts/gen-corpus.ts\n`,
      );
      process.exitCode = 1;
    }
  } else {
    writeFileSync(CASES_FILE, out);
    const { byCategory, bytes } = summarize(cases);
    process.stdout.write(
      `${cases.length} cases (seed ${seed}), ${(bytes / MIB).toFixed(1)} MiB of bodies, ${(out.length / 1024).toFixed(0)} KiB on disk -> ${CASES_FILE}\n`,
    );
    for (const [k, n] of Object.entries(byCategory)) process.stdout.write(`  ${k.padEnd(44)} ${n}\n`);
  }
}
