/**
 * What the load commands (`servegraph bench`, `servegraph soak`) share around their measurements: the flags that
 * find the graph and place the results, parsed with each command's own flags; the machine before the run; the
 * result JSON's rounding.
 */
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { projectRoot } from "../../../runtime/project.ts";
import { busyCores } from "./cpu.ts";
import { machineInfo, type MachineInfo } from "./machine.ts";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
/** Other processes using more cores than this just before a run make its numbers low: a warning says so. */
const BUSY_CORES_WARNING = 0.3;

/** The flags of every load command: --images, --url, --nats, --out, --json, --graph. */
const LOAD_OPTIONS = {
  images: { type: "string" },
  url: { type: "string" },
  nats: { type: "string" },
  out: { type: "string" },
  json: { type: "boolean", default: false },
  graph: { type: "string" },
} as const;

type OptionsConfig = NonNullable<ParseArgsConfig["options"]>;
type LoadValues<O extends OptionsConfig> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O & typeof LOAD_OPTIONS; allowPositionals: false }>
>["values"];

export interface LoadArgs<O extends OptionsConfig> {
  values: LoadValues<O>;
  /** --images, else data/images. */
  imagesDir: string;
  /** --out (relative to the working directory), else bench-results/ of the project (runtime/project.ts). */
  outDir: string;
}

/**
 * Parses `argv` with the command's `own` flags and the shared ones; a parse error goes to `usage` (which prints
 * it and gives the exit code, returned here).
 */
export function parseLoadArgs<const O extends OptionsConfig>(
  argv: string[],
  own: O,
  usage: (msg: string) => number,
): LoadArgs<O> | number {
  let values: LoadValues<O>;
  try {
    ({ values } = parseArgs({ args: argv, options: { ...own, ...LOAD_OPTIONS }, allowPositionals: false }));
  } catch (err) {
    return usage(err instanceof Error ? err.message : String(err));
  }
  const { images, out } = values as { images?: string; out?: string };
  return {
    values,
    imagesDir: images ? resolve(images) : join(REPO_ROOT, "data/images"),
    outDir: out ? (isAbsolute(out) ? out : resolve(out)) : join(projectRoot(), "bench-results"),
  };
}

/**
 * The machine, with the cores other processes kept busy during the second before the run; over
 * BUSY_CORES_WARNING, a warning (ending in `consequence`) goes into `warnings`.
 */
export async function machineBeforeRun(warnings: string[], consequence = ""): Promise<MachineInfo> {
  const machine = machineInfo();
  machine.busyCoresBefore = await busyCores(1000);
  if (machine.busyCoresBefore !== null && machine.busyCoresBefore > BUSY_CORES_WARNING) {
    warnings.push(
      `other processes used ${machine.busyCoresBefore.toFixed(2)} of ${machine.logicalCores} cores just before the run${consequence}`,
    );
  }
  return machine;
}

/** A result as JSON: three decimals are plenty for ms and rates, and keep the file small. */
export function resultJson(r: unknown): string {
  return (
    JSON.stringify(
      r,
      (_k, v: unknown) => (typeof v === "number" && !Number.isInteger(v) ? Math.round(v * 1000) / 1000 : v),
      2,
    ) + "\n"
  );
}
