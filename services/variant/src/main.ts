/** variant-a / variant-b: one module, two nodes; VARIANT and ALGORITHM come from graph.config.ts. */
import { VariantProcess } from "../../../subjects/index.ts";
import { runNode } from "../../../runtime/index.ts";
import Params from "./params.ts";

await runNode(
  async (ctx) => {
    const { VARIANT: variant, ALGORITHM: algorithm } = ctx.params;
    ctx.serve(VariantProcess, ({ message }) => {
      const out =
        variant === "A" ? `Processed by variant A: ${message}` : `Processed by variant B: ${message.toUpperCase()}`;
      return { variant, message: out, algorithm };
    });
  },
  { params: Params },
);
