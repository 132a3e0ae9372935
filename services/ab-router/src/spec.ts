/**
 * The gate spec: a v1 `download_config_specs` JSON document that statsig-node takes as `bootstrapValues`.
 * Offline mode evaluates only this document; online mode serves it until the first successful sync.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { errorMessage } from "./redact.ts";

export const DEFAULT_SPEC_PATH = fileURLToPath(new URL("../gates/default-spec.json", import.meta.url));

export interface SpecSource {
  /** Spec text; takes precedence over `specPath`. */
  readonly specJson?: string | undefined;
  /** Spec file. */
  readonly specPath?: string | undefined;
  /** Offline mode reads {@link DEFAULT_SPEC_PATH} when neither is given; online mode then has no spec. */
  readonly offline: boolean;
}

/** The spec text to bootstrap the SDK with, or null (online mode, no spec given). Throws if unreadable or invalid. */
export async function loadSpec(src: SpecSource): Promise<string | null> {
  let text: string | null = null;
  if (src.specJson !== undefined) text = src.specJson;
  else if (src.specPath !== undefined || src.offline) text = await readFile(src.specPath ?? DEFAULT_SPEC_PATH, "utf8");
  if (text !== null) checkSpec(text);
  return text;
}

/**
 * Throws unless `text` parses to the parts of a v1 spec without which the SDK silently stays uninitialised:
 * `has_updates: true`, a positive `time`, and the three arrays `feature_gates`, `dynamic_configs`, `layer_configs`.
 */
export function checkSpec(text: string): void {
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (err) {
    throw new Error(`spec is not valid JSON (${errorMessage(err)})`);
  }
  if (typeof spec !== "object" || spec === null || Array.isArray(spec)) throw new Error("spec is not a JSON object");
  const s = spec as Record<string, unknown>;
  if (s.has_updates !== true) throw new Error("spec.has_updates must be true");
  if (typeof s.time !== "number" || !(s.time > 0)) throw new Error("spec.time must be a positive number");
  for (const k of ["feature_gates", "dynamic_configs", "layer_configs"]) {
    if (!Array.isArray(s[k])) throw new Error(`spec.${k} must be an array`);
  }
}
