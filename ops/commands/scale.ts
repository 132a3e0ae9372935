/**
 * servegraph scale <node> <replicas> [--host name]: asks the running `servegraph up` supervisor over NATS (with
 * --host: the `up` on that host, e.g. a worker host started with `--only`) to set the node's replica count, and pins
 * it there: its autoscaler no longer moves it (`servegraph status` shows it pinned).
 * servegraph scale <node> --auto [--host name]: unpins the node; the autoscaler moves it again.
 */
import { parseArgs } from "node:util";
import { connectNats, createClient } from "../../runtime/index.ts";
import { GraphError } from "../../subjects/errors.ts";
import { OPS_CONTROL_SUBJECT, opsControlSubjectOf } from "../../subjects/names.ts";
import { OpsControl, ScaleReply, type OpsControlRequest } from "../../subjects/ops.ts";
import { resolveNatsUrl, opsCredentials } from "../state.ts";

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      json: { type: "boolean" },
      nats: { type: "string" },
      host: { type: "string" },
      auto: { type: "boolean" },
    },
    allowPositionals: true,
  });
  const [node, n] = positionals;
  const count = Number(n);
  const auto = values.auto ?? false;
  if (!node || (auto ? n !== undefined : !Number.isInteger(count))) {
    process.stderr.write(
      "usage: servegraph scale <node> <replicas> [--host name] [--nats url]\n       servegraph scale <node> --auto [--host name] [--nats url]\n",
    );
    return 2;
  }
  const natsUrl = resolveNatsUrl(values.nats);
  const nc = await connectNats({ name: "servegraph-scale", servers: natsUrl, credentials: opsCredentials(natsUrl) });
  try {
    const client = createClient(nc, { caller: "servegraph-cli", defaultTimeoutMs: 130_000 });
    const body: OpsControlRequest = auto ? { op: "scale", node, auto: true } : { op: "scale", node, replicas: count };
    const answer = await client.call(
      OpsControl,
      values.host ? opsControlSubjectOf(values.host) : OPS_CONTROL_SUBJECT,
      body,
    );
    const res = ScaleReply.parse(answer); // a `scale` is answered with a ScaleReply, never a snapshot
    const where = ` on ${res.host}`;
    process.stdout.write(
      values.json
        ? JSON.stringify(res) + "\n"
        : auto
          ? `${res.node}: autoscaled again (${res.replicas} replica(s)${where} now)\n`
          : `${res.node}: ${res.replicas} replica(s)${where}, pinned (\`servegraph scale ${res.node} --auto\` unpins)\n`,
    );
    return 0;
  } catch (err) {
    const ge = GraphError.from(err);
    const msg =
      ge.code === "UNAVAILABLE"
        ? `no \`servegraph up\`${values.host ? ` on host ${values.host}` : ""} is running on this NATS server`
        : ge.message;
    if (values.json)
      process.stdout.write(JSON.stringify({ ok: false, error: { ...ge.toJSON(), message: msg } }) + "\n");
    else process.stderr.write(`error ${ge.status} ${ge.code}: ${msg}\n`);
    return 1;
  } finally {
    await nc.drain().catch(() => {});
  }
}
