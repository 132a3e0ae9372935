/**
 * Deployment files of a graph, for `servegraph manifests`: the Kubernetes objects (kubernetes.ts), the NATS
 * server's nats.conf (nats-conf.ts) with its permission policy (nats-permissions.ts), and their YAML
 * (render-yaml.ts).
 */
export {
  buildManifests, nodeSecretName, DEFAULT_IMAGE, DRAIN_MARGIN_S, HPA_CPU_UTILIZATION_PERCENT, METRICS_PORT, NATS_IMAGE, NATS_NAME,
  type K8sMetadata, type K8sObject, type Manifest, type ManifestOptions,
} from "./kubernetes.ts";
export { credentialsSecretName, natsAuthorization, natsConfig, passwordEnvName, randomPassword, NATS_CLIENT_PORT, NATS_MONITOR_PORT } from "./nats-conf.ts";
export { edgeSubjects, inboxPrefix, natsPermissions, opsPermissions, OPS_USER, type NatsPermissions } from "./nats-permissions.ts";
export { renderYaml, yamlDocument } from "./render-yaml.ts";
