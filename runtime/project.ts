/**
 * The project a command works on: the nearest folder at or above the working directory that holds
 * graph.config.ts, else this package's own folder (its reference graph). The graph file, `servegraph up`'s state
 * (.servegraph/) and the bench's results resolve from it, so every command works from any subfolder of a project.
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const GRAPH_FILE_NAME = "graph.config.ts";
/** This package's folder (the reference graph's project). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The nearest folder at or above `from` with a graph.config.ts; undefined when there is none up to the file system's root. */
export function findProjectRoot(from: string = process.cwd()): string | undefined {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    if (existsSync(join(dir, GRAPH_FILE_NAME))) return dir;
    if (dirname(dir) === dir) return undefined;
  }
}

/** The project of the working directory, else this package's. */
export function projectRoot(): string {
  return findProjectRoot() ?? PACKAGE_ROOT;
}
