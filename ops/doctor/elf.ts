/**
 * What a shared library asks of the dynamic loader, read from its ELF file without loading it: the libraries it
 * needs (DT_NEEDED), its soname, and the symbol versions it defines (onnxruntime's libonnxruntime.so defines
 * `VERS_<its version>`). Only what `servegraph doctor` needs: 64-bit little-endian ELF (x86-64, AArch64), read by
 * offset, so a 400 MB CUDA provider costs a few reads.
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";

export interface ElfDynamic {
  needed: string[];
  soname?: string;
  /** Names of the version definitions (SHT_GNU_verdef), e.g. "VERS_1.30.0"; the file's own soname comes first in ELF and is left out. */
  versionDefs: string[];
}

const SHT_DYNAMIC = 6;
const SHT_GNU_VERDEF = 0x6ffffffd;
const DT_NEEDED = 1;
const DT_SONAME = 14;

class Reader {
  private readonly fd: number;
  readonly size: number;
  constructor(readonly path: string) {
    this.fd = openSync(path, "r");
    this.size = statSync(path).size;
  }
  bytes(offset: number, length: number): Buffer {
    if (offset < 0 || length < 0 || offset + length > this.size)
      throw new Error(`${this.path}: not a valid ELF file (a table lies outside the file)`);
    const b = Buffer.alloc(length);
    readSync(this.fd, b, 0, length, offset);
    return b;
  }
  /** A NUL-terminated string at `offset` (at most 4 KB). */
  cstring(offset: number): string {
    const b = this.bytes(offset, Math.min(4096, this.size - offset));
    const end = b.indexOf(0);
    return b.subarray(0, end < 0 ? b.length : end).toString("latin1");
  }
  close(): void {
    closeSync(this.fd);
  }
}

/** Throws with the reason when the file is not a 64-bit little-endian ELF shared object or executable. */
export function readElfDynamic(path: string): ElfDynamic {
  const r = new Reader(path);
  try {
    if (r.size < 64) throw new Error(`${path}: not an ELF file`);
    const h = r.bytes(0, 64);
    if (h.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${path}: not an ELF file`);
    if (h[4] !== 2 || h[5] !== 1) throw new Error(`${path}: not a 64-bit little-endian ELF file`);
    const shoff = Number(h.readBigUInt64LE(0x28));
    const shentsize = h.readUInt16LE(0x3a);
    const shnum = h.readUInt16LE(0x3c);
    if (shoff === 0 || shnum === 0) throw new Error(`${path}: has no section headers`);
    const sections = Array.from({ length: shnum }, (_, i) => {
      const s = r.bytes(shoff + i * shentsize, 64);
      return {
        type: s.readUInt32LE(4),
        offset: Number(s.readBigUInt64LE(0x18)),
        size: Number(s.readBigUInt64LE(0x20)),
        link: s.readUInt32LE(0x28),
        info: s.readUInt32LE(0x2c),
      };
    });
    const strtabOf = (link: number): number => {
      const s = sections[link];
      if (!s) throw new Error(`${path}: a section links to a string table that does not exist`);
      return s.offset;
    };
    const out: ElfDynamic = { needed: [], versionDefs: [] };
    const dyn = sections.find((s) => s.type === SHT_DYNAMIC);
    if (dyn) {
      const strtab = strtabOf(dyn.link);
      const table = r.bytes(dyn.offset, dyn.size);
      for (let at = 0; at + 16 <= table.length; at += 16) {
        const tag = Number(table.readBigInt64LE(at));
        if (tag === 0) break;
        const val = Number(table.readBigUInt64LE(at + 8));
        if (tag === DT_NEEDED) out.needed.push(r.cstring(strtab + val));
        else if (tag === DT_SONAME) out.soname = r.cstring(strtab + val);
      }
    }
    const verdef = sections.find((s) => s.type === SHT_GNU_VERDEF);
    if (verdef) {
      const strtab = strtabOf(verdef.link);
      let at = verdef.offset;
      for (let i = 0; i < verdef.info; i++) {
        const d = r.bytes(at, 20);
        const flags = d.readUInt16LE(2);
        const aux = d.readUInt32LE(12);
        const next = d.readUInt32LE(16);
        // VER_FLG_BASE (1) marks the definition that is the file's own name.
        if ((flags & 1) === 0) out.versionDefs.push(r.cstring(strtab + r.bytes(at + aux, 8).readUInt32LE(0)));
        if (next === 0) break;
        at += next;
      }
    }
    return out;
  } finally {
    r.close();
  }
}

/** onnxruntime's version as its library's symbol versions say it ("VERS_1.30.0" -> "1.30.0"), or undefined. */
export function ortVersionOfDefs(defs: readonly string[]): string | undefined {
  for (const d of defs) {
    const m = /^VERS_(\d+\.\d+\.\d+)$/.exec(d);
    if (m) return m[1];
  }
  return undefined;
}

/**
 * Every string in the file that is exactly an onnxruntime-style version ("1.30.0": NUL on both sides), scanning
 * in chunks. onnxruntime compiles its version into each library it builds, providers included, as such a string.
 */
export function versionStringsIn(path: string): string[] {
  const fd = openSync(path, "r");
  const found = new Set<string>();
  try {
    const size = statSync(path).size;
    const chunk = 8 << 20;
    const overlap = 16;
    const buf = Buffer.alloc(chunk + overlap);
    for (let pos = 0; pos < size; pos += chunk) {
      const n = readSync(fd, buf, 0, Math.min(chunk + overlap, size - pos), pos);
      const text = buf.subarray(0, n).toString("latin1");
      for (const m of text.matchAll(/\0(1\.\d{1,2}\.\d{1,2})(?=\0)/g)) found.add(m[1]!);
    }
  } finally {
    closeSync(fd);
  }
  return [...found].sort();
}
