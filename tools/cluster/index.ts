/**
 * Several hosts on one machine (network namespaces, a NATS cluster) and the multi-host scenario run on them
 * (`npm run demo:cluster`, test/integration/cluster.test.ts).
 */
export {
  cleanupLeftovers,
  createHostNetwork,
  findLeftovers,
  netnsUnavailableReason,
  NetnsUnavailableError,
  pidsOfRun,
  RUN_ENV,
  type Host,
  type HostNetwork,
  type Leftovers,
} from "./netns.ts";
export {
  clusterServerConfig,
  connectionsOf,
  startNatsCluster,
  type ClusterServer,
  type NatsCluster,
} from "./nats-cluster.ts";
export { startClosedLoop, type ClosedLoop, type RequestRecord } from "./load.ts";
export {
  CLUSTER_GRAPH_FILE,
  CLUSTER_IMAGE,
  runClusterScenario,
  type ClusterScenarioOptions,
  type ClusterScenarioSummary,
  type PhaseSummary,
} from "./scenario.ts";
