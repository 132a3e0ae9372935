/** servegraph scale <node> <replicas>: asks the running `servegraph up` supervisor over NATS. */
import { parseArgs } from "node:util";
import { connectNats, createClient } from "../../runtime/index.ts";
import { GraphError } from "../../subjects/errors.ts";
import { OPS_CONTROL_SUBJECT } from "../../subjects/names.ts";
import { resolveNatsUrl, useOpsCredentials } from "../state.ts";

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { json: { type: "boolean" }, nats: { type: "string" } }, allowPositionals: true });
  const [node, n] = positionals;
  const count = Number(n);
  if (!node || !Number.isInteger(count)) {
    process.stderr.write("usage: servegraph scale <node> <replicas>\n");
    return 2;
  }
  const natsUrl = resolveNatsUrl(values.nats);
  useOpsCredentials(natsUrl);
  const nc = await connectNats({ name: "servegraph-scale", servers: natsUrl });
  try {
    const client = createClient(nc, { caller: "servegraph-cli", defaultTimeoutMs: 130_000 });
    const res = (await client.requestJson(OPS_CONTROL_SUBJECT, { op: "scale", node, replicas: count })) as { node: string; replicas: number };
    process.stdout.write(values.json ? JSON.stringify(res) + "\n" : `${res.node}: ${res.replicas} replica(s)\n`);
    return 0;
  } catch (err) {
    const ge = GraphError.from(err);
    const msg = ge.code === "UNAVAILABLE" ? "no `servegraph up` is running on this NATS server" : ge.message;
    if (values.json) process.stdout.write(JSON.stringify({ ok: false, error: { ...ge.toJSON(), message: msg } }) + "\n");
    else process.stderr.write(`error ${ge.status} ${ge.code}: ${msg}\n`);
    return 1;
  } finally {
    await nc.drain().catch(() => {});
  }
}
