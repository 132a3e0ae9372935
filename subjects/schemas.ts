/** JSON payload contracts of the reference graphs' subjects (zod 4, strict). */
import { z } from "zod";

export const MAX_NAME_LENGTH = 256;
export const MAX_MESSAGE_LENGTH = 1024;
export const MAX_USER_KEY_LENGTH = 256;

// --- two-node chain -------------------------------------------------------------------------------------
export const GreetRequest = z.strictObject({
  name: z.string().min(1).max(MAX_NAME_LENGTH).describe("Who to greet."),
});
export type GreetRequest = z.infer<typeof GreetRequest>;

export const GreetReply = z.strictObject({
  message: z.string(),
  served_by: z.string().describe("The replica id of the greeter that answered."),
});
export type GreetReply = z.infer<typeof GreetReply>;

export const GreeterEndpoints = z.strictObject({
  pattern_a: z.string().describe("The greeter subject read from graph.config.ts in-module."),
  pattern_b: z.string().nullable().describe("The greeter subject injected as an env var (GREETER_SUBJECT)."),
});
export type GreeterEndpoints = z.infer<typeof GreeterEndpoints>;

// --- image classification ---------------------------------------------------------------------------------
export const MAX_TOP_K = 1000;

export const Prediction = z.strictObject({
  label: z.string(),
  score: z.number(),
});
export const Predictions = z.array(Prediction);
export type Prediction = z.infer<typeof Prediction>;

export const Labels = z.array(z.string()).min(1);

export const InferInfo = z.strictObject({
  model: z.string(),
  execution_provider: z
    .enum(["cpu", "cuda", "webgpu"])
    .describe("The onnxruntime execution provider the model runs on."),
  provider_fallbacks: z
    .array(z.strictObject({ provider: z.enum(["cpu", "cuda", "webgpu"]), reason: z.string() }))
    .default([])
    .describe(
      "Providers tried before execution_provider (EXECUTION_PROVIDER auto), in order, with why each did not start.",
    ),
  adapter: z
    .strictObject({ kind: z.enum(["hardware", "software"]), name: z.string() })
    .optional()
    .describe(
      "What a GPU provider runs on: a hardware GPU, or a software (CPU) Vulkan driver such as lavapipe; absent on cpu.",
    ),
  input_shape: z.array(z.number().int()),
  output_size: z.number().int(),
  max_batch_size: z.number().int(),
  max_queue_delay_ms: z.number(),
  max_queue_size: z.number().int(),
  max_concurrent_batches: z.number().int().optional(),
});
export type InferInfo = z.infer<typeof InferInfo>;

// --- A/B routing ------------------------------------------------------------------------------------------
export const ProcessRequest = z.strictObject({
  message: z.string().max(MAX_MESSAGE_LENGTH),
  user_key: z.string().min(1).max(MAX_USER_KEY_LENGTH),
});
export type ProcessRequest = z.infer<typeof ProcessRequest>;

export const VariantRequest = z.strictObject({
  message: z.string().max(MAX_MESSAGE_LENGTH),
});
export const VariantReply = z.strictObject({
  variant: z.enum(["A", "B"]),
  message: z.string(),
  algorithm: z.string(),
});
export type VariantReply = z.infer<typeof VariantReply>;

export const AbTestResult = z.strictObject({
  user_key: z.string(),
  selected_variant: z.enum(["A", "B"]),
  gate_name: z.string(),
  decided_by: z.enum(["statsig", "fallback"]).describe("Whether Statsig decided, or the deterministic hash fallback."),
});
export const ProcessReply = z.strictObject({
  ab_test_result: AbTestResult,
  response: VariantReply,
});
export type ProcessReply = z.infer<typeof ProcessReply>;
