/** servegraph request <subject> <json|@file|-> : one direct NATS request, the way any service on the cluster calls a node. */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { connectNats, createClient, startTelemetry, stopTelemetry } from "../../runtime/index.ts";
import { GraphError } from "../../subjects/errors.ts";
import { resolveNatsUrl, opsCredentials } from "../state.ts";

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      json: { type: "boolean" },
      nats: { type: "string" },
      timeout: { type: "string", default: "30000" },
      header: { type: "string", multiple: true },
      graph: { type: "string" },
    },
    allowPositionals: true,
  });
  const [subject, dataArg = "{}"] = positionals;
  if (!subject) {
    process.stderr.write("usage: servegraph request <subject> <json | @file | -> [--header K=V] [--timeout ms]\n");
    return 2;
  }
  const data: Uint8Array =
    dataArg === "-"
      ? readFileSync(0)
      : dataArg.startsWith("@")
        ? readFileSync(dataArg.slice(1))
        : new TextEncoder().encode(dataArg);
  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const i = h.indexOf("=");
    if (i <= 0) {
      process.stderr.write(`bad --header ${h}: expected K=V\n`);
      return 2;
    }
    headers[h.slice(0, i)] = h.slice(i + 1);
  }
  startTelemetry("servegraph-cli", { replica: `cli-${process.pid}`, graph: "cli" });
  const natsUrl = resolveNatsUrl(values.nats);
  const nc = await connectNats({ name: "servegraph-cli", servers: natsUrl, credentials: opsCredentials(natsUrl) });
  const client = createClient(nc, { caller: "servegraph-cli", defaultTimeoutMs: Number(values.timeout) });
  try {
    const reply = await client.request(subject, data, { headers });
    const text = new TextDecoder().decode(reply.data);
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON: print as text */
    }
    process.stdout.write(
      (values.json
        ? JSON.stringify({ ok: true, reply: body })
        : typeof body === "string"
          ? body
          : JSON.stringify(body, null, 2)) + "\n",
    );
    return 0;
  } catch (err) {
    const ge = GraphError.from(err);
    if (values.json) process.stdout.write(JSON.stringify({ ok: false, error: ge.toJSON(), status: ge.status }) + "\n");
    else process.stderr.write(`error ${ge.status} ${ge.code}: ${ge.message}\n`);
    return 1;
  } finally {
    await nc.drain().catch(() => {});
    await stopTelemetry();
  }
}
