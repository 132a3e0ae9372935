/**
 * Every endpoint definition of the project: the reference graphs' (endpoints.ts) and each node's of one's own
 * (a file per node beside them, e.g. subjects/upper.ts, whose `ENDPOINTS` array is spread in below). `check` and
 * `up` resolve `subjectOf()`, `calls` and routes against this list, the ingress serves a declared route through the
 * definition it finds here, and the contract test round-trips every entry. `servegraph new node` adds its line.
 */
import type { EndpointDef } from "./endpoints.ts";
import { REFERENCE_ENDPOINTS } from "./endpoints.ts";
// servegraph new node: imports of the project's own nodes below this line.

export const ENDPOINTS: readonly EndpointDef[] = [
  ...REFERENCE_ENDPOINTS,
  // servegraph new node: the project's own nodes below this line.
];

/** The definitions of a service folder's name (e.g. "preprocess"), in definition order. */
export function endpointsOf(service: string): EndpointDef[] {
  return ENDPOINTS.filter((d) => d.service === service);
}

/** The definition of `service`'s endpoint `name`, or undefined. */
export function endpointDef(service: string, name: string): EndpointDef | undefined {
  return ENDPOINTS.find((d) => d.service === service && d.name === name);
}
