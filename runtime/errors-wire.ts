/** Symmetric conversion of GraphError to and from NATS reply headers (ADR-32 + our Graph-Error code). */
import { headers as natsHeaders, type Msg, type MsgHdrs } from "@nats-io/transport-node";
import { GraphError, ErrorCodes, codeForStatus, isErrorCode } from "../subjects/errors.ts";
import { Headers } from "../subjects/headers.ts";

const MAX_MESSAGE_CHARS = 512;

/** Error headers for an error reply. Header values must be single-line. */
export function toHeaders(err: GraphError, h: MsgHdrs = natsHeaders()): MsgHdrs {
  h.set(Headers.ServiceErrorCode, String(err.status));
  h.set(Headers.ServiceError, err.message.replace(/[\r\n]+/g, " ").slice(0, MAX_MESSAGE_CHARS) || err.code);
  h.set(Headers.GraphError, err.code);
  return h;
}

export function toBody(err: GraphError): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(err.toJSON()));
}

/** The GraphError an error reply carries, or undefined for a successful reply. */
export function fromMsg(msg: Msg): GraphError | undefined {
  const h = msg.headers;
  if (!h) return undefined;
  const status = h.get(Headers.ServiceErrorCode);
  if (!status) return undefined;
  const n = Number(status);
  const sent = h.get(Headers.GraphError);
  // A code that is not in our table, or that disagrees with the numeric status, falls back to the status.
  const code =
    isErrorCode(sent) && (ErrorCodes[sent].status === n || !Number.isFinite(n))
      ? sent
      : codeForStatus(Number.isFinite(n) ? n : 500);
  let details: unknown;
  if (msg.data.length) {
    try {
      const body = JSON.parse(new TextDecoder().decode(msg.data)) as { details?: unknown };
      details = body?.details;
    } catch {
      // non-JSON error bodies (other ADR-32 services) carry no details
    }
  }
  return new GraphError(code, h.get(Headers.ServiceError) || code, details === undefined ? {} : { details });
}
