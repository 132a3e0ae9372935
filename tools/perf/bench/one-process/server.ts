/**
 * The one-process composition: the classify graph's parts in one process, with no NATS and no batching. This is
 * what `servegraph bench --target classify` measures the graph against, the honest limit of the split: the same
 * work (HTTP, decode and resize, normalise, forward pass, softmax and top-k) without the hops.
 *
 * It imports the two services' modules (services/preprocess's `createPreprocessor`, `softmax`, `topK`, and
 * services/infer's `createModelHost`, with each service's parameter schema): composing them in one process is
 * its whole point, so it breaks the rule that ops/ never imports services/ on purpose. The bench itself never
 * loads it; it runs it as a process of its own:
 *
 *   node --import tsx ops/bench/one-process/server.ts '<input json>'
 *
 * Input: `{ modelPath, inferParameters, preprocessParameters, maxBodyBytes, host?, port? }`
 * - `modelPath`: the ONNX file the graph's infer loaded; `inferParameters`: infer's parameters (strings, parsed by
 *   its schema), EXECUTION_PROVIDER being the provider the graph's infer runs on; INTRA_OP_THREADS (0: every
 *   core) and ALLOW_SPINNING set up the session as in a replica.
 * - `preprocessParameters`: preprocess's parameters (PREPROCESS_MODE, input limits) as the graph's replica has them.
 *
 * Serves `POST /classify`: the raw image as the body (image/*, application/octet-stream), `?top_k=` (1..MAX_TOP_K,
 * default 5); answers the graph's JSON, `[{label, score}]`, best first. Each request: `toPixels` (uint8 CHW, as
 * preprocess sends), normalised into a batch slot of 1 (infer's own code path, subjects/image-normalization.ts),
 * one forward pass of batch 1 (no batching: concurrent requests queue on the model's worker thread), softmax and
 * top-k with the labels infer would serve. Errors answer `{code, message, details?}` with the table's status.
 * No deadline per request (the graph's is 30 s; nothing here waits on another process).
 *
 * Prints one line of JSON on stdout when it listens: `{ url, executionProvider, model, mode, intraOpNumThreads }`.
 * SIGTERM or SIGINT: closes the server, the preprocessor and the model host, exits 0. Exit 1 when it cannot start
 * (the model does not load), 2 for bad input.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import Fastify, { type FastifyError } from "fastify";
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { Classify, DEFAULT_TOP_K, GraphError, TopK, codeForStatus, normalizeChw } from "../../../../subjects/index.ts";
import { createModelHost } from "../../../../services/infer/src/model-host.ts";
import inferParams from "../../../../services/infer/src/params.ts";
import { createPreprocessor, softmax, topK } from "../../../../services/preprocess/src/index.ts";
import preprocessParams from "../../../../services/preprocess/src/params.ts";
import { IMAGE_CONTENT_TYPES } from "../../../../services/ingress/src/image-body.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../../../..");

const Input = z.strictObject({
  modelPath: z.string().min(1),
  inferParameters: z.record(z.string(), z.string()),
  preprocessParameters: z.record(z.string(), z.string()),
  maxBodyBytes: z.number().int().min(1),
  host: z.string().default("127.0.0.1"),
  port: z.number().int().min(0).max(65535).default(0),
});

function fail(code: number, msg: string): never {
  process.stderr.write(`one-process server: ${msg}\n`);
  process.exit(code);
}

let input: z.output<typeof Input>;
try {
  input = Input.parse(JSON.parse(process.argv[2] ?? ""));
} catch (err) {
  fail(
    2,
    `bad input: ${err instanceof z.ZodError ? z.prettifyError(err) : err instanceof Error ? err.message : String(err)}`,
  );
}

/** The labels infer serves: data/imagenet-labels.json when it has one per output row, else class_<i>. */
function loadLabels(n: number): string[] {
  try {
    const labels = JSON.parse(readFileSync(resolve(REPO_ROOT, "data/imagenet-labels.json"), "utf8")) as unknown;
    if (Array.isArray(labels) && labels.length === n && labels.every((l) => typeof l === "string"))
      return labels as string[];
  } catch {
    // generic names below
  }
  return Array.from({ length: n }, (_, i) => `class_${i}`);
}

const ip = inferParams.parse(input.inferParameters);
const pp = preprocessParams.parse(input.preprocessParameters);
const intraOpNumThreads = ip.INTRA_OP_THREADS || availableParallelism();
const host = await createModelHost({
  modelPath: input.modelPath,
  executionProvider: ip.EXECUTION_PROVIDER,
  intraOpNumThreads,
  allowSpinning: ip.ALLOW_SPINNING,
  log: (msg, attrs) => process.stderr.write(`one-process server: ${msg}${attrs ? ` ${JSON.stringify(attrs)}` : ""}\n`),
}).catch((err: unknown) => fail(1, `model host: ${err instanceof Error ? err.message : String(err)}`));
const pre = createPreprocessor({
  mode: pp.PREPROCESS_MODE,
  maxInputPixels: pp.MAX_INPUT_PIXELS,
  maxInputBytes: pp.MAX_INPUT_BYTES,
});
const labels = loadLabels(host.outputSize);
const rowElems = host.inputShape.reduce((a, b) => a * b, 1);
host.reserveSlots(1, 1);

const app = Fastify({ logger: false, bodyLimit: input.maxBodyBytes }).withTypeProvider<ZodTypeProvider>();
app.setValidatorCompiler(validatorCompiler);
app.setSerializerCompiler(serializerCompiler);
app.removeAllContentTypeParsers();
app.addContentTypeParser([...IMAGE_CONTENT_TYPES], { parseAs: "buffer" }, (_req, body, done) => done(null, body));
app.addContentTypeParser(/^image\//, { parseAs: "buffer" }, (_req, body, done) => done(null, body));
app.setErrorHandler(async (err: FastifyError, _req, reply) => {
  const ge =
    err instanceof GraphError
      ? err
      : err.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE"
        ? new GraphError(
            "UNSUPPORTED_MEDIA_TYPE",
            "unsupported Content-Type; send an image (image/*, application/octet-stream)",
          )
        : new GraphError(
            codeForStatus(err.statusCode ?? 500),
            err.statusCode && err.statusCode < 500 ? err.message : "internal error",
          );
  return reply
    .status(ge.status)
    .header("content-type", "application/json; charset=utf-8")
    .send(JSON.stringify(ge.toJSON()));
});

app.post(
  "/classify",
  {
    schema: {
      querystring: z.object({ top_k: TopK.default(DEFAULT_TOP_K) }),
      body: z.instanceof(Buffer),
      response: { 200: Classify.reply.schema },
    },
  },
  async (req) => {
    if (req.body.length === 0) throw new GraphError("INVALID_IMAGE", "empty image");
    const pixels = await pre.toPixels(req.body);
    if (pixels.length !== rowElems)
      throw new GraphError("INTERNAL", `the preprocessor gave ${pixels.length} values, the model takes ${rowElems}`);
    const { output } = await host.runBatch(1, (x) => normalizeChw(pixels, x));
    const logits = output.subarray(0, host.outputSize);
    for (let i = 0; i < logits.length; i++) {
      if (!Number.isFinite(logits[i]!))
        throw new GraphError("MODEL_ERROR", "the model produced a non-finite logit for this input");
    }
    return topK(softmax(logits), req.query.top_k, labels).map(({ label, score }) => ({ label, score }));
  },
);

const url = await app.listen({ host: input.host, port: input.port });
process.stdout.write(
  JSON.stringify({
    url,
    executionProvider: host.executionProvider,
    model: input.modelPath,
    mode: pre.mode,
    intraOpNumThreads,
  }) + "\n",
);

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  void app
    .close()
    .then(() => pre.close())
    .then(() => host.close())
    .finally(() => process.exit(0));
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
