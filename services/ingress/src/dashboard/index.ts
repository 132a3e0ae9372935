/** GET /dashboard of the ingress: its routes (routes.ts) and the graph it draws (topology.ts). */
export { registerDashboard, type DashboardDeps } from "./routes.ts";
export { topologyOf, type RouteEdge, type Topology, type TopologyEdge, type TopologyNode } from "./topology.ts";
export type { LiveFrame, LiveNode } from "./live.ts";
