/**
 * The one error table of the graph. Every error that crosses a process boundary is a {@link GraphError}
 * carrying one of these codes. The HTTP-like status and retryability are derived from this table on
 * both sides of the wire, so only the code (and a safe message) travels.
 *
 * On NATS an error reply carries ADR-32 headers (`Nats-Service-Error-Code`, `Nats-Service-Error`) plus
 * our stable string code in `Graph-Error`; the body is optional JSON `{ details }`.
 * docs/errors.md has one section per code and a test keeps it in sync with this table.
 */
export const ErrorCodes = {
  BAD_REQUEST: {
    status: 400,
    retryable: false,
    description:
      "The request is malformed or fails validation; over HTTP this includes what the HTTP parser refuses (request line, header bytes, framing) and URLs that are not valid percent-encoded UTF-8.",
  },
  INVALID_IMAGE: {
    status: 400,
    retryable: false,
    description: "The bytes are not a decodable image (truncated, corrupt or unknown format).",
  },
  URL_NOT_ALLOWED: {
    status: 400,
    retryable: false,
    description:
      "The image URL is not http(s), or resolves to a private, loopback, link-local or otherwise non-public address.",
  },
  UNAUTHENTICATED: {
    status: 401,
    retryable: false,
    description: "The route requires a valid `Authorization: Bearer <key>` header (the ingress has requiresAuth).",
  },
  FORBIDDEN: {
    status: 403,
    retryable: false,
    description:
      "A node called a subject outside its declared edges: the broker refused the publish (graph.config.ts declares which node calls which, and the broker's permissions come from it).",
  },
  NOT_FOUND: {
    status: 404,
    retryable: false,
    description:
      "No such route, subject or endpoint; for an endpoint a running node does not have, the message lists the endpoints it has.",
  },
  METHOD_NOT_ALLOWED: {
    status: 405,
    retryable: false,
    description: "The path is served, but not for this HTTP method; the `Allow` header lists the methods it serves.",
  },
  REQUEST_TIMEOUT: {
    status: 408,
    retryable: true,
    description:
      "The client did not send its request headers, or its whole request, in time, or stalled while sending it; the ingress answers and closes the connection.",
  },
  PAYLOAD_TOO_LARGE: {
    status: 413,
    retryable: false,
    description: "The body, the fetched image or the image's pixel count exceeds the configured limit.",
  },
  URI_TOO_LONG: {
    status: 414,
    retryable: false,
    description: "A path segment of the URL is longer than the ingress accepts for a route parameter.",
  },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    retryable: false,
    description: "The Content-Type is not one this route accepts.",
  },
  QUEUE_FULL: {
    status: 429,
    retryable: true,
    description: "A bounded queue (e.g. the inference batch queue) is full; retry later.",
  },
  HEADERS_TOO_LARGE: {
    status: 431,
    retryable: false,
    description:
      "The request line and header fields together exceed the HTTP parser's limit (16 KiB), so an over-long URL gets this code too.",
  },
  INTERNAL: {
    status: 500,
    retryable: false,
    description: "An unexpected failure inside a node; the message is logged with the trace id.",
  },
  MODEL_ERROR: { status: 500, retryable: false, description: "The model failed to run on the given input." },
  CONTRACT_VIOLATION: {
    status: 500,
    retryable: false,
    description: "A node answered with a payload that does not match the subject's schema.",
  },
  UPSTREAM_FETCH_FAILED: {
    status: 502,
    retryable: true,
    description: "The image URL could not be fetched (connection failure or non-2xx answer).",
  },
  UNAVAILABLE: {
    status: 503,
    retryable: true,
    description:
      "The node has no running replica (NATS no responders), it is shutting down, or (the ingress's /readyz) its NATS connection is down.",
  },
  OVERLOADED: { status: 503, retryable: true, description: "The replica is at its cap of requests in flight." },
  DEADLINE_EXCEEDED: {
    status: 504,
    retryable: true,
    description: "The request's deadline passed before an answer was ready.",
  },
} as const satisfies Record<string, { status: number; retryable: boolean; description: string }>;

export type ErrorCode = keyof typeof ErrorCodes;

export const ERROR_CODE_LIST = Object.keys(ErrorCodes) as ErrorCode[];

export function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === "string" && Object.hasOwn(ErrorCodes, x);
}

/**
 * The one status -> code mapping: the default code for a bare numeric status (a reply from a non-servegraph
 * ADR-32 service, an HTTP framework error that has only a status). Every status of the table maps to a code
 * with that status; other 4xx are BAD_REQUEST, anything else INTERNAL.
 */
export function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
      return "BAD_REQUEST";
    case 401:
      return "UNAUTHENTICATED";
    case 403:
      return "FORBIDDEN";
    case 404:
      return "NOT_FOUND";
    case 405:
      return "METHOD_NOT_ALLOWED";
    case 408:
      return "REQUEST_TIMEOUT";
    case 413:
      return "PAYLOAD_TOO_LARGE";
    case 414:
      return "URI_TOO_LONG";
    case 415:
      return "UNSUPPORTED_MEDIA_TYPE";
    case 429:
      return "QUEUE_FULL";
    case 431:
      return "HEADERS_TOO_LARGE";
    case 502:
      return "UPSTREAM_FETCH_FAILED";
    case 503:
      return "UNAVAILABLE";
    case 504:
      return "DEADLINE_EXCEEDED";
    default:
      return status >= 400 && status < 500 ? "BAD_REQUEST" : "INTERNAL";
  }
}

export interface GraphErrorOptions {
  details?: unknown;
  cause?: unknown;
}

/** The only error class that crosses the wire. Local errors become one through {@link GraphError.from}. */
export class GraphError extends Error {
  override readonly name = "GraphError";
  readonly code: ErrorCode;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, opts: GraphErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.details = opts.details;
  }

  get status(): number {
    return ErrorCodes[this.code].status;
  }

  get retryable(): boolean {
    return ErrorCodes[this.code].retryable;
  }

  toJSON(): { code: ErrorCode; message: string; details?: unknown } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }

  /** Normalises anything thrown into a GraphError; unknown throwables become INTERNAL with a generic message. */
  static from(err: unknown): GraphError {
    if (err instanceof GraphError) return err;
    if (err instanceof Error && err.name === "AbortError") {
      return new GraphError("DEADLINE_EXCEEDED", "deadline exceeded", { cause: err });
    }
    if (err instanceof Error && err.name === "TimeoutError") {
      return new GraphError("DEADLINE_EXCEEDED", "deadline exceeded", { cause: err });
    }
    return new GraphError("INTERNAL", "internal error", { cause: err });
  }
}
