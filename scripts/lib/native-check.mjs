// Reading a built addon (an ELF shared object) without the CUDA toolkit's cuobjdump: which GPU code its
// fat binaries carry, which libraries it needs, and the newest glibc symbol version it uses.
// scripts/prebuild.mjs checks the prebuilt addon with these before it goes into the npm tarball.
import { readFileSync } from 'node:fs';

/** The ELF64 little-endian section headers: name → { offset, size }. */
function elfSections(buf) {
  if (buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) {
    throw new Error('not a 64-bit little-endian ELF file');
  }
  const shoff = Number(buf.readBigUInt64LE(0x28));
  const shentsize = buf.readUInt16LE(0x3a);
  const shnum = buf.readUInt16LE(0x3c);
  const shstrndx = buf.readUInt16LE(0x3e);
  const header = (i) => {
    const o = shoff + i * shentsize;
    return {
      name: buf.readUInt32LE(o),
      offset: Number(buf.readBigUInt64LE(o + 0x18)),
      size: Number(buf.readBigUInt64LE(o + 0x20)),
    };
  };
  const names = header(shstrndx);
  const sections = new Map();
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    const start = names.offset + h.name;
    const end = buf.indexOf(0, start);
    sections.set(buf.toString('latin1', start, end), { offset: h.offset, size: h.size });
  }
  return sections;
}

/**
 * The GPU code in the `.nv_fatbin` section: one entry per (kind, sm) with how many translation units
 * carry it, e.g. { 'elf sm_80': 6, 'elf sm_90': 6, 'ptx compute_90': 6 }. A fat binary is a run of
 * containers (magic 0xBA55ED50, a 16-byte header with the payload's size) whose entries start with
 * kind (1 PTX, 2 ELF), header size, payload size, and the target architecture at byte 28.
 */
export function fatbinEntries(path) {
  const buf = readFileSync(path);
  const section = elfSections(buf).get('.nv_fatbin');
  const entries = {};
  if (section === undefined) return entries;
  let p = section.offset;
  const end = section.offset + section.size;
  while (p + 16 <= end) {
    if (buf.readUInt32LE(p) !== 0xba55ed50) {
      p += 8; // containers are 8-byte aligned; skip padding
      continue;
    }
    const headerSize = buf.readUInt16LE(p + 6);
    const last = p + headerSize + Number(buf.readBigUInt64LE(p + 8));
    let q = p + headerSize;
    while (q < last) {
      const kind = buf.readUInt16LE(q);
      const size = buf.readUInt32LE(q + 4) + Number(buf.readBigUInt64LE(q + 8));
      const arch = buf.readUInt32LE(q + 28);
      const name = kind === 1 ? `ptx compute_${arch}` : kind === 2 ? `elf sm_${arch}` : `kind${kind} ${arch}`;
      entries[name] = (entries[name] ?? 0) + 1;
      q += size;
    }
    p = last;
  }
  return entries;
}

/** The libraries an ELF file needs (DT_NEEDED) and the newest GLIBC_x.y symbol version it references. */
export function dynamicNeeds(path) {
  const buf = readFileSync(path);
  const sections = elfSections(buf);
  const dynamic = sections.get('.dynamic');
  const dynstr = sections.get('.dynstr');
  const needed = [];
  if (dynamic && dynstr) {
    for (let o = dynamic.offset; o + 16 <= dynamic.offset + dynamic.size; o += 16) {
      const tag = buf.readBigInt64LE(o);
      if (tag === 0n) break;
      if (tag === 1n) {
        const start = dynstr.offset + Number(buf.readBigUInt64LE(o + 8));
        needed.push(buf.toString('latin1', start, buf.indexOf(0, start)));
      }
    }
  }
  // Version names live in .dynstr; the newest GLIBC_ one referenced bounds the glibc it runs on.
  let glibc = '0';
  if (dynstr) {
    const text = buf.toString('latin1', dynstr.offset, dynstr.offset + dynstr.size);
    for (const m of text.matchAll(/GLIBC_(\d+(?:\.\d+)+)/g)) {
      if (compareVersions(m[1], glibc) > 0) glibc = m[1];
    }
  }
  return {
    needed,
    glibc,
    glibcxx: /GLIBCXX_/.test(
      dynstr ? buf.toString('latin1', dynstr.offset, dynstr.offset + dynstr.size) : '',
    ),
  };
}

/** Compares dotted versions: < 0, 0, > 0. */
export function compareVersions(a, b) {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
