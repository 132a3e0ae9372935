export * from "./errors.ts";
export * from "./headers.ts";
export * from "./names.ts";
export * from "./schemas.ts";
export * from "./tensor-codec.ts";
export * from "./image-normalization.ts";
export * from "./endpoints.ts";
export * from "./server-timing.ts";
