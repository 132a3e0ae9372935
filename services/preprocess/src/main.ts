/**
 * preprocess: the CPU side of image classification. Takes image bytes (JPEG, PNG, WebP, GIF first frame...),
 * decodes, blurs, resizes to 224x224 and normalizes to a float32 CHW tensor, sends it to `infer` as raw
 * bytes (dtype and shape in headers), and turns the logits it gets back into top-k labelled scores.
 * Direct NATS callers send the image as the body of a request to this node's `classify` subject, with
 * optional `Graph-Top-K` and `Content-Type` headers, and get the same JSON as the HTTP route.
 */
import {
  Endpoints, GraphError, Headers, Labels, MAX_TOP_K, TensorDtype, decodeFloat32, encodeFloat32, parseShape, type Prediction,
} from "../../../subjects/index.ts";
import { runNode, withSpan } from "../../../runtime/index.ts";
import { createPreprocessor, softmax, topK } from "./index.ts";

const ACCEPTED = /^(image\/[\w.+-]+|application\/octet-stream)(;.*)?$/i;

await runNode(async (ctx) => {
  const mode = ctx.param("PREPROCESS_MODE");
  if (mode !== "fast" && mode !== "exact") throw new Error(`PREPROCESS_MODE must be fast or exact, got ${mode}`);
  const pre = createPreprocessor({ mode, maxInputPixels: ctx.paramNumber("MAX_INPUT_PIXELS"), maxInputBytes: ctx.paramNumber("MAX_INPUT_BYTES") });
  ctx.afterStop(() => pre.close());
  ctx.metadata.preprocess_mode = mode;
  const inferSubject = ctx.param("INFER_SUBJECT");
  const labelsSubject = ctx.param("LABELS_SUBJECT");

  // Labels come from the node that owns the model (the seed's GET /labels at start-up); fetched lazily if
  // infer is not up yet, so preprocess can start first.
  let labels: readonly string[] | undefined;
  const getLabels = async (deadlineEpochMs: number): Promise<readonly string[]> => {
    labels ??= await ctx.client.requestJson(labelsSubject, {}, { deadlineEpochMs, schema: Labels });
    return labels;
  };
  await getLabels(Date.now() + 5000).catch((err: unknown) => ctx.log.warn("labels not available yet; will fetch on first request", { error: err }));

  ctx.service.addEndpoint(Endpoints.preprocess.classify, {
    subject: ctx.subjectOf(ctx.node.name, Endpoints.preprocess.classify),
    metadata: { body: "image bytes", headers: `${Headers.TopK} (1..${MAX_TOP_K}, default 5), ${Headers.ContentType}` },
    handler: async (req): Promise<Prediction[]> => {
      const ct = req.header(Headers.ContentType);
      if (ct && !ACCEPTED.test(ct)) throw new GraphError("UNSUPPORTED_MEDIA_TYPE", `Content-Type ${ct.slice(0, 64)} is not an image`);
      const kRaw = req.header(Headers.TopK) ?? "5";
      const k = Number(kRaw);
      if (!Number.isInteger(k) || k < 1 || k > MAX_TOP_K) throw new GraphError("BAD_REQUEST", `top_k must be an integer within 1..${MAX_TOP_K}`);
      if (req.data.length === 0) throw new GraphError("INVALID_IMAGE", "empty image");
      const tensor = await withSpan("preprocess image", { "sg.preprocess.mode": mode, "sg.image.bytes": req.data.length }, () => pre.toTensor(req.data, req.signal));
      const reply = await ctx.client.request(inferSubject, encodeFloat32(tensor), {
        deadlineEpochMs: req.deadlineEpochMs,
        headers: { [Headers.Dtype]: TensorDtype.float32, [Headers.Shape]: "1,3,224,224" },
      });
      const logits = decodeFloat32(reply.data, reply.headers?.get(Headers.Dtype) || undefined, parseShape(reply.headers?.get(Headers.Shape) || undefined));
      const names = await getLabels(req.deadlineEpochMs);
      return withSpan("postprocess", { "sg.top_k": k }, async () =>
        topK(softmax(logits), k, names).map(({ label, score }) => ({ label, score })));
    },
  });
});
