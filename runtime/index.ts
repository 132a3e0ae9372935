/**
 * The kit's front door: nodes and ops import the runtime from here only. What is not exported here is internal.
 */
export {
  binaryReply,
  createService,
  type BinaryReply,
  type EndpointHandler,
  type EndpointOptions,
  type Handler,
  type IncomingRequest,
  type Service,
  type ServiceOptions,
} from "./service.ts";
export { createClient, LIVENESS_MS, type Client, type RequestOptions } from "./client.ts";
export { natsErrorToGraphError } from "./requester.ts";
export {
  AUTOSCALE_DEFAULTS,
  BATCHING_DEFAULTS,
  type AutoscaleMetric,
  type AutoscalePolicy,
  DEFAULT_GRAPH_FILE,
  defineGraph,
  loadGraph,
  resolveGraph,
  subjectOf,
  GraphConfigError,
  type ResolvedGraph,
  type ResolvedNode,
  type ResolvedCall,
  type ResolvedRoute,
  type RouteBody,
  type RouteMethod,
  ROUTE_METHODS,
  ROUTE_BODIES,
  objectShape,
  objectFields,
  parseRouteKey,
} from "./config.ts";
export { closure, nodesOfGraphs, readSecret, subjectFor, withParameterOverrides } from "./graph-queries.ts";
export { connectNats, DEFAULT_NATS_URL, isConnected, onConnectionChange } from "./nats.ts";
export { createLogger, type Logger } from "./log.ts";
export { EXIT_CONFIG, NodeConfigError, runNode, type NodeContext, type RunNodeOptions } from "./node.ts";
export { readNatsEnv, type LaunchEnv, type NatsCredentials } from "./env.ts";
export {
  checkParams,
  defineParams,
  effectiveParams,
  param,
  parseParams,
  type EffectiveParam,
  type ParamIssue,
  type ParamsSchema,
} from "./params.ts";
export { createBatcher, type Batcher, type BatcherOptions } from "./batcher.ts";
export { fromMsg, toHeaders } from "./errors-wire.ts";
export { SECONDS_BUCKETS, metrics, metricsText, observeReplicas, registry, startMetricsServer } from "./metrics.ts";
export {
  endHttpServerSpan,
  extractContext,
  injectContext,
  recordSpanError,
  startBatchSpan,
  startHttpServerSpan,
  tracer,
  withClientSpan,
  withServerSpan,
  withSpan,
} from "./tracing.ts";
export {
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM_NAME,
  MESSAGING_SYSTEM_NATS,
} from "./semconv.ts";
export { countReplicas, gather } from "./discovery.ts";
export {
  collectStatus,
  CONTROL_SERVICE,
  type BatchStatus,
  type EndpointStatus,
  type GraphStatus,
  type NodeStatus,
  type ReplicaStatus,
  type StatsReply,
} from "./graph-status.ts";
export { runJsonScript } from "./json-script.ts";
export { startTelemetry, stopTelemetry, telemetryWanted } from "./telemetry.ts";
export { startTsWorker } from "./ts-worker.ts";
// What a node's own endpoint definitions are written with (they live in subjects/, beside the reference ones).
export { bytes, endpoint, json, NoInput, tensor, type EndpointDef } from "../subjects/endpoints.ts";
