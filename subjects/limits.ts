/**
 * Size limits every part of the graph agrees on, defined once. The brokers (the embedded nats-server of
 * `servegraph up`, the cluster of tools/cluster, the manifests' NATS cluster) take messages up to
 * MAX_PAYLOAD_BYTES; a body limit of a node (the ingress's MAX_BODY_BYTES, preprocess's MAX_INPUT_BYTES) must leave
 * HEADER_ROOM_BYTES of it for the headers, which `check` verifies.
 */

/** NATS max_payload of every broker of the graph: an 8 MiB image fits one request with room to spare. */
export const MAX_PAYLOAD_BYTES = 16 * 1024 * 1024;

/** What a request's headers may take beside its body (trace context, deadline, heartbeat ask, shape...). */
export const HEADER_ROOM_BYTES = 64 * 1024;

/** Parameters that bound a body that travels in one NATS message. */
export const BODY_LIMIT_PARAMETERS = ["MAX_BODY_BYTES", "MAX_INPUT_BYTES"] as const;
