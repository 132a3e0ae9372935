/** greeter: the callee of the two-node chain. `DELAY_MS` simulates a slow dependency. */
import { setTimeout as sleep } from "node:timers/promises";
import { Endpoints, GreetRequest, type GreetReply } from "../../../subjects/index.ts";
import { runNode } from "../../../runtime/index.ts";

await runNode(async (ctx) => {
  const greeting = ctx.param("GREETING");
  const delayMs = ctx.paramNumber("DELAY_MS");
  ctx.service.addEndpoint(Endpoints.greeter.greet, {
    subject: ctx.subjectOf(ctx.node.name, Endpoints.greeter.greet),
    handler: async (req): Promise<GreetReply> => {
      const { name } = req.json(GreetRequest);
      if (delayMs > 0) {
        await sleep(delayMs, undefined, { signal: req.signal }).catch(() => {});
        req.signal.throwIfAborted();
      }
      return { message: `${greeting}, ${name}!`, served_by: ctx.replicaId };
    },
  });
});
