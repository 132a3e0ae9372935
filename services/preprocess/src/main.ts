/**
 * preprocess: the CPU side of image classification. Takes image bytes (JPEG, PNG, WebP, GIF first frame...),
 * decodes, blurs and resizes to 224x224 RGB, sends the pixels to `infer` as a uint8 CHW tensor (raw bytes, dtype
 * and shape in headers; infer normalises them, a quarter of the bytes of float32 on the wire), and turns the
 * logits it gets back into top-k labelled scores.
 * Direct NATS callers send the image as the body of a request to this node's `classify` subject, with
 * optional `Graph-Top-K` and `Content-Type` headers, and get the same JSON as the HTTP route; both are
 * checked by the endpoint's definition (subjects/endpoints.ts). Each answer carries `Server-Timing`
 * (subjects/server-timing.ts): `preprocess` (its own work), `infer` (the call, as timed here) and infer's details.
 */
import {
  Classify,
  Headers,
  IMAGE_TENSOR_SHAPE,
  InferLabels,
  InferRun,
  TensorDtype,
  formatServerTiming,
  nestedTiming,
  toFloat32,
} from "../../../subjects/index.ts";
import { runNode, withSpan } from "../../../runtime/index.ts";
import { createPreprocessor, softmax, topK } from "./index.ts";
import Params from "./params.ts";

await runNode(
  async (ctx) => {
    const { PREPROCESS_MODE: mode, INFER_SUBJECT: inferSubject, LABELS_SUBJECT: labelsSubject } = ctx.params;
    const pre = createPreprocessor({
      mode,
      maxInputPixels: ctx.params.MAX_INPUT_PIXELS,
      maxInputBytes: ctx.params.MAX_INPUT_BYTES,
    });
    ctx.afterStop(() => pre.close());
    ctx.metadata.preprocess_mode = mode;

    // Labels come from the node that owns the model (the seed's GET /labels at start-up); fetched lazily if
    // infer is not up yet, so preprocess can start first.
    let labels: readonly string[] | undefined;
    const getLabels = async (deadlineEpochMs: number): Promise<readonly string[]> => {
      labels ??= await ctx.client.call(InferLabels, labelsSubject, undefined, { deadlineEpochMs });
      return labels;
    };
    await getLabels(Date.now() + 5000).catch((err: unknown) =>
      ctx.log.warn("labels not available yet; will fetch on first request", { error: err }),
    );

    ctx.serve(Classify, async ({ data, headers }, req) => {
      const k = headers[Headers.TopK];
      const t0 = performance.now();
      const pixels = await withSpan(
        "preprocess image",
        { "sg.preprocess.mode": mode, "sg.image.bytes": data.length },
        () => pre.toPixels(data, req.signal),
      );
      const t1 = performance.now();
      let inferTiming: string | undefined;
      const logits = await ctx.client.call(
        InferRun,
        inferSubject,
        { data: pixels, shape: IMAGE_TENSOR_SHAPE, dtype: TensorDtype.uint8 },
        {
          deadlineEpochMs: req.deadlineEpochMs,
          onReplyHeaders: (h) => void (inferTiming = h(Headers.ServerTiming)),
        },
      );
      const inferMs = performance.now() - t1;
      const names = await getLabels(req.deadlineEpochMs);
      const top = await withSpan("postprocess", { "sg.top_k": k }, async () =>
        topK(softmax(toFloat32(logits.data)), k, names).map(({ label, score }) => ({ label, score })),
      );
      // Where this request's time went: this node's own work, the infer call as seen from here (with its NATS hop), and
      // infer's own breakdown (subjects/server-timing.ts).
      req.setReplyHeader(
        Headers.ServerTiming,
        formatServerTiming([
          { name: "preprocess", durMs: performance.now() - t0 - inferMs },
          { name: "infer", durMs: inferMs },
          ...nestedTiming("infer", inferTiming),
        ]),
      );
      return top;
    });
  },
  { params: Params },
);
