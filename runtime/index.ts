export { binaryReply, createService, type BinaryReply, type EndpointOptions, type Handler, type IncomingRequest, type Service, type ServiceOptions } from "./service.ts";
export { createClient, toGraphError, type Client, type RequestOptions } from "./client.ts";
export { closure, defineGraph, loadGraph, nodesOfGraphs, readSecret, resolveGraph, subjectFor, subjectOf, GraphConfigError, type ResolvedGraph, type ResolvedNode } from "./config.ts";
export { connectNats, DEFAULT_NATS_URL } from "./nats.ts";
export { createLogger, type Logger } from "./log.ts";
export { runNode, type NodeContext, type RunNodeOptions } from "./node.ts";
export { fromMsg, toHeaders } from "./errors-wire.ts";
export { metrics, registry, metricsText, startMetricsServer } from "./metrics.ts";
export { withSpan, withServerSpan, withClientSpan, extractContext, injectContext, tracer } from "./tracing.ts";
