/**
 * greeter-proxy: calls greeter over NATS. It finds greeter's subject both ways the seed shows:
 * pattern A, read from the graph in-module; pattern B, injected by the launcher as GREETER_SUBJECT.
 * Both must agree; the injected one wins (it is what a deployment controls).
 */
import { Endpoints, GreetReply, GreetRequest, type GreeterEndpoints } from "../../../subjects/index.ts";
import { runNode } from "../../../runtime/index.ts";

await runNode(async (ctx) => {
  const patternA = ctx.subjectOf("greeter", Endpoints.greeter.greet);
  const patternB = process.env.GREETER_SUBJECT ?? null;
  if (patternB !== null && patternB !== patternA) {
    ctx.log.warn("GREETER_SUBJECT differs from the graph; using the injected one", { pattern_a: patternA, pattern_b: patternB });
  }
  const greeter = patternB ?? patternA;

  ctx.service.addEndpoint(Endpoints.greeterProxy.greeting, {
    subject: ctx.subjectOf(ctx.node.name, Endpoints.greeterProxy.greeting),
    handler: async (req): Promise<GreetReply> => {
      const body = req.json(GreetRequest);
      return ctx.client.requestJson(greeter, body, { deadlineEpochMs: req.deadlineEpochMs, schema: GreetReply });
    },
  });
  ctx.service.addEndpoint(Endpoints.greeterProxy.endpoints, {
    subject: ctx.subjectOf(ctx.node.name, Endpoints.greeterProxy.endpoints),
    handler: (): GreeterEndpoints => ({ pattern_a: patternA, pattern_b: patternB }),
  });
});
