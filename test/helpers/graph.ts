/**
 * Integration fixtures: a real nats-server on a random port and real node processes, disposed with
 * `await using`. Nothing here is mocked.
 */
import { fileURLToPath } from "node:url";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { loadGraph, type ResolvedGraph } from "../../runtime/config.ts";
import { connectNats } from "../../runtime/nats.ts";
import { startNats, type LocalNats } from "../../ops/nats-server.ts";
import { startSupervisor, type Supervisor } from "../../ops/supervisor.ts";

export { startNats, type LocalNats };

export const REPO_ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
export const TEST_GRAPH_FILE = resolve(REPO_ROOT, "test/fixtures/test-graph.config.ts");
export const REFERENCE_MODEL = resolve(REPO_ROOT, "../shared/models/resnet18-seed0.onnx");
export const HAVE_REFERENCE_MODEL = existsSync(REFERENCE_MODEL);
export const NO_REFERENCE_MODEL_REASON = `reference model not found at ${REFERENCE_MODEL} (only CI and dev machines have ../shared)`;

export interface RunningGraph {
  nats: LocalNats;
  nc: NatsConnection;
  graph: ResolvedGraph;
  sup: Supervisor;
  ingressUrl: string | undefined;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export async function startGraph(opts: {
  graphs: string[];
  graphFile?: string;
  env?: Record<string, string>;
  nodeEnv?: Record<string, Record<string, string>>;
  replicas?: Record<string, number>;
  /** Restart crashed replicas as `servegraph up` does (default false: a test sees every exit). */
  restart?: boolean;
}): Promise<RunningGraph> {
  const nats = await startNats();
  const nc = await connectNats({ name: "test", servers: nats.url });
  const graph = await loadGraph(opts.graphFile ?? TEST_GRAPH_FILE);
  let sup: Supervisor;
  try {
    sup = await startSupervisor({
      graph,
      graphs: opts.graphs,
      natsUrl: nats.url,
      nc,
      restart: opts.restart ?? false,
      stdio: process.env.SG_TEST_VERBOSE ? "inherit" : "ignore",
      env: { SG_LOG_LEVEL: "warn", OTEL_TRACES_EXPORTER: "none", ...opts.env },
      ...(opts.nodeEnv ? { nodeEnv: opts.nodeEnv } : {}),
      ...(opts.replicas ? { replicas: opts.replicas } : {}),
      readyTimeoutMs: 120_000,
      log: () => {},
    });
  } catch (err) {
    await nc.close();
    await nats.stop();
    throw err;
  }
  let ingressUrl: string | undefined;
  if (sup.nodes.includes("ingress")) {
    const info = await nc.request("$SRV.INFO.ingress", new Uint8Array(0), { timeout: 5000 });
    ingressUrl = (info.json() as { metadata: Record<string, string> }).metadata.http_url;
  }
  const stop = async (): Promise<void> => {
    await sup.stop();
    await nc.close().catch(() => {});
    await nats.stop();
  };
  return { nats, nc, graph, sup, ingressUrl, stop, [Symbol.asyncDispose]: stop };
}
