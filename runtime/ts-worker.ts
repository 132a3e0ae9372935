/**
 * A worker thread running a TypeScript entry. There is no build step, so the worker goes through tsx like the rest
 * of the process. Under tsx on Node 20, `execArgv: ["--import", "tsx"]` runs tsx in the worker but its loader hooks
 * do not apply to the worker's own entry (ERR_UNKNOWN_FILE_EXTENSION ".ts"); registering tsx's ESM API inside the
 * worker and then importing the entry works. `execArgv: []`, so an inherited `--import tsx` (which registers in
 * workers on newer Node) cannot install the hooks a second time.
 */
import { Worker } from "node:worker_threads";

export function startTsWorker(entry: URL, opts: { name?: string; workerData?: unknown } = {}): Worker {
  const tsxApi = import.meta.resolve("tsx/esm/api");
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(bootstrap, { eval: true, execArgv: [], ...opts });
}
