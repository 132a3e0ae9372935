/**
 * The serving graph: every node, its service module, dependencies, replicas, resources, parameters and
 * secrets. Data only: runtime/config.ts validates and compiles it once at load (`servegraph check` prints
 * the result). `servegraph up [graph...]` starts the named graphs (default: all three) with each node's
 * dependency closure.
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
      parameters: {
        MAX_BODY_BYTES: 8 * 1024 * 1024,
        IMAGE_FETCH_TIMEOUT_MS: 10_000,
        // Refuse image URLs that resolve to private, loopback or link-local addresses (SSRF). `true` only for local testing.
        ALLOW_PRIVATE_IMAGE_URLS: false,
        // How long the ingress waits on a client (408 REQUEST_TIMEOUT, connection closed); a route's own time is its deadline.
        HEADERS_TIMEOUT_MS: 10_000, // first byte to end of headers: slow-header (slowloris) guard
        REQUEST_TIMEOUT_MS: 30_000, // whole request: an 8 MiB body at 300 KB/s fits
        CONNECTION_TIMEOUT_MS: 10_000, // longest silence while a request is received or its answer written
        KEEP_ALIVE_TIMEOUT_MS: 72_000, // idle between requests; above the 60 s of common load balancers
      },
    },

    // --- two-node chain ----------------------------------------------------------------------------------------
    greeter: {
      service: "services/greeter",
      description: "Answers a greeting (the chain's callee).",
      replicas: [1, 4],
      resources: { cpu: "250m", memory: "128Mi" },
      timeout: "5s",
      parameters: { GREETING: "Hello", DELAY_MS: 0 },
    },
    "greeter-proxy": {
      service: "services/greeter-proxy",
      description: "Calls greeter over NATS; finds it both in-module (pattern A) and by an injected env var (pattern B).",
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
        // fast: sharp (libvips). exact: bit-exact port of Pillow's GaussianBlur + BILINEAR, for PIL-trained models.
        PREPROCESS_MODE: "fast",
        MAX_INPUT_PIXELS: 50_000_000,
        MAX_INPUT_BYTES: 8 * 1024 * 1024,
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
      parameters: {
        // Empty: generate a deterministic ResNet18-shaped model once and cache it (no download).
        // Point it at any ResNet18-style ONNX file (input [batch,3,224,224], output [batch,1000]);
        // "trivial": a generated model of the same shapes with almost no compute (the node's own ceiling).
        MODEL: "",
        // auto: CUDA, then WebGPU, then CPU (each failure reported with its reason); cuda, webgpu or cpu force one.
        EXECUTION_PROVIDER: "auto",
        INTRA_OP_THREADS: 0,
        // ORT's spin-waiting threads would take CPU from preprocess on a shared machine.
        ALLOW_SPINNING: false,
      },
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
        // "gate:<name>" or "experiment:<name>:<parameter>:<value meaning B>"
        ROUTING_RULE: "gate:variant_b",
        // Empty: the committed offline spec (services/ab-router/gates/default-spec.json).
        GATE_SPEC_FILE: "",
        // Percentage of requests mirrored to the other variant (answer discarded, difference recorded).
        SHADOW_PERCENT: 0,
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
