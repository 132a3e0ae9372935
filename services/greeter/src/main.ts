/** greeter: the callee of the two-node chain. `DELAY_MS` simulates a slow dependency. */
import { setTimeout as sleep } from "node:timers/promises";
import { Greet } from "../../../subjects/index.ts";
import { runNode } from "../../../runtime/index.ts";
import Params from "./params.ts";

await runNode(
  async (ctx) => {
    const { GREETING: greeting, DELAY_MS: delayMs } = ctx.params;
    ctx.serve(Greet, async ({ name }, req) => {
      if (delayMs > 0) {
        await sleep(delayMs, undefined, { signal: req.signal }).catch(() => {});
        req.signal.throwIfAborted();
      }
      return { message: `${greeting}, ${name}!`, served_by: ctx.replicaId };
    });
  },
  { params: Params },
);
