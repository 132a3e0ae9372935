/**
 * Which execution providers this host can run infer's sessions on, and why not, in a process of its own (a provider
 * that fails to load can leave native state behind): `servegraph doctor` runs it.
 *
 *   node --import tsx services/infer/src/provider-probe.ts '{"providers":["cuda","webgpu","cpu"]}'   (or the JSON on stdin)
 *
 * Input: `{ providers, modelPath? }`: the providers to try, each on its own (not `auto`'s fallback order), and the
 * model (default: the generated trivial model, same shapes as ResNet18, almost no compute). Each is tried exactly as
 * a replica forced to it would be (model-host.ts: the same session options, a batch-1 warm-up run), one at a time.
 *
 * Output: one line of JSON on stdout, `{ providers: [{ provider, loaded, reason?, adapter?, ms }] }`: `reason` is the
 * error's first line in plain words (providers.ts), `adapter` what a GPU provider that loaded runs on ("software:
 * lavapipe (...)", ./gpu-devices.ts), `ms` how long creating the session (and the warm-up) took.
 * Exit code 0 whatever loaded, 1 when the probe itself failed, 2 for bad input.
 */
import { resolve } from "node:path";
import { z } from "zod";
import { runJsonScript } from "../../../runtime/index.ts";
import { GraphError } from "../../../subjects/index.ts";
import { ensureGeneratedModel, GeneratedModel } from "./model-gen.ts";
import { createModelHost } from "./model-host.ts";
import { formatAdapter } from "./gpu-devices.ts";
import { ExecutionProvider, plainReason, type ProviderAttempt } from "./providers.ts";

const Input = z.strictObject({
  providers: z.array(z.enum([ExecutionProvider.cuda, ExecutionProvider.webgpu, ExecutionProvider.cpu])).min(1),
  modelPath: z.string().min(1).optional(),
});

export interface ProviderProbe {
  provider: ExecutionProvider;
  loaded: boolean;
  reason?: string;
  adapter?: string;
  ms: number;
}

const REPO_ROOT = resolve(import.meta.dirname, "../../..");

await runJsonScript("infer provider-probe", Input, async (input) => {
  const modelPath =
    input.modelPath ?? (await ensureGeneratedModel(resolve(REPO_ROOT, ".cache/models"), 0, GeneratedModel.trivial));
  const providers: ProviderProbe[] = [];
  for (const provider of input.providers) {
    const t0 = performance.now();
    try {
      const host = await createModelHost({ modelPath, executionProvider: provider, intraOpNumThreads: 1 });
      await host.close();
      providers.push({
        provider,
        loaded: true,
        ...(host.adapter ? { adapter: formatAdapter(host.adapter) } : {}),
        ms: Math.round(performance.now() - t0),
      });
    } catch (err) {
      const attempts =
        err instanceof GraphError ? (err.details as { attempts?: ProviderAttempt[] } | undefined)?.attempts : undefined;
      providers.push({
        provider,
        loaded: false,
        reason: attempts?.[0]?.reason ?? plainReason(err),
        ms: Math.round(performance.now() - t0),
      });
    }
  }
  return { providers };
});
