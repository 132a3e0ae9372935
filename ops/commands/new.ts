/**
 * `servegraph new node <name>`: a working node of one's own, in the project of the working directory.
 *
 * Writes
 *   subjects/<name>.ts               its endpoint `run`: JSON {"text"} in, {"text", "served_by"} out, with an example
 *                                    (the contract test round-trips it); listed in subjects/registry.ts
 *   services/<name>/package.json     its npm workspace (a native dependency of the node goes here)
 *   services/<name>/src/params.ts    its parameters (none yet: add them here, set them in graph.config.ts)
 *   services/<name>/src/main.ts      its handler
 *   test/nodes/<name>.test.ts        starts the node's graph for real, calls it over HTTP and over NATS
 * and adds to graph.config.ts the node, a graph of its own (`npm start -- <name>`) and, on the project's HTTP
 * node, the route `POST /<name>`. Then it refreshes package-lock.json for the new workspace (npm install
 * --package-lock-only), without which `npm ci` refuses the lock file. Nothing is overwritten: a name in use stops
 * it before it writes anything. Right after it, `servegraph check`, `npm test` and `npm start -- <name>` pass.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { loadGraph } from "../../runtime/index.ts";
import { projectRoot, GRAPH_FILE_NAME } from "../../runtime/project.ts";

/** A node name: a lower-case subject token that is also an npm package and folder name. */
const NODE_NAME = /^[a-z][a-z0-9-]{0,40}$/;
/** Where graph.config.ts takes new entries (written by this command's template; the regexes below otherwise). */
export const MARK = {
  nodes: "// servegraph new node: new nodes above this line.",
  graphs: "// servegraph new node: graphs of new nodes above this line.",
  routes: "// servegraph new node: routes of new nodes above this line.",
  registryImport: "// servegraph new node: imports of the project's own nodes below this line.",
  registryEntry: "// servegraph new node: the project's own nodes below this line.",
} as const;

const pascal = (name: string): string =>
  name
    .split("-")
    .map((p) => p[0]!.toUpperCase() + p.slice(1))
    .join("");
const camel = (name: string): string => {
  const p = pascal(name);
  return p[0]!.toLowerCase() + p.slice(1);
};

function usage(msg: string): number {
  process.stderr.write(
    `servegraph new: ${msg}\nusage: servegraph new node <name> [--description text] [--no-lock] [--json]\n`,
  );
  return 2;
}

/** Inserts `text` before the line holding `mark` (its indentation kept), else after the match of `fallback`. */
function insertAt(src: string, mark: string, text: string, fallback: RegExp | undefined, what: string): string {
  const i = src.indexOf(mark);
  if (i >= 0) {
    const lineStart = src.lastIndexOf("\n", i) + 1;
    return src.slice(0, lineStart) + text + src.slice(lineStart);
  }
  const m = fallback?.exec(src);
  if (!m) throw new Error(`cannot find where ${what} go in graph.config.ts: put the line "${mark}" there`);
  return src.slice(0, m.index + m[0].length) + text + src.slice(m.index + m[0].length);
}

export interface NewNodeResult {
  name: string;
  files: string[];
  graphFile: string;
  route: string | undefined;
  lockRefreshed: boolean;
}

/** Writes the node (see the top of this file) into the project at `root`. */
export async function newNode(
  root: string,
  name: string,
  opts: { description?: string; lock?: boolean; log?: (line: string) => void } = {},
): Promise<NewNodeResult> {
  const log = opts.log ?? (() => {});
  const graphFile = join(root, GRAPH_FILE_NAME);
  const graph = await loadGraph(graphFile);
  const P = pascal(name);
  const files = {
    subjects: join(root, "subjects", `${name}.ts`),
    registry: join(root, "subjects", "registry.ts"),
    pkg: join(root, "services", name, "package.json"),
    params: join(root, "services", name, "src", "params.ts"),
    main: join(root, "services", name, "src", "main.ts"),
    test: join(root, "test", "nodes", `${name}.test.ts`),
  };
  if (graph.nodes[name]) throw new Error(`graph.config.ts already has a node "${name}"`);
  if (graph.graphs[name]) throw new Error(`graph.config.ts already has a graph "${name}"`);
  for (const f of [files.subjects, files.pkg, files.test])
    if (existsSync(f)) throw new Error(`${relative(root, f)} already exists`);
  if (!existsSync(files.registry))
    throw new Error(`${relative(root, files.registry)} is missing: it lists the project's endpoint definitions`);
  const http = Object.values(graph.nodes).find((n) => n.http);
  const routeKey = http ? `POST /${name}` : undefined;
  if (http && http.routes.some((r) => r.key === routeKey))
    throw new Error(`${http.name} already has the route ${routeKey}`);
  const description = opts.description ?? `${P}: answers the text it is sent, and which replica answered.`;

  // graph.config.ts first: if it cannot be edited, nothing else is written.
  let g = readFileSync(graphFile, "utf8");
  const nodeEntry = [
    `    ${JSON.stringify(name)}: {`,
    `      service: "services/${name}",`,
    `      description: ${JSON.stringify(description)},`,
    `      replicas: [1, 4],`,
    `      resources: { cpu: "250m", memory: "128Mi" },`,
    `      timeout: "5s",`,
    `      // Calls to other nodes are declared: a parameter subjectOf(node, endpoint) (read it as ctx.params.X), or`,
    `      // calls: [subjectOf(node, endpoint)] for ctx.subjectOf(node, endpoint) in the code.`,
    `      parameters: {},`,
    `    },`,
    "",
  ].join("\n");
  g = insertAt(g, MARK.nodes, nodeEntry, undefined, "nodes");
  g = insertAt(
    g,
    MARK.graphs,
    `    ${JSON.stringify(name)}: { description: ${JSON.stringify(`${http ? `${http.name} -> ` : ""}${name}`)}, nodes: [${[...(http ? [http.name] : []), name].map((n) => JSON.stringify(n)).join(", ")}] },\n`,
    undefined,
    "graphs",
  );
  if (http && routeKey)
    g = insertAt(
      g,
      MARK.routes,
      `        ${JSON.stringify(routeKey)}: { call: subjectOf(${JSON.stringify(name)}, "run") },\n`,
      undefined,
      "routes",
    );
  if (!/\bsubjectOf\b/.test(g.split("defineGraph(")[0] ?? ""))
    throw new Error("graph.config.ts does not import subjectOf");

  const registry = readFileSync(files.registry, "utf8");
  let reg = registry.replace(
    MARK.registryImport,
    `${MARK.registryImport}\nimport { ENDPOINTS as ${camel(name)}Endpoints } from "./${name}.ts";`,
  );
  reg = reg.replace(MARK.registryEntry, `${MARK.registryEntry}\n  ...${camel(name)}Endpoints,`);
  if (reg === registry || !reg.includes(`...${camel(name)}Endpoints`))
    throw new Error(`subjects/registry.ts has no "${MARK.registryEntry}" line`);

  const write = (f: string, text: string): void => {
    mkdirSync(dirname(f), { recursive: true });
    writeFileSync(f, text);
    log(`wrote ${relative(root, f)}`);
  };
  write(files.subjects, subjectsFile(name, P));
  write(
    files.pkg,
    JSON.stringify(
      { name: `@servegraph/${name}`, version: "0.1.0", private: true, type: "module", description, dependencies: {} },
      null,
      2,
    ) + "\n",
  );
  write(files.params, paramsFile(name));
  write(files.main, mainFile(name, P, description));
  write(files.test, testFile(name, P, routeKey));
  writeFileSync(files.registry, reg);
  log(`added ${name} to subjects/registry.ts`);
  writeFileSync(graphFile, g);
  log(`added node ${name}, graph ${name}${routeKey ? ` and route ${routeKey}` : ""} to ${GRAPH_FILE_NAME}`);
  await formatted(root, [files.subjects, files.params, files.main, files.test, files.registry, graphFile], log);

  let lockRefreshed = false;
  if (opts.lock !== false && existsSync(join(root, "package-lock.json"))) {
    // The new workspace must be in the lock file, or `npm ci` refuses it. It has no dependencies: nothing is fetched.
    const npm = spawnSync(
      process.platform === "win32" ? "npm.cmd" : "npm",
      ["install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund", "--offline"],
      { cwd: root, encoding: "utf8" },
    );
    lockRefreshed = npm.status === 0;
    log(
      lockRefreshed
        ? "refreshed package-lock.json"
        : `could not refresh package-lock.json (run: npm install --package-lock-only): ${(npm.stderr || npm.stdout || "").trim().split("\n").pop()}`,
    );
  }
  return {
    name,
    files: Object.values(files)
      .map((f) => relative(root, f))
      .concat(GRAPH_FILE_NAME),
    graphFile,
    route: routeKey,
    lockRefreshed,
  };
}

/**
 * What `new` wrote, in the project's format (`npm test` checks it with Prettier): formatted with the project's own
 * Prettier and its config when it is installed (a development checkout); a production install has none, and
 * nothing checks the format there.
 */
async function formatted(root: string, files: readonly string[], log: (line: string) => void): Promise<void> {
  let prettier: typeof import("prettier");
  try {
    // Its CommonJS entry (what require resolves) puts the API on the default export.
    const mod = (await import(pathToFileURL(createRequire(join(root, "package.json")).resolve("prettier")).href)) as {
      default?: typeof import("prettier");
    } & typeof import("prettier");
    prettier = mod.default ?? mod;
  } catch {
    return;
  }
  for (const f of files) {
    try {
      const options = (await prettier.resolveConfig(f)) ?? {};
      writeFileSync(f, await prettier.format(readFileSync(f, "utf8"), { ...options, filepath: f }));
    } catch (err) {
      log(
        `could not format ${relative(root, f)} (npm run format): ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`,
      );
    }
  }
}

export async function run(argv: string[]): Promise<number> {
  let values: { description?: string; "no-lock"?: boolean; json?: boolean; graph?: string };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        description: { type: "string" },
        "no-lock": { type: "boolean" },
        json: { type: "boolean" },
        graph: { type: "string" },
      },
    }));
  } catch (err) {
    return usage(err instanceof Error ? err.message : String(err));
  }
  const [kind, name, ...extra] = positionals;
  if (kind !== "node") return usage(kind ? `cannot make a "${kind}" (only: node)` : "what to make: node");
  if (!name) return usage("the node needs a name");
  if (extra.length) return usage(`unexpected ${extra.join(" ")}`);
  if (!NODE_NAME.test(name))
    return usage(`"${name}" is not a node name: lower-case letters, digits and dashes, starting with a letter`);
  const root = values.graph ? dirname(values.graph) : projectRoot();
  try {
    const r = await newNode(root, name, {
      ...(values.description ? { description: values.description } : {}),
      lock: !values["no-lock"],
      log: values.json ? undefined : (l) => process.stdout.write(`${l}\n`),
    });
    if (values.json) process.stdout.write(JSON.stringify(r, null, 2) + "\n");
    else {
      process.stdout.write(
        [
          "",
          `node ${name} is ready. Next:`,
          "  npm run servegraph -- check                 the graph, your node's parameters and route, checked",
          `  npm start -- ${name}${" ".repeat(Math.max(1, 29 - name.length))}serve it: ingress and ${name}`,
          ...(r.route
            ? [`  curl -s localhost:${8080}/${name} -H 'content-type: application/json' -d '{"text":"hi"}'`]
            : []),
          `  npm run servegraph -- request sg.v1.${name}.run '{"text":"hi"}'`,
          `  npm test                                    includes test/nodes/${name}.test.ts`,
          "  docs/writing-a-node.md                      calls, parameters, batching, routes, tests",
          "",
        ].join("\n"),
      );
    }
    return 0;
  } catch (err) {
    process.stderr.write(`servegraph new: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

function subjectsFile(name: string, P: string): string {
  return `/**
 * The endpoints of the ${name} node, defined once: the node serves them (services/${name}/src/main.ts), callers and
 * the ingress call them, and the contract test round-trips the example. Add an endpoint here and to ENDPOINTS.
 */
import { z } from "zod";
import { endpoint, json } from "./endpoints.ts";

export const ${P}Request = z.strictObject({
  text: z.string().min(1).max(10_000).describe("The text to handle."),
});
export const ${P}Reply = z.strictObject({
  text: z.string(),
  served_by: z.string().describe("The replica that answered."),
});

export const ${P}Run = endpoint({
  service: ${JSON.stringify(name)},
  name: "run",
  description: "Answers the text it is sent, and which replica answered.",
  request: json(${P}Request),
  reply: json(${P}Reply),
  // Codes of subjects/errors.ts this endpoint may answer with (beyond those any hop may).
  errors: ["BAD_REQUEST"],
  idempotent: true,
  example: { request: { text: "hello" }, reply: { text: "hello", served_by: "${name}-1" } },
});

export const ENDPOINTS = [${P}Run] as const;
`;
}

function paramsFile(name: string): string {
  return `/**
 * Parameters of the ${name} node, each with its default here (the one place it lives): graph.config.ts sets what
 * differs (\`nodes.${name}.parameters\`), \`servegraph check\` checks the values against this schema and prints them,
 * and the handler reads them typed as \`ctx.params\`. For example:
 *   PREFIX: param.string("Put before every answer.").default(""),
 *   GREETER_SUBJECT: param.subject("The greeter's greet endpoint."),   // set to subjectOf("greeter", "greet")
 */
import { defineParams } from "../../../runtime/params.ts";

export default defineParams({});
`;
}

function mainFile(name: string, P: string, description: string): string {
  return `/** ${name}: ${description} */
import { runNode } from "../../../runtime/index.ts";
import { ${P}Run } from "../../../subjects/${name}.ts";
import Params from "./params.ts";

await runNode(async (ctx) => {
  // The input arrives parsed and checked against ${P}Run's request; what is returned is checked against its reply.
  // To call another node: await ctx.client.call(Greet, ctx.subjectOf("greeter", "greet"), { name: text })
  // (declare it in graph.config.ts: calls: [subjectOf("greeter", "greet")]). docs/writing-a-node.md has more.
  ctx.serve(${P}Run, async ({ text }) => ({ text, served_by: ctx.replicaId }));
}, { params: Params });
`;
}

function testFile(name: string, P: string, routeKey: string | undefined): string {
  return `/**
 * The ${name} node for real: its graph (graph.config.ts \`graphs.${name}\`) started on a nats-server of its own, its
 * endpoint called over NATS${routeKey ? ` and its route ${routeKey} over HTTP` : ""}.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "../../runtime/index.ts";
import { ${P}Run } from "../../subjects/${name}.ts";
import { REPO_ROOT, startGraph } from "../helpers/graph.ts";

test("${name} - answers the text and the replica, over NATS${routeKey ? " and HTTP" : ""}", { timeout: 120_000 }, async () => {
  await using g = await startGraph({ graphs: [${JSON.stringify(name)}], graphFile: \`\${REPO_ROOT}/graph.config.ts\`, nodeEnv: { ingress: { PORT: "0" } } });
  const client = createClient(g.nc, { caller: "test", defaultTimeoutMs: 5000 });
  const r = await client.call(${P}Run, "sg.v1.${name}.run", { text: "hello" });
  assert.equal(r.text, "hello");
  assert.match(r.served_by, /^${name}-/);${
    routeKey
      ? `
  const res = await fetch(\`\${g.ingressUrl}/${name}\`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ text: "over HTTP" }) });
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { text: string }).text, "over HTTP");
  const bad = await fetch(\`\${g.ingressUrl}/${name}\`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ text: "" }) });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { code: string }).code, "BAD_REQUEST");`
      : ""
  }
});
`;
}
