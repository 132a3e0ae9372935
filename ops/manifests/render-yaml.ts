/**
 * Manifests as a multi-document YAML stream, written by the `yaml` package: each object after `---`, its comments
 * above it. Kubernetes tooling reads YAML 1.1 (sigs.k8s.io/yaml), other tools YAML 1.2, so a string is left plain
 * only where both read it back as the same string (`compat: "yaml-1.1"`); `yes`, `on`, `0123`, `1e3` or `null`
 * as strings come out quoted.
 */
import { Document, type CreateNodeOptions, type SchemaOptions, type ToStringOptions } from "yaml";
import type { Manifest } from "./kubernetes.ts";

const SCHEMA: SchemaOptions = { compat: "yaml-1.1" };
/** No anchors and aliases for an object used twice (a container's requests and limits): plain data, written out. */
const CREATE: CreateNodeOptions = { aliasDuplicateObjects: false };
/**
 * `---` before every document; no folding of long lines; a multi-line string (nats.conf) as a literal block,
 * never a folded one, so it reads as the file it is.
 */
const FORMAT: ToStringOptions = { directives: true, lineWidth: 0, blockQuote: "literal" };

/** One YAML document: the object after `---`, each comment line as `# line` above it. */
export function yamlDocument(object: unknown, comments: readonly string[] = []): string {
  const doc = new Document(object, { ...SCHEMA, ...CREATE });
  const lines = comments.flatMap((c) => c.split("\n"));
  if (lines.length && doc.contents) doc.contents.commentBefore = lines.map((l) => ` ${l}`).join("\n");
  return doc.toString(FORMAT);
}

export function renderYaml(manifests: readonly Manifest[]): string {
  return manifests.map((m) => yamlDocument(m.object, m.comments)).join("");
}
