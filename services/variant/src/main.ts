/** variant-a / variant-b: one module, two nodes; VARIANT and ALGORITHM come from graph.config.ts. */
import { Endpoints, VariantRequest, type VariantReply } from "../../../subjects/index.ts";
import { runNode } from "../../../runtime/index.ts";

await runNode(async (ctx) => {
  const variant = ctx.param("VARIANT");
  if (variant !== "A" && variant !== "B") throw new Error(`VARIANT must be A or B, got ${variant}`);
  const algorithm = ctx.param("ALGORITHM");
  ctx.service.addEndpoint(Endpoints.variant.process, {
    subject: ctx.subjectOf(ctx.node.name, Endpoints.variant.process),
    handler: (req): VariantReply => {
      const { message } = req.json(VariantRequest);
      const out = variant === "A" ? `Processed by variant A: ${message}` : `Processed by variant B: ${message.toUpperCase()}`;
      return { variant, message: out, algorithm };
    },
  });
});
