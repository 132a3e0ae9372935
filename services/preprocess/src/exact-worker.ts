/**
 * Worker-thread entry of the `exact` preprocessing mode: runs the Pillow port (blur, resize, to CHW pixels)
 * on decoded RGB so that ~10 ms of CPU per image stays off the main event loop. There is no build
 * step: ./exact-pool.ts starts this .ts file through tsx.
 *
 * Protocol (one job at a time per worker; the pool never sends a second job before the reply):
 *   in:  {@link ExactJobMessage}  (the RGB buffer is transferred)
 *   out: {@link ExactReplyMessage} (the uint8 CHW pixels' buffer is transferred)
 */
import { parentPort } from "node:worker_threads";
import { pilPixelsRgb } from "./pil-exact.ts";

export interface ExactJobMessage {
  readonly id: number;
  readonly rgb: Uint8Array;
  readonly width: number;
  readonly height: number;
}

export type ExactReplyMessage =
  { readonly id: number; readonly pixels: Uint8Array } | { readonly id: number; readonly error: string };

const port = parentPort;
if (port !== null) {
  port.on("message", (job: ExactJobMessage) => {
    let reply: ExactReplyMessage;
    try {
      const pixels = pilPixelsRgb(job.rgb, job.width, job.height);
      reply = { id: job.id, pixels };
      port.postMessage(reply, [pixels.buffer as ArrayBuffer]);
    } catch (err) {
      reply = { id: job.id, error: err instanceof Error ? err.message : String(err) };
      port.postMessage(reply);
    }
  });
}
