/**
 * The case builder: a seeded random source, stable per-category ids (`<category>/<nnn>`), and the small spec and
 * expectation helpers every category uses. Cases are kept in the order they are added.
 */
import { mulberry32 } from "../../test/helpers/random.ts";
import {
  materialize,
  type BodySpec,
  type CorpusCase,
  type Expect,
  type HttpCase,
} from "../../test/fixtures/corpus/format.ts";
import { startsWithMagic } from "./image-forgery.ts";

export const E = (code: string): Expect => ({ code });
export const oneOf = (...codes: string[]): Expect => ({ oneOf: codes });
export const ANY_4XX: Expect = {};

export const text = (t: string): BodySpec => ({ kind: "text", text: t });
export const json = (v: unknown): BodySpec => text(JSON.stringify(v));
export const b64 = (b: Buffer): BodySpec => ({ kind: "b64", b64: b.toString("base64") });

export class Corpus {
  readonly cases: CorpusCase[] = [];
  private readonly seq = new Map<string, number>();
  readonly rand: () => number;

  constructor(seed: number) {
    this.rand = mulberry32(seed);
  }

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rand() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rand() * xs.length)]!;
  }
  seed(): number {
    return this.int(1, 0x7fffffff);
  }
  /** A seeded random buffer that does not start with any image signature. */
  randomNoMagic(length: number): BodySpec {
    for (;;) {
      const spec: BodySpec = { kind: "random", seed: this.seed(), length };
      if (!startsWithMagic(materialize({ ...spec, length: Math.min(length, 32) }))) return spec;
    }
  }

  private id(category: string): string {
    const n = (this.seq.get(category) ?? 0) + 1;
    this.seq.set(category, n);
    return `${category}/${String(n).padStart(3, "0")}`;
  }

  http(
    category: string,
    what: string,
    c: Omit<HttpCase, "id" | "category" | "what" | "transport" | "headers"> & { headers?: Record<string, string> },
  ): void {
    const { headers, ...rest } = c;
    this.cases.push({
      id: this.id(`http/${category}`),
      category: `http/${category}`,
      what,
      transport: "http",
      headers: headers ?? {},
      ...rest,
    });
  }

  nats(
    subject: string,
    category: string,
    what: string,
    c: { headers?: Record<string, string>; body: BodySpec; expect: Expect; timeoutMs?: number },
  ): void {
    const cat = `nats/${subject.replace(/^sg\.v1\./, "")}/${category}`;
    this.cases.push({
      id: this.id(cat),
      category: cat,
      what,
      transport: "nats",
      subject,
      headers: c.headers ?? {},
      body: c.body,
      expect: c.expect,
      ...(c.timeoutMs ? { timeoutMs: c.timeoutMs } : {}),
    });
  }
}
