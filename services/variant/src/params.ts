/** Parameters of a variant node (variant-a, variant-b: one module, two nodes). */
import { defineParams, param } from "../../../runtime/params.ts";

export default defineParams({
  VARIANT: param.oneOf(["A", "B"], "Which variant this node is."),
  ALGORITHM: param.string("The algorithm name this variant reports."),
});
