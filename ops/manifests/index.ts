/**
 * Deployment files of a graph, for `servegraph manifests`: the Kubernetes objects (kubernetes.ts), the NATS
 * cluster (nats-cluster.ts) with its nats.conf (nats-conf.ts) and permission policy (nats-permissions.ts), the
 * nodes' images (images.ts), their autoscalers (autoscaling.ts), the alert rules and Grafana dashboard
 * (observability.ts), and their YAML (render-yaml.ts).
 */
export {
  buildManifests,
  nodeSecretName,
  DRAIN_MARGIN_S,
  HTTP_PRESTOP_S,
  GPU_NODE_SELECTOR,
  METRICS_PORT,
  NODE_UID,
  type K8sMetadata,
  type K8sObject,
  type Manifest,
  type ManifestOptions,
} from "./kubernetes.ts";
export {
  autoscalerManifest,
  effectiveMinReplicas,
  AUTOSCALE_METRIC_NAMES,
  AUTOSCALERS,
  DEFAULT_AUTOSCALER,
  DEFAULT_PROMETHEUS_URL,
  type Autoscaler,
} from "./autoscaling.ts";
export {
  buildCommand,
  imageOf,
  workspaceOf,
  CONTAINERFILE,
  DEFAULT_TAG,
  IMAGE_WORKDIR,
  SRV_PING_PROBE,
  type ImageOptions,
} from "./images.ts";
export {
  credentialsSecretName,
  natsAuthorization,
  natsConfig,
  passwordEnvName,
  randomPassword,
  NATS_CLIENT_PORT,
  NATS_CLUSTER_PORT,
  NATS_MONITOR_PORT,
  type NatsClusterConf,
} from "./nats-conf.ts";
export {
  natsClusterManifests,
  natsRoutes,
  NATS_HEADLESS_NAME,
  NATS_IMAGE,
  NATS_NAME,
  NATS_REPLICAS,
} from "./nats-cluster.ts";
export {
  callersOf,
  edgeSubjects,
  inboxPrefix,
  natsPermissions,
  opsPermissions,
  OPS_USER,
  type NatsPermissions,
} from "./nats-permissions.ts";
export {
  grafanaDashboard,
  monitoringManifests,
  prometheusRules,
  ERROR_RATIO_THRESHOLD,
  P99_TIMEOUT_SHARE,
  QUEUE_FILL_THRESHOLD,
  type AlertRule,
  type RuleGroups,
} from "./observability.ts";
export { renderYaml, yamlDocument } from "./render-yaml.ts";
