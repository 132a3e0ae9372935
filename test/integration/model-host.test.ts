import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  createModelHost,
  kTestInternals,
  type ModelHost,
  type ModelHostTestInternals,
} from "../../services/infer/src/model-host.ts";
import { GraphError } from "../../subjects/errors.ts";
import { normalizeChw } from "../../subjects/image-normalization.ts";
import { randomInput } from "../helpers/random.ts";

// A machine with no Vulkan driver, made explicit: CI installs lavapipe (for test/integration/webgpu.test.ts), and the
// Vulkan loader of the model's worker thread (same process, same environment) then finds none.
process.env.VK_ICD_FILENAMES = "/nonexistent/no-vulkan-driver.json";
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const modelPath = path.resolve(repoRoot, "../shared/models/resnet18-seed0.onnx");
const skip = existsSync(modelPath) ? false : `model not found at ${modelPath}`;

// Whether this onnxruntime-node install carries the CUDA provider library at all (the npm package
// ships CPU binaries only; the CUDA provider is downloaded by a postinstall that is disabled here).
const ortBinDir = path.join(
  path.dirname(createRequire(import.meta.url).resolve("onnxruntime-node")),
  "..",
  "bin/napi-v6/linux/x64",
);
const hasCudaProvider = existsSync(path.join(ortBinDir, "libonnxruntime_providers_cuda.so"));

const ROW = 3 * 224 * 224;
const code = (e: unknown): string | undefined => (e instanceof GraphError ? e.code : undefined);

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

let host: ModelHost | undefined;
const logs: Array<{ msg: string; attrs?: Record<string, unknown> }> = [];

before(async () => {
  if (skip) return;
  host = await createModelHost({
    modelPath,
    executionProvider: "auto",
    log: (msg, attrs) => logs.push({ msg, attrs }),
  });
});
after(async () => {
  await host?.close();
});

// This machine: no CUDA provider library, no GPU adapter for WebGPU (real onnxruntime, nothing mocked).
const noGpu = hasCudaProvider ? "a CUDA provider library is installed" : false;

test(
  "model-host - auto falls back to CPU and records why CUDA and then WebGPU did not start",
  { skip: skip || noGpu },
  () => {
    assert.ok(host);
    assert.equal(host.executionProvider, "cpu");
    assert.deepEqual(
      host.fallbacks.map((f) => f.provider),
      ["cuda", "webgpu"],
    );
    assert.match(
      host.fallbacks[0]!.reason,
      /^OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library/,
    );
    assert.match(host.fallbacks[1]!.reason, /^Failed to get a WebGPU adapter/);
    for (const f of host.fallbacks) {
      assert.doesNotMatch(
        f.reason,
        /\n|onnxruntime_src|\.cc:\d/,
        "the first line, without onnxruntime's source location",
      );
      assert.ok(f.ms >= 0);
    }
    assert.ok(process.env.XDG_RUNTIME_DIR, "set for Dawn when it was unset");
    assert.deepEqual(host.inputShape, [3, 224, 224]);
    assert.equal(host.outputSize, 1000);
    const ready = logs.find((l) => l.msg === "model host ready");
    assert.equal(ready?.attrs?.executionProvider, "cpu");
    assert.match(String(ready?.attrs?.fallbacks), /^cuda: .*; webgpu: Failed to get a WebGPU adapter/);
  },
);

test(
  "model-host - a forced cuda or webgpu that cannot start fails with its reason, never a quiet CPU run",
  { skip: skip || noGpu, timeout: 60_000 },
  async () => {
    const reasons = {
      cuda: /^execution provider cuda did not start: OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library/,
      webgpu: /^execution provider webgpu did not start: Failed to get a WebGPU adapter/,
    };
    for (const [ep, reason] of Object.entries(reasons) as ["cuda" | "webgpu", RegExp][]) {
      await assert.rejects(createModelHost({ modelPath, executionProvider: ep }), (e) => {
        assert.equal(code(e), "MODEL_ERROR");
        assert.match((e as Error).message, reason);
        const attempts = ((e as GraphError).details as { attempts: { provider: string }[] }).attempts;
        assert.deepEqual(
          attempts.map((a) => a.provider),
          [ep],
          "no other provider was tried",
        );
        return true;
      });
    }
  },
);

test("model-host - a batch of 4 equals 4 single runs", { skip, timeout: 60_000 }, async () => {
  assert.ok(host);
  const inputs = [0, 1, 2, 3].map((i) => randomInput(ROW, 7 + i));
  const batch = new Float32Array(4 * ROW);
  inputs.forEach((x, i) => batch.set(x, i * ROW));
  const batched = await host.run(batch, 4);
  assert.equal(batched.output.length, 4000);
  assert.ok(batched.computeMs > 0);
  for (let i = 0; i < 4; i++) {
    const single = await host.run(inputs[i]!, 1);
    const d = maxAbsDiff(batched.output.subarray(i * 1000, (i + 1) * 1000), single.output);
    assert.ok(d < 1e-4, `row ${i} differs by ${d}`);
  }
});

test(
  "model-host - the input buffer is handed over; a view into a larger buffer is copied instead",
  { skip },
  async () => {
    assert.ok(host);
    const whole = randomInput(ROW, 1);
    await host.run(whole, 1);
    assert.equal(whole.buffer.byteLength, 0, "transferred to the worker");

    const big = randomInput(3 * ROW, 2);
    const view = big.subarray(ROW, 2 * ROW);
    const fromView = await host.run(view, 1);
    assert.equal(big.buffer.byteLength, 3 * ROW * 4, "the caller's larger buffer is untouched");
    const fromCopy = await host.run(big.slice(ROW, 2 * ROW), 1);
    assert.ok(maxAbsDiff(fromView.output, fromCopy.output) < 1e-6);
  },
);

test("model-host - the event loop keeps running during a batch-16 inference", { skip, timeout: 60_000 }, async () => {
  assert.ok(host);
  let ticks = 0;
  const iv = setInterval(() => ticks++, 5);
  try {
    const r = await host.run(randomInput(16 * ROW, 3), 16);
    assert.equal(r.output.length, 16_000);
  } finally {
    clearInterval(iv);
  }
  assert.ok(ticks > 0, `no timer tick during the run: inference blocked the event loop`);
});

test("model-host - runs queue in call order and each gets its own rows", { skip, timeout: 60_000 }, async () => {
  assert.ok(host);
  const a = randomInput(ROW, 11);
  const b = randomInput(2 * ROW, 12);
  const expectA = (await host.run(a.slice(), 1)).output;
  const expectB = (await host.run(b.slice(), 2)).output;
  const [ra, rb] = await Promise.all([host.run(a, 1), host.run(b, 2)]);
  assert.ok(maxAbsDiff(ra.output, expectA) < 1e-5);
  assert.ok(maxAbsDiff(rb.output, expectB) < 1e-5);
});

test("model-host - a wrong-size input is rejected without harming the host", { skip }, async () => {
  assert.ok(host);
  await assert.rejects(
    host.run(new Float32Array(ROW + 1), 1),
    (e) => code(e) === "BAD_REQUEST" || code(e) === "MODEL_ERROR",
  );
  await assert.rejects(host.run(new Float32Array(ROW), 2), (e) => code(e) === "BAD_REQUEST");
  await assert.rejects(host.run(new Float32Array(ROW), 0), (e) => code(e) === "BAD_REQUEST");
  const ok = await host.run(randomInput(ROW, 4), 1);
  assert.equal(ok.output.length, 1000);
  assert.equal(host.isBroken(), false);
});

test(
  "model-host - a worker crash fails pending runs with MODEL_ERROR and breaks the host",
  { skip, timeout: 60_000 },
  async () => {
    const broken: string[] = [];
    const victim = await createModelHost({
      modelPath,
      executionProvider: "cpu",
      onBroken: (reason) => broken.push(reason),
    });
    try {
      const internals = (victim as unknown as { [kTestInternals]: ModelHostTestInternals })[kTestInternals];
      // The crash lands on the worker right after the run in flight answers, while the next one waits.
      const inFlight = victim.run(randomInput(2 * ROW, 5), 2);
      internals.simulateCrash();
      const waiting = [victim.run(randomInput(ROW, 6), 1), victim.run(randomInput(ROW, 7), 1)];
      assert.equal((await inFlight).output.length, 2000);
      for (const p of waiting) await assert.rejects(p, (e) => code(e) === "MODEL_ERROR");
      assert.equal(victim.isBroken(), true);
      assert.equal(broken.length, 1, "onBroken is called once, so the replica can leave its queue group");
      assert.match(broken[0]!, /model worker exited/);
      await assert.rejects(victim.run(randomInput(ROW, 8), 1), (e) => code(e) === "MODEL_ERROR");
    } finally {
      await victim.close();
    }
  },
);

test("model-host - close() lets an accepted run finish and refuses later runs", { skip, timeout: 60_000 }, async () => {
  const h = await createModelHost({ modelPath, executionProvider: "cpu" });
  const running = h.run(randomInput(2 * ROW, 8), 2);
  const closed = h.close();
  await assert.rejects(h.run(randomInput(ROW, 9), 1), (e) => code(e) === "UNAVAILABLE");
  assert.equal((await running).output.length, 2000);
  await closed;
  await assert.rejects(h.run(randomInput(ROW, 9), 1), (e) => code(e) === "UNAVAILABLE");
});

test(
  "model-host - runBatch fills a reused slot; the slots are allocated once, not per batch",
  { skip, timeout: 60_000 },
  async () => {
    assert.ok(host);
    const inputs = [0, 1, 2].map((i) => randomInput(ROW, 20 + i));
    const expected = (await host.run(Float32Array.from([...inputs[0]!, ...inputs[1]!, ...inputs[2]!]), 3)).output;
    host.reserveSlots(4, 1);
    const slots = host.slotCount();
    let seen: Float32Array | undefined;
    for (let k = 0; k < 3; k++) {
      const r = await host.runBatch(3, (x) => {
        assert.equal(x.length, 3 * ROW, "the view covers exactly the batch's rows");
        assert.ok(x.buffer instanceof SharedArrayBuffer, "a slot shared with the worker");
        if (seen) assert.equal(x.buffer, seen.buffer, "the same slot again");
        seen = x;
        inputs.forEach((row, i) => x.set(row, i * ROW));
      });
      assert.ok(maxAbsDiff(r.output, expected) < 1e-5);
    }
    await host.runBatch(1, (x) => x.set(inputs[0]!));
    assert.equal(host.slotCount(), slots, "no slot allocated for later batches");
    // A batch bigger than every slot gets a bigger one, once.
    await host.runBatch(6, (x) => x.fill(0));
    await host.runBatch(6, (x) => x.fill(0));
    assert.equal(host.slotCount(), slots + 1);
  },
);

test(
  "model-host - pixel rows are normalised by the worker exactly as on the caller's thread, beside value rows",
  { skip, timeout: 60_000 },
  async () => {
    assert.ok(host);
    const pixels = [0, 1, 2].map((k) => Uint8Array.from({ length: ROW }, (_, i) => (i * 31 + k * 97 + (i >> 9)) & 255));
    const normalised = pixels.map((p) => normalizeChw(p, new Float32Array(ROW)));
    const values = randomInput(ROW, 50);
    const expected = (await host.run(Float32Array.from([...normalised[0]!, ...values, ...normalised[2]!]), 3)).output;
    // Rows 0 and 2 as pixels, row 1 as values, in a slot that held other values before.
    await host.runBatch(3, (x) => x.fill(9));
    const mixed = await host.runBatch(3, (x, px) => {
      px.set(0, pixels[0]!);
      x.set(values, ROW);
      px.set(2, pixels[2]!);
    });
    assert.deepEqual(mixed.output, expected, "the same logits, bit for bit");
    const allPixels = await host.runBatch(1, (_x, px) => px.set(0, pixels[1]!));
    assert.deepEqual(allPixels.output, (await host.run(normalised[1]!.slice(), 1)).output);
    await assert.rejects(
      host.runBatch(2, (_x, px) => px.set(2, pixels[0]!)),
      RangeError,
      "a row outside the batch",
    );
    await assert.rejects(
      host.runBatch(1, (_x, px) => px.set(0, pixels[0]!.subarray(1))),
      RangeError,
      "a short row",
    );
  },
);

test(
  "model-host - with two slots, batch n+1 is filled and queued while batch n computes",
  { skip, timeout: 60_000 },
  async () => {
    const h = await createModelHost({ modelPath, executionProvider: "cpu" });
    try {
      h.reserveSlots(16, 2);
      const events: string[] = [];
      const first = h
        .runBatch(16, (x) => {
          events.push("fill 1");
          x.set(randomInput(16 * ROW, 30));
        })
        .then((r) => {
          events.push("done 1");
          return r;
        });
      const second = h
        .runBatch(2, (x) => {
          events.push("fill 2");
          x.set(randomInput(2 * ROW, 31));
        })
        .then((r) => {
          events.push("done 2");
          return r;
        });
      assert.deepEqual(events, ["fill 1", "fill 2"], "both batches are filled before either has computed");
      const [a, b] = await Promise.all([first, second]);
      assert.deepEqual(events, ["fill 1", "fill 2", "done 1", "done 2"], "and they run in order");
      assert.equal(a.output.length, 16_000);
      assert.equal(b.output.length, 2000);
      assert.equal(h.slotCount(), 2);
    } finally {
      await h.close();
    }
  },
);

test("model-host - a fill that throws fails only its own batch and gives the slot back", { skip }, async () => {
  assert.ok(host);
  const slots = host.slotCount();
  await assert.rejects(
    host.runBatch(1, () => {
      throw new Error("bad row");
    }),
    /bad row/,
  );
  const ok = await host.runBatch(1, (x) => x.set(randomInput(ROW, 40)));
  assert.equal(ok.output.length, 1000);
  assert.equal(host.slotCount(), slots);
  await assert.rejects(
    host.runBatch(0, () => {}),
    (e) => code(e) === "BAD_REQUEST",
  );
});

test("model-host - a model that cannot be loaded is a MODEL_ERROR at creation", { skip }, async () => {
  await assert.rejects(
    createModelHost({ modelPath: path.join(repoRoot, "package.json"), executionProvider: "cpu" }),
    (e) => code(e) === "MODEL_ERROR",
  );
});
