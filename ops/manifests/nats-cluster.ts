/**
 * The NATS cluster of a deployment, as the official NATS Helm chart lays it out (https://github.com/nats-io/k8s):
 * a StatefulSet of {@link NATS_REPLICAS} servers, a headless Service whose per-pod DNS names
 * (`nats-0.nats-headless`...) are the cluster routes, the client Service `nats` that every node's NATS_URL names,
 * the nats.conf ConfigMap (nats-conf.ts, with the graph's users and permissions), a PodDisruptionBudget that keeps
 * a quorum of servers through node drains, and a NetworkPolicy that opens the route port to the NATS pods only.
 *
 * A server stops in lame-duck mode (preStop: `nats-server -sl=ldm=<pid file>`): its clients reconnect to the others
 * before it exits, so a rolling update of the servers drops no request that a node can retry.
 */
import { createHash } from "node:crypto";
import type { ResolvedGraph } from "../../runtime/index.ts";
import {
  credentialsSecretName,
  natsConfig,
  passwordEnvName,
  NATS_CLIENT_PORT,
  NATS_CLUSTER_PORT,
  NATS_LAME_DUCK_S,
  NATS_MONITOR_PORT,
  NATS_PID_FILE,
} from "./nats-conf.ts";
import type { K8sMetadata, Manifest } from "./kubernetes.ts";

export const NATS_IMAGE = "nats:2.10-alpine";
/** Name of the StatefulSet, of the client Service, and the host in every node's NATS_URL. */
export const NATS_NAME = "nats";
/** The headless Service that gives each server a stable DNS name for the cluster routes. */
export const NATS_HEADLESS_NAME = "nats-headless";
/** Three servers: one may be down (a drain, a rolling update) while two keep the cluster up. */
export const NATS_REPLICAS = 3;

export interface NatsClusterContext {
  readonly graph: ResolvedGraph;
  readonly graphNames: readonly string[];
  /** The nodes of the closure: one NATS user each (plus the ops user). */
  readonly nodes: readonly string[];
  /** Every NATS user, nodes then the ops user. */
  readonly users: readonly string[];
  readonly namespace: string | undefined;
  readonly meta: (name: string, component: string, extra?: Partial<K8sMetadata>) => K8sMetadata;
  readonly labels: (name: string) => Record<string, string>;
}

/** The route URL of every server: `nats-route://nats-<i>.nats-headless[.<ns>.svc]:6222`. */
export function natsRoutes(namespace: string | undefined): string[] {
  const domain = namespace !== undefined ? `.${namespace}.svc` : "";
  return Array.from(
    { length: NATS_REPLICAS },
    (_, i) => `nats-route://${NATS_NAME}-${i}.${NATS_HEADLESS_NAME}${domain}:${NATS_CLUSTER_PORT}`,
  );
}

/** The objects of nats.yaml, in apply order. */
export function natsClusterManifests(c: NatsClusterContext): Manifest[] {
  const file = "nats.yaml";
  const conf = natsConfig(c.graph, c.graphNames, c.nodes, { name: c.graph.name, routes: natsRoutes(c.namespace) });
  const sel = c.labels(NATS_NAME);
  const creds = credentialsSecretName(c.graph);
  const ports = [
    { name: "client", containerPort: NATS_CLIENT_PORT },
    { name: "cluster", containerPort: NATS_CLUSTER_PORT },
    { name: "monitor", containerPort: NATS_MONITOR_PORT },
  ];
  return [
    {
      file,
      comments: [
        `nats.conf of the ${NATS_REPLICAS}-server NATS cluster: the graph's limits, routes and per-node users and permissions.`,
        "Check it with: POD_NAME=nats-0 <each *_NATS_PASSWORD set> nats-server -t -c nats.conf",
      ],
      object: {
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: c.meta(`${NATS_NAME}-config`, NATS_NAME),
        data: { "nats.conf": conf },
      },
    },
    {
      file,
      comments: [
        "Headless: one DNS name per server (nats-0.nats-headless ...), the cluster routes of nats.conf. Not-ready pods are",
        "published too, so that servers starting together find each other.",
      ],
      object: {
        apiVersion: "v1",
        kind: "Service",
        metadata: c.meta(NATS_HEADLESS_NAME, NATS_NAME),
        spec: {
          clusterIP: "None",
          publishNotReadyAddresses: true,
          selector: sel,
          ports: ports.map((p) => ({ name: p.name, port: p.containerPort, targetPort: p.containerPort })),
        },
      },
    },
    {
      file,
      comments: ["The client Service: every node's NATS_URL (nats://nats:4222) reaches any ready server."],
      object: {
        apiVersion: "v1",
        kind: "Service",
        metadata: c.meta(NATS_NAME, NATS_NAME),
        spec: {
          selector: sel,
          ports: [
            { name: "client", port: NATS_CLIENT_PORT, targetPort: NATS_CLIENT_PORT },
            { name: "monitor", port: NATS_MONITOR_PORT, targetPort: NATS_MONITOR_PORT },
          ],
        },
      },
    },
    {
      file,
      comments: [
        `${NATS_REPLICAS} clustered servers. Each user's password reaches the server as an env var that nats.conf references`,
        "as $<USER>_NATS_PASSWORD; POD_NAME names the server. A changed nats.conf rolls the servers one at a time.",
      ],
      object: {
        apiVersion: "apps/v1",
        kind: "StatefulSet",
        metadata: c.meta(NATS_NAME, NATS_NAME),
        spec: {
          serviceName: NATS_HEADLESS_NAME,
          replicas: NATS_REPLICAS,
          // All servers start at once: routes retry until the others are up (connect_retries).
          podManagementPolicy: "Parallel",
          selector: { matchLabels: sel },
          template: {
            metadata: {
              labels: sel,
              annotations: { "checksum/config": createHash("sha256").update(conf).digest("hex") },
            },
            spec: {
              terminationGracePeriodSeconds: NATS_LAME_DUCK_S + 30,
              // One server per Kubernetes node where the cluster has enough of them.
              topologySpreadConstraints: [
                {
                  maxSkew: 1,
                  topologyKey: "kubernetes.io/hostname",
                  whenUnsatisfiable: "ScheduleAnyway",
                  labelSelector: { matchLabels: sel },
                },
              ],
              securityContext: {
                runAsNonRoot: true,
                runAsUser: 1000,
                runAsGroup: 1000,
                seccompProfile: { type: "RuntimeDefault" },
              },
              containers: [
                {
                  name: NATS_NAME,
                  image: NATS_IMAGE,
                  args: ["-c", "/etc/nats/nats.conf"],
                  ports,
                  env: [
                    { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                    ...c.users.map((u) => ({
                      name: passwordEnvName(u),
                      valueFrom: { secretKeyRef: { name: creds, key: u } },
                    })),
                  ],
                  volumeMounts: [
                    { name: "config", mountPath: "/etc/nats" },
                    { name: "pid", mountPath: "/var/run/nats" },
                  ],
                  resources: { requests: { cpu: "500m", memory: "256Mi" }, limits: { cpu: "2", memory: "1Gi" } },
                  startupProbe: {
                    httpGet: { path: "/healthz", port: NATS_MONITOR_PORT },
                    periodSeconds: 2,
                    failureThreshold: 60,
                  },
                  readinessProbe: { httpGet: { path: "/healthz", port: NATS_MONITOR_PORT }, periodSeconds: 5 },
                  livenessProbe: {
                    httpGet: { path: "/healthz", port: NATS_MONITOR_PORT },
                    periodSeconds: 10,
                    failureThreshold: 3,
                  },
                  lifecycle: { preStop: { exec: { command: ["nats-server", `-sl=ldm=${NATS_PID_FILE}`] } } },
                  securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
                },
              ],
              volumes: [
                { name: "config", configMap: { name: `${NATS_NAME}-config` } },
                { name: "pid", emptyDir: {} },
              ],
            },
          },
        },
      },
    },
    {
      file,
      comments: ["Voluntary disruptions (node drains, upgrades) take at most one server at a time."],
      object: {
        apiVersion: "policy/v1",
        kind: "PodDisruptionBudget",
        metadata: c.meta(NATS_NAME, NATS_NAME),
        spec: { maxUnavailable: 1, selector: { matchLabels: sel } },
      },
    },
    {
      file,
      comments: [
        "Clients and monitoring may reach any server; the route port only from the other NATS servers (routes carry no",
        "password: this policy is their guard, on a cluster whose network plugin enforces NetworkPolicy).",
      ],
      object: {
        apiVersion: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        metadata: c.meta(NATS_NAME, NATS_NAME),
        spec: {
          podSelector: { matchLabels: sel },
          policyTypes: ["Ingress"],
          ingress: [
            {
              ports: [
                { protocol: "TCP", port: NATS_CLIENT_PORT },
                { protocol: "TCP", port: NATS_MONITOR_PORT },
              ],
            },
            { from: [{ podSelector: { matchLabels: sel } }], ports: [{ protocol: "TCP", port: NATS_CLUSTER_PORT }] },
          ],
        },
      },
    },
  ];
}
