/** Parameters of the ingress node (graph.config.ts `nodes.ingress.parameters`); a route is served when its subject is set. */
import { defineParams, param } from "../../../runtime/params.ts";

export default defineParams({
  GREETING_SUBJECT: param.subject("Subject of GET /greeting/:name (greeter-proxy's greeting endpoint).").optional(),
  CLASSIFY_SUBJECT: param.subject("Subject of POST /classify (preprocess's classify endpoint).").optional(),
  LABELS_SUBJECT: param.subject("Subject of GET /labels (infer's labels endpoint).").optional(),
  PROCESS_SUBJECT: param.subject("Subject of GET /process/:message (ab-router's process endpoint).").optional(),
  MAX_BODY_BYTES: param.number("Largest request body, and largest image fetched from a URL, in bytes.", { int: true, min: 1 }).default(8 * 1024 * 1024),
  IMAGE_FETCH_TIMEOUT_MS: param.number("Time allowed to fetch an image URL.", { int: true, min: 1 }).default(10_000),
  ALLOW_PRIVATE_IMAGE_URLS: param.bool("Allow image URLs that resolve to private, loopback or link-local addresses (local testing only).").default(false),
});
