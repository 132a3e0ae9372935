/** What makes a soak fail (exit 1): a graph process exited or was replaced during it, or too many requests failed. */
import type { ProcessMemory } from "./memory.ts";

/** More failed requests than this share makes the soak fail. */
const MAX_ERROR_RATE = 0.01;

export function soakProblems(processes: readonly ProcessMemory[], errorRate: number): string[] {
  const problems: string[] = [];
  for (const p of processes) {
    if (!p.alive) problems.push(`${p.name} (pid ${p.pid}) exited during the soak`);
    if (p.appeared) problems.push(`${p.name} (pid ${p.pid}) started during the soak (a replica was replaced)`);
  }
  if (errorRate > MAX_ERROR_RATE)
    problems.push(`${(errorRate * 100).toFixed(2)}% of requests failed (limit ${MAX_ERROR_RATE * 100}%)`);
  return problems;
}
