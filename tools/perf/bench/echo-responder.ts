/**
 * The bare responder of `servegraph bench --target infer`: what request-reply costs on this machine's NATS with
 * nothing else in the way. A process of its own (as an infer replica is), one plain nats.js subscription in a
 * queue group, answering every request at once with the same reply of `replyBytes` bytes (infer's reply: 1000
 * float32 logits), no batching, no model, no decoding, no runtime kit.
 *
 *   node --import tsx tools/perf/bench/echo-responder.ts '{"natsUrl":"nats://127.0.0.1:4222","subject":"sg.bench.echo","replyBytes":4000}'
 *
 * Prints one line of JSON on stdout once its subscription is registered with the server (`{"ready":true}`),
 * then answers until SIGTERM or SIGINT (it drains its connection and exits 0). Exit code 2 for bad input.
 */
import { connect } from "@nats-io/transport-node";
import { z } from "zod";

const Input = z.strictObject({
  natsUrl: z.string().min(1),
  subject: z.string().min(1),
  replyBytes: z
    .number()
    .int()
    .min(0)
    .max(1 << 20),
});

let input: z.output<typeof Input>;
try {
  input = Input.parse(JSON.parse(process.argv[2] ?? ""));
} catch (err) {
  process.stderr.write(`echo-responder: bad input: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
}

const nc = await connect({ servers: input.natsUrl, name: "servegraph-bench-echo" });
const reply = new Uint8Array(input.replyBytes).fill(7);
nc.subscribe(input.subject, {
  queue: "bench-echo",
  callback: (_err, msg) => {
    msg.respond(reply);
  },
});
await nc.flush();
process.stdout.write(JSON.stringify({ ready: true }) + "\n");

const stop = (): void => {
  void nc.drain().finally(() => process.exit(0));
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
