/**
 * greeter-proxy: calls greeter over NATS. It finds greeter's subject both ways the seed shows:
 * pattern A, read from the graph in-module; pattern B, injected by the launcher as GREETER_SUBJECT.
 * Both must agree; the injected one wins (it is what a deployment controls).
 */
import { Greet, GreeterEndpointsEndpoint, Greeting } from "../../../subjects/index.ts";
import { runNode } from "../../../runtime/index.ts";
import Params from "./params.ts";

await runNode(
  async (ctx) => {
    const patternA = ctx.subjectOf("greeter", Greet.name);
    const patternB = ctx.params.GREETER_SUBJECT ?? null;
    if (patternB !== null && patternB !== patternA) {
      ctx.log.warn("GREETER_SUBJECT differs from the graph; using the injected one", {
        pattern_a: patternA,
        pattern_b: patternB,
      });
    }
    const greeter = patternB ?? patternA;

    ctx.serve(Greeting, (body, req) => ctx.client.call(Greet, greeter, body, { deadlineEpochMs: req.deadlineEpochMs }));
    ctx.serve(GreeterEndpointsEndpoint, () => ({ pattern_a: patternA, pattern_b: patternB }));
  },
  { params: Params },
);
