/**
 * `npm run build:wasm`: compiles the project's WebAssembly text (services/infer/src/normalize.wat) into the binary
 * beside it (normalize.wasm), which is committed: nothing compiles at install or run time.
 * test/unit/pixel-normalizer.test.ts fails when the binary is not what the text compiles to.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import wabtInit from "wabt";

/** The .wat sources of the project, relative to its root; each compiles to the .wasm of the same name. */
export const WAT_SOURCES = ["services/infer/src/normalize.wat"] as const;

const ROOT = resolve(import.meta.dirname, "..");

/** The binary `file` (a .wat of the project) compiles to. */
export async function compileWat(file: string): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const mod = wabt.parseWat(file, readFileSync(resolve(ROOT, file), "utf8"));
  try {
    mod.validate();
    return mod.toBinary({}).buffer;
  } finally {
    mod.destroy();
  }
}

export const wasmPathOf = (wat: string): string => resolve(ROOT, wat.replace(/\.wat$/, ".wasm"));

if (import.meta.main) {
  for (const wat of WAT_SOURCES) {
    const bytes = await compileWat(wat);
    writeFileSync(wasmPathOf(wat), bytes);
    console.log(`${wat} -> ${wasmPathOf(wat)} (${bytes.length} bytes)`);
  }
}
