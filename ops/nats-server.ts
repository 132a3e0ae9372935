/** Starts a local nats-server on a free loopback port: the embedded default of `servegraph up` and of the tests. */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface LocalNats {
  url: string;
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export function findNatsServer(): string | undefined {
  if (process.env.NATS_SERVER_BIN && existsSync(process.env.NATS_SERVER_BIN)) return process.env.NATS_SERVER_BIN;
  for (const p of ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]) if (existsSync(p)) return p;
  const r = spawnSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : undefined;
}

export const NATS_INSTALL_HINT = "nats-server is not installed. On Debian/Ubuntu: `sudo apt-get install -y nats-server`; elsewhere see https://docs.nats.io/running-a-nats-service/introduction/installation (or set NATS_URL to an existing server).";

/**
 * max_payload is raised to 16 MB so an 8 MB image fits in one request; single-image tensors (602 KB) fit the
 * 1 MB default anyway. Against another server, the ingress answers 413 for images over that server's limit.
 */
export async function startNats(opts: { maxPayloadBytes?: number; log?: (line: string) => void } = {}): Promise<LocalNats> {
  const bin = findNatsServer();
  if (!bin) throw new Error(NATS_INSTALL_HINT);
  const dir = mkdtempSync(join(tmpdir(), "servegraph-nats-"));
  const maxPayload = opts.maxPayloadBytes ?? 16 * 1024 * 1024;
  writeFileSync(join(dir, "nats.conf"), `max_payload: ${maxPayload}\nmax_pending: ${Math.max(64 * 1024 * 1024, maxPayload * 4)}\n`);
  const child = spawn(bin, ["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", dir, "-c", join(dir, "nats.conf")], {
    stdio: ["ignore", "ignore", "pipe"],
    // Its own process group: Ctrl-C must not stop the broker before the nodes have drained through it.
    detached: true,
  });
  const killOnExit = (): void => { if (child.exitCode === null) child.kill("SIGKILL"); };
  process.once("exit", killOnExit);
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  const t0 = Date.now();
  let url: string | undefined;
  while (!url) {
    if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}: ${stderr}`);
    const f = readdirSync(dir).find((n) => n.endsWith(".ports"));
    if (f) {
      try {
        url = (JSON.parse(readFileSync(join(dir, f), "utf8")) as { nats: string[] }).nats[0];
      } catch {
        // written but not complete yet
      }
    }
    if (Date.now() - t0 > 10_000) { child.kill("SIGKILL"); throw new Error(`nats-server did not start in 10 s: ${stderr}`); }
    if (!url) await new Promise((r) => setTimeout(r, 20));
  }
  const port = Number(new URL(url).port);
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    }
    process.removeListener("exit", killOnExit);
    rmSync(dir, { recursive: true, force: true });
  };
  return { url, port, process: child, stop, [Symbol.asyncDispose]: stop };
}
