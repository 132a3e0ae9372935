/**
 * `servegraph up --watch`: the dev loop. When a file of a running node's service folder changes, that node's
 * replicas are replaced one at a time (Supervisor.restart: the new one must answer before the old one is drained),
 * so requests keep being answered while the code changes. A change under subjects/ or runtime/ (what every node
 * imports) replaces every running node's replicas. A new replica that cannot start (a syntax error) leaves the old
 * ones serving and says why; the next save tries again. graph.config.ts itself is not reloaded (up says so).
 *
 * Changes are gathered for DEBOUNCE_MS (an editor's save is several events) and applied one node at a time.
 */
import { watch, type FSWatcher } from "node:fs";
import { join, relative, resolve, sep } from "node:path";
import type { ResolvedGraph } from "../runtime/index.ts";
import type { Supervisor } from "./supervisor.ts";

export const DEBOUNCE_MS = 300;
/** Folders every node imports: a change there replaces every node's replicas. */
const SHARED = ["subjects", "runtime"];

export interface Watcher {
  close(): void;
}

export interface WatchLog {
  info(msg: string, attrs?: Record<string, unknown>): void;
  warn(msg: string, attrs?: Record<string, unknown>): void;
}

/** The running nodes a change of `file` (absolute) concerns. */
export function nodesOfChange(graph: ResolvedGraph, running: readonly string[], file: string): string[] {
  const rel = relative(graph.root, file);
  if (SHARED.some((d) => rel === d || rel.startsWith(d + sep))) return [...running];
  return running.filter((n) => {
    const dir = resolve(graph.root, graph.nodes[n]!.service);
    return file === dir || file.startsWith(dir + sep);
  });
}

export function watchGraph(graph: ResolvedGraph, sup: Supervisor, log: WatchLog): Watcher {
  const running = sup.nodes;
  const dirs = [
    ...new Set([
      ...running.map((n) => resolve(graph.root, graph.nodes[n]!.service)),
      ...SHARED.map((d) => join(graph.root, d)),
    ]),
  ];
  const pending = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let busy = false;
  let closed = false;

  const apply = async (): Promise<void> => {
    if (busy || closed) return;
    busy = true;
    try {
      while (pending.size && !closed) {
        const node = [...pending][0]!;
        pending.delete(node);
        const count = sup.replicas(node).length;
        if (count === 0) continue; // scaled to zero: its next replica starts with the new code anyway
        log.info(`watch: ${node} changed: replacing its ${count} replica(s), one at a time`);
        try {
          const n = await sup.restart(node, 60_000);
          log.info(`watch: ${node} serves the new code (${n} replica(s) replaced)`);
        } catch (err) {
          log.warn(`watch: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    } finally {
      busy = false;
    }
    if (pending.size && !closed) void apply();
  };

  const onChange = (dir: string, name: string | Buffer | null): void => {
    if (closed || !name) return;
    const file = join(dir, name.toString());
    if (/(^|[/\\])(node_modules|\.git)([/\\]|$)|~$|\.swp$/.test(file)) return;
    for (const n of nodesOfChange(graph, running, file)) pending.add(n);
    clearTimeout(timer);
    timer = setTimeout(() => void apply(), DEBOUNCE_MS);
  };

  const watchers: FSWatcher[] = [];
  for (const dir of dirs) {
    try {
      watchers.push(watch(dir, { recursive: true }, (_event, name) => onChange(dir, name)));
    } catch (err) {
      log.warn(`watch: cannot watch ${relative(graph.root, dir) || dir}`, {
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }
  try {
    watchers.push(
      watch(graph.file, () =>
        log.warn(`watch: ${relative(graph.root, graph.file)} changed: stop up and start it again to apply it`),
      ),
    );
  } catch {
    // not watchable: nothing to say
  }
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
