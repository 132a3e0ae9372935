/** Parameters of the greeter node. */
import { defineParams, param } from "../../../runtime/params.ts";

export default defineParams({
  GREETING: param.string("The greeting word.").default("Hello"),
  DELAY_MS: param.number("Simulated latency of each answer (a slow dependency).", { min: 0, max: 600_000 }).default(0),
});
