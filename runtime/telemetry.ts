/**
 * OpenTelemetry SDK start-up for one process.
 *
 * Contract:
 *  - No SDK is started unless traces have somewhere to go: OTEL_EXPORTER_OTLP_ENDPOINT or
 *    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, or OTEL_TRACES_EXPORTER names a non-OTLP exporter (`console`).
 *    Without an SDK the API stays a no-op, so tracing costs next to nothing.
 *  - OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none always wins.
 *  - The exporter and its settings come from the standard variables, read by the NodeSDK itself:
 *    OTEL_TRACES_EXPORTER (default otlp), OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL (http/protobuf default, http/json;
 *    grpc is mapped to http/protobuf: only the HTTP exporters ship with the kit), OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT,
 *    OTEL_BSP_*, OTEL_TRACES_SAMPLER(_ARG), OTEL_PROPAGATORS, OTEL_RESOURCE_ATTRIBUTES.
 *  - Resource: service.name = the node name (OTEL_SERVICE_NAME overrides), service.instance.id = the replica id,
 *    and `sg.<key>` for every attribute given (sg.graph, sg.replica, sg.node, ...). OTEL_RESOURCE_ATTRIBUTES wins
 *    over both.
 *  - Metrics stay Prometheus text at /metrics and no OTel logs are exported.
 *  - stopTelemetry() flushes the batch span processor; runNode calls it last on shutdown.
 */
import { NodeSDK } from "@opentelemetry/sdk-node";
import {
  envDetector,
  hostDetector,
  osDetector,
  processDetector,
  resourceFromAttributes,
} from "@opentelemetry/resources";

let sdk: NodeSDK | undefined;

function list(v: string | undefined): string[] {
  return (v ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "" && s !== "null");
}

export function telemetryWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return false;
  const exporters = list(env.OTEL_TRACES_EXPORTER);
  if (exporters[0] === "none") return false;
  if (env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return true;
  return exporters.some((e) => e !== "otlp" && e !== "none");
}

export function startTelemetry(serviceName: string, attrs: Record<string, string>): boolean {
  if (sdk || !telemetryWanted()) return false;
  // The SDK would load the gRPC exporter for `grpc`; the kit exports over HTTP only.
  for (const k of ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] as const) {
    if (process.env[k]?.trim() === "grpc") process.env[k] = "http/protobuf";
  }
  const attributes: Record<string, string> = {
    "service.instance.id": attrs["replica"] ?? `${serviceName}-${process.pid}`,
  };
  for (const [k, v] of Object.entries(attrs)) attributes[`sg.${k}`] = v;
  sdk = new NodeSDK({
    serviceName: process.env.OTEL_SERVICE_NAME || serviceName,
    resource: resourceFromAttributes(attributes),
    // Detected attributes override ours, and the default list includes a random service.instance.id:
    // leave that one out unless OTEL_NODE_RESOURCE_DETECTORS asks for it.
    ...(process.env.OTEL_NODE_RESOURCE_DETECTORS
      ? {}
      : { resourceDetectors: [envDetector, hostDetector, osDetector, processDetector] }),
    instrumentations: [],
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  return true;
}

/** Flushes pending spans and shuts the SDK down; a no-op when none was started. */
export async function stopTelemetry(): Promise<void> {
  const s = sdk;
  sdk = undefined;
  if (s) await s.shutdown().catch(() => {});
}
