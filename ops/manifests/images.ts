/**
 * The container image of each node. One image per npm workspace (services/<ws>), built by
 * deploy/containers/Containerfile with `--build-arg WORKSPACE=<ws>`: it installs only the root's and that
 * workspace's dependencies, so the preprocess image holds sharp and no onnxruntime, and the infer image holds
 * onnxruntime-node and no sharp. Nodes that share a service module (variant-a, variant-b) share its image.
 *
 * Name: `[<registry>/]servegraph-<ws>:<tag>`; `--image` puts one image of your own under every node instead.
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import type { ResolvedNode } from "../../runtime/index.ts";

/** The Containerfile of every node image, relative to the repository root. */
export const CONTAINERFILE = "deploy/containers/Containerfile";
/** The readiness check of a node without HTTP, shipped in every image: `$SRV.PING` of this replica over NATS. */
export const SRV_PING_PROBE = "deploy/probe/srv-ping.mjs";
/** Where the repository sits in an image (its WORKDIR). */
export const IMAGE_WORKDIR = "/app";

/** The default tag: the version in the root package.json, the version of what the images are built from. */
export const DEFAULT_TAG = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

export interface ImageOptions {
  /** Registry and path prefix, e.g. `registry.example.com/team` (default: none, a local image name). */
  readonly registry?: string;
  readonly tag?: string;
  /** One image for every node, overriding the per-workspace ones. */
  readonly image?: string;
}

/** The workspace folder name of a node's service module: `services/variant` -> `variant`. */
export function workspaceOf(node: ResolvedNode): string {
  return basename(node.service);
}

/** The image reference of a node. */
export function imageOf(node: ResolvedNode, o: ImageOptions): string {
  if (o.image !== undefined) return o.image;
  const repo = `servegraph-${workspaceOf(node)}`;
  return `${o.registry !== undefined ? `${o.registry.replace(/\/+$/, "")}/` : ""}${repo}:${o.tag ?? DEFAULT_TAG}`;
}

/** The command that builds a node's image from the repository root (podman; `docker build` takes the same flags). */
export function buildCommand(node: ResolvedNode, o: ImageOptions): string {
  return `podman build -f ${CONTAINERFILE} --build-arg WORKSPACE=${workspaceOf(node)} -t ${imageOf(node, o)} .`;
}
