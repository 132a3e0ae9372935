/**
 * OpenTelemetry SDK start-up for one process. Traces are exported over OTLP/HTTP only when
 * OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set, or OTEL_TRACES_EXPORTER names an exporter;
 * otherwise no SDK is started and the API stays a no-op. Standard OTEL_* variables are honoured by the SDK.
 * Service name = node name; replica id and graph name are resource attributes.
 */
import { NodeSDK } from "@opentelemetry/sdk-node";
import { resourceFromAttributes } from "@opentelemetry/resources";

let sdk: NodeSDK | undefined;

export function telemetryWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.OTEL_SDK_DISABLED === "true") return false;
  if (env.OTEL_TRACES_EXPORTER === "none") return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_TRACES_EXPORTER);
}

export function startTelemetry(serviceName: string, attrs: Record<string, string>): boolean {
  if (sdk || !telemetryWanted()) return false;
  sdk = new NodeSDK({
    serviceName: process.env.OTEL_SERVICE_NAME || serviceName,
    resource: resourceFromAttributes({ "service.instance.id": attrs["replica"] ?? "", ...Object.fromEntries(Object.entries(attrs).map(([k, v]) => [`sg.${k}`, v])) }),
    instrumentations: [],
    // Metrics are served as Prometheus text at /metrics; no OTLP metric export from here.
    metricReaders: [],
  });
  sdk.start();
  return true;
}

export async function stopTelemetry(): Promise<void> {
  const s = sdk;
  sdk = undefined;
  if (s) await s.shutdown().catch(() => {});
}
