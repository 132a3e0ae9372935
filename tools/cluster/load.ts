/**
 * A bounded closed-loop HTTP load: `clients` loops, each sending its next request when the previous one is
 * answered, until stop() (or `maxRequests` sent). Every request is recorded with its start and end (epoch ms,
 * sub-millisecond), its HTTP status and, for an error, the table code of the JSON body, so that a fault's effect
 * can be attributed to what was in flight at that moment.
 */

export interface RequestRecord {
  /** Epoch ms when it was sent / answered (performance clock: consistent within the run). */
  startMs: number;
  endMs: number;
  /** HTTP status; 0 when no response came (connection error, client timeout). */
  status: number;
  /** The error's `code` (JSON body) when status is not 200. */
  code?: string;
}

export interface ClosedLoop {
  /** Finished requests so far (a live array). */
  readonly records: readonly RequestRecord[];
  /** Requests sent and not answered yet. */
  inFlight(): number;
  /** Stops sending; resolves with every record once the requests in flight are answered. */
  stop(): Promise<RequestRecord[]>;
}

export const nowMs = (): number => performance.timeOrigin + performance.now();

export function startClosedLoop(opts: {
  clients: number;
  send: (i: number, signal: AbortSignal) => Promise<Response>;
  /** A request not answered in this time counts as failed (status 0). */
  requestTimeoutMs: number;
  maxRequests?: number;
}): ClosedLoop {
  const records: RequestRecord[] = [];
  let stopped = false;
  let sent = 0;
  let inFlight = 0;
  const max = opts.maxRequests ?? Number.MAX_SAFE_INTEGER;
  const loop = async (): Promise<void> => {
    while (!stopped && sent < max) {
      const i = sent++;
      const startMs = nowMs();
      inFlight++;
      let status = 0;
      let code: string | undefined;
      try {
        const res = await opts.send(i, AbortSignal.timeout(opts.requestTimeoutMs));
        status = res.status;
        const body = await res.text();
        if (status !== 200) {
          try {
            code = (JSON.parse(body) as { code?: string }).code;
          } catch {
            code = body.slice(0, 100);
          }
        }
      } catch (err) {
        code = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      }
      inFlight--;
      records.push({ startMs, endMs: nowMs(), status, ...(code !== undefined ? { code } : {}) });
    }
  };
  const loops = Promise.all(Array.from({ length: opts.clients }, loop));
  return {
    records,
    inFlight: () => inFlight,
    async stop() {
      stopped = true;
      await loops;
      return records;
    },
  };
}
