/**
 * The serving graph: every node, its service module, dependencies, replicas, resources, parameters and
 * secrets. Data only: runtime/config.ts validates and compiles it once at load (`servegraph check` prints
 * the result). `servegraph up [graph...]` starts the named graphs (default: all three) with each node's
 * dependency closure.
 *
 * A node's parameters, their meaning and their defaults live in its service's src/params.ts, once; this file sets
 * only what a node needs (the subjects it calls) or what differs from the default. `servegraph check` prints every
 * parameter of every node with its value, marking the defaults.
 */
import { defineGraph, subjectOf } from "./runtime/config.ts";

export default defineGraph({
  name: "servegraph-demo",
  nodes: {
    // --- HTTP in ----------------------------------------------------------------------------------------------
    ingress: {
      service: "services/ingress",
      description: "Fastify HTTP ingress: maps routes to NATS requests.",
      replicas: 1,
      resources: { cpu: 1, memory: "256Mi" },
      http: { port: 8080, host: "127.0.0.1" },
      timeout: "30s",
      maxInFlight: 1024,
      // true: every route but /healthz, /readyz, /metrics and /docs needs `Authorization: Bearer <API_KEY>`.
      requiresAuth: false,
      secrets: { API_KEY: { env: "SERVEGRAPH_API_KEY", file: "/run/secrets/servegraph-api-key" } },
      // Each route calls one endpoint; its request is built from the path, query and body by the endpoint's
      // definition (subjects/). A route whose node is not running (`up chain` has no preprocess) is not served.
      routes: {
        "GET /greeting/:name": { call: subjectOf("greeter-proxy", "greeting") },
        // An image as the body, or JSON {image_url, top_k} that the ingress fetches.
        "POST /classify": { call: subjectOf("preprocess", "classify"), body: "image" },
        "GET /labels": { call: subjectOf("infer", "labels") },
        "GET /process/:message": { call: subjectOf("ab-router", "process") },
        // servegraph new node: routes of new nodes above this line.
      },
      // Parameters (services/ingress/src/params.ts): MAX_BODY_BYTES (8 MiB), IMAGE_FETCH_TIMEOUT_MS,
      // ALLOW_PRIVATE_IMAGE_URLS (false: image URLs resolving to private addresses are refused), and how long it
      // waits on a client: HEADERS_TIMEOUT_MS (slowloris guard), REQUEST_TIMEOUT_MS, CONNECTION_TIMEOUT_MS,
      // KEEP_ALIVE_TIMEOUT_MS. The defaults suit a public endpoint.
    },

    // --- two-node chain ----------------------------------------------------------------------------------------
    greeter: {
      service: "services/greeter",
      description: "Answers a greeting (the chain's callee).",
      replicas: [1, 4],
      resources: { cpu: "250m", memory: "128Mi" },
      timeout: "5s",
      // Parameters: GREETING ("Hello"), DELAY_MS (0: a simulated slow dependency when set).
    },
    "greeter-proxy": {
      service: "services/greeter-proxy",
      description:
        "Calls greeter over NATS; finds it both in-module (pattern A) and by an injected env var (pattern B).",
      dependsOn: ["greeter"],
      replicas: [1, 4],
      resources: { cpu: "250m", memory: "128Mi" },
      timeout: "5s",
      parameters: { GREETER_SUBJECT: subjectOf("greeter", "greet") },
    },

    // --- image classification ----------------------------------------------------------------------------------
    preprocess: {
      service: "services/preprocess",
      description: "CPU: decode, Gaussian blur, resize 224x224, normalize (sharp); softmax + top-k on the way back.",
      dependsOn: ["infer"],
      replicas: [1, 8],
      // CPU-bound: a replica is busy with a few images at once; add one when more than 4 per replica are in flight.
      autoscale: { metric: "inFlight", target: 4, scaleUpAfter: "5s", scaleDownAfter: "60s" },
      resources: { cpu: 1, memory: "512Mi" },
      timeout: "30s",
      maxInFlight: 64,
      parameters: {
        INFER_SUBJECT: subjectOf("infer", "run"),
        LABELS_SUBJECT: subjectOf("infer", "labels"),
        // Also PREPROCESS_MODE (fast: sharp; exact: a bit-exact port of Pillow's GaussianBlur + BILINEAR, for
        // PIL-trained models), MAX_INPUT_PIXELS, MAX_INPUT_BYTES: services/preprocess/src/params.ts.
      },
    },
    infer: {
      service: "services/infer",
      description: "ResNet18 ONNX on onnxruntime-node (CUDA or WebGPU when one starts, CPU otherwise), micro-batched.",
      replicas: [1, 2],
      // Narrow and warm: a second replica only when a full CPU batch keeps waiting per replica.
      autoscale: { metric: "queueDepth", target: 32, scaleUpAfter: "10s", scaleDownAfter: "120s" },
      resources: { cpu: 2, memory: "2Gi", gpu: 0 },
      timeout: "30s",
      maxInFlight: 1024,
      // Knobs left out here are chosen by infer for the execution provider it gets (services/infer/src/batching.ts):
      // CPU maxBatchSize 32, maxQueueDelayMs 0 (a batch leaves as soon as the model is free), one batch at a time;
      // a GPU maxBatchSize 64, maxQueueDelayMs 2, two batches in flight (one filled while the other computes).
      batching: { maxQueueSize: 256 },
      // Parameters (services/infer/src/params.ts), all at their defaults here: MODEL (empty: a deterministic
      // ResNet18-shaped model generated once, no download; a path: any ResNet18-style ONNX file; "trivial": the same
      // shapes with almost no compute), EXECUTION_PROVIDER (auto: CUDA, then WebGPU on a hardware adapter, then CPU,
      // each skipped one with its reason; cuda, webgpu or cpu force one), INTRA_OP_THREADS (0: every core),
      // ALLOW_SPINNING (false: ORT's spinning threads would take CPU from preprocess on a shared machine).
    },

    // --- A/B routing -------------------------------------------------------------------------------------------
    "ab-router": {
      service: "services/ab-router",
      description: "Routes each user key to variant-a or variant-b by a Statsig gate (offline spec by default).",
      dependsOn: ["variant-a", "variant-b"],
      replicas: [1, 4],
      resources: { cpu: "500m", memory: "256Mi" },
      // Room for variant-b's cold start from zero replicas (seconds on a busy machine) within one request.
      timeout: "10s",
      parameters: {
        VARIANT_A_SUBJECT: subjectOf("variant-a", "process"),
        VARIANT_B_SUBJECT: subjectOf("variant-b", "process"),
        // Also ROUTING_RULE ("gate:variant_b"; or "experiment:<name>:<parameter>:<value meaning B>"), GATE_SPEC_FILE
        // (empty: the committed offline spec) and SHADOW_PERCENT (0: requests mirrored to the other variant).
      },
      secrets: {
        // With a server key Statsig is used for real; without, the offline spec decides. Never logged.
        STATSIG_SERVER_KEY: { env: "STATSIG_SERVER_KEY", file: "/run/secrets/statsig-server-key" },
      },
    },
    "variant-a": {
      service: "services/variant",
      description: "Variant A of the A/B test.",
      replicas: 1,
      resources: { cpu: "250m", memory: "128Mi" },
      timeout: "5s",
      parameters: { VARIANT: "A", ALGORITHM: "baseline" },
    },
    "variant-b": {
      service: "services/variant",
      description: "Variant B of the A/B test.",
      // Scale to zero: the experiment's arm sees only the users its gate sends to it, often none for minutes.
      // `servegraph up` starts it with no replica; its activator holds the first request, starts one (a cold start
      // of a second or two), and it stops again after a minute idle. Variant A, which most users get, stays warm.
      replicas: [0, 2],
      resources: { cpu: "250m", memory: "128Mi" },
      timeout: "5s",
      parameters: { VARIANT: "B", ALGORITHM: "experimental" },
    },

    // --- your own nodes (`servegraph new node <name>` adds them here) ------------------------------------------
    // servegraph new node: new nodes above this line.
  },
  graphs: {
    chain: { description: "ingress -> greeter-proxy -> greeter", nodes: ["ingress", "greeter-proxy"] },
    classify: { description: "ingress -> preprocess -> infer", nodes: ["ingress", "preprocess"] },
    ab: { description: "ingress -> ab-router -> variant-a | variant-b", nodes: ["ingress", "ab-router"] },
    // servegraph new node: graphs of new nodes above this line.
  },
  defaultGraphs: ["chain", "classify", "ab"],
});
