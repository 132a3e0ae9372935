/**
 * Worker-thread entry of the `exact` preprocessing mode: runs the Pillow port (blur, resize,
 * normalise) on decoded RGB so that ~10 ms of CPU per image stays off the main event loop. There is no build
 * step: ./exact-pool.ts starts this .ts file through tsx.
 *
 * Protocol (one job at a time per worker; the pool never sends a second job before the reply):
 *   in:  {@link ExactJobMessage}  (the RGB buffer is transferred)
 *   out: {@link ExactReplyMessage} (the tensor buffer is transferred)
 */
import { parentPort } from "node:worker_threads";
import { pilPreprocessRgb } from "./pil-exact.ts";

export interface ExactJobMessage {
  readonly id: number;
  readonly rgb: Uint8Array;
  readonly width: number;
  readonly height: number;
}

export type ExactReplyMessage =
  | { readonly id: number; readonly tensor: Float32Array }
  | { readonly id: number; readonly error: string };

const port = parentPort;
if (port !== null) {
  port.on("message", (job: ExactJobMessage) => {
    let reply: ExactReplyMessage;
    try {
      const tensor = pilPreprocessRgb(job.rgb, job.width, job.height);
      reply = { id: job.id, tensor };
      port.postMessage(reply, [tensor.buffer as ArrayBuffer]);
    } catch (err) {
      reply = { id: job.id, error: err instanceof Error ? err.message : String(err) };
      port.postMessage(reply);
    }
  });
}
