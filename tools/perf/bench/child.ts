/**
 * A helper process of the bench (the bare NATS responder, the one-process composition): `node --import tsx
 * <script> '<json>'`, started and waited for until it prints its first line of JSON on stdout (it is ready),
 * then stopped with SIGTERM (SIGKILL after a grace). Its stderr is kept (the end of it) to say why it failed.
 */
import { spawn, type ChildProcess } from "node:child_process";

export interface HelperProcess<T> {
  readonly child: ChildProcess;
  readonly pid: number;
  /** What it printed when ready. */
  readonly ready: T;
  /** SIGTERM, SIGKILL after `graceMs` (default 5000); resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

export function startHelper<T>(
  script: string,
  input: unknown,
  o: { cwd: string; readyTimeoutMs: number; env?: NodeJS.ProcessEnv; parse: (line: unknown) => T },
): Promise<HelperProcess<T>> {
  const child = spawn(process.execPath, ["--import", "tsx", script, JSON.stringify(input)], {
    cwd: o.cwd,
    stdio: ["ignore", "pipe", "pipe"],
    env: o.env ?? process.env,
  });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const stop = async (graceMs = 5000): Promise<void> => {
    if (!alive()) return;
    child.kill("SIGTERM");
    const t = setTimeout(() => {
      if (alive()) child.kill("SIGKILL");
    }, graceMs);
    await exited;
    clearTimeout(t);
  };
  const why = (): string => stderr.trim().split("\n").slice(-5).join("\n");
  return new Promise((resolve, reject) => {
    let out = "";
    const fail = (msg: string): void => {
      clearTimeout(timer);
      void stop(0).then(() => reject(new Error(`${script}: ${msg}${why() ? `: ${why()}` : ""}`)));
    };
    const timer = setTimeout(() => fail(`not ready after ${o.readyTimeoutMs / 1000} s`), o.readyTimeoutMs);
    const onData = (d: string): void => {
      out += d;
      const nl = out.indexOf("\n");
      if (nl < 0) return;
      child.stdout!.removeListener("data", onData);
      child.removeListener("exit", onExit);
      child.stdout!.resume(); // whatever it prints later is dropped
      clearTimeout(timer);
      let ready: T;
      try {
        ready = o.parse(JSON.parse(out.slice(0, nl)));
      } catch (err) {
        fail(`printed no ready line (${err instanceof Error ? err.message : String(err)})`);
        return;
      }
      resolve({ child, pid: child.pid ?? 0, ready, stop });
    };
    const onExit = (code: number | null, sig: NodeJS.Signals | null): void =>
      fail(`exited before it was ready (${sig ?? `exit code ${code}`})`);
    child.stdout!.setEncoding("utf8").on("data", onData);
    child.once("exit", onExit);
    child.once("error", (err) => fail(err.message));
  });
}
