/** Parameters of the greeter-proxy node. */
import { defineParams, param } from "../../../runtime/params.ts";

export default defineParams({
  GREETER_SUBJECT: param
    .subject("greeter's greet subject, injected by the launcher (pattern B); the graph's own is used when unset.")
    .optional(),
});
