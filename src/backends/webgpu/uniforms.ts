/**
 * Uniform structs, defined once in TypeScript. A layout lists the fields of a WGSL struct in
 * order; every field is a 4-byte scalar (u32, i32, f32), so field i sits at byte 4·i and the
 * buffer is padded to 16 bytes. test/webgpu/infra.test.ts parses each struct out of its .wgsl
 * file (parseWgslStruct) and checks names, types and offsets against the layout, so the two
 * cannot drift apart silently. Register new layouts in index.ts (UNIFORM_LAYOUTS).
 */

export type UniformType = 'u32' | 'i32' | 'f32';

export interface UniformLayout<K extends string = string> {
  /** The WGSL struct's name. */
  readonly name: string;
  /** The .wgsl file (in shaders/) that declares the struct. */
  readonly file: string;
  readonly fields: readonly (readonly [K, UniformType])[];
  /** Byte offset of each field. */
  readonly offsets: Readonly<Record<K, number>>;
  /** Buffer size in bytes (a multiple of 16). */
  readonly size: number;
}

export type UniformValues<K extends string> = Readonly<Record<K, number>>;

export function uniformLayout<const K extends string>(
  file: string,
  name: string,
  fields: readonly (readonly [K, UniformType])[],
): UniformLayout<K> {
  const offsets = {} as Record<K, number>;
  fields.forEach(([k], i) => {
    offsets[k] = 4 * i;
  });
  return { name, file, fields, offsets, size: Math.max(16, Math.ceil((4 * fields.length) / 16) * 16) };
}

/** Packs values into a new buffer of layout.size bytes (u32/i32 must be integers in range). */
export function packUniforms<K extends string>(
  layout: UniformLayout<K>,
  values: UniformValues<K>,
): ArrayBuffer {
  const buf = new ArrayBuffer(layout.size);
  const view = new DataView(buf);
  for (const [k, type] of layout.fields) {
    const v = values[k];
    const at = layout.offsets[k];
    if (type === 'f32') view.setFloat32(at, v, true);
    else {
      if (!Number.isInteger(v)) throw new Error(`uniform ${layout.name}.${k}: ${v} is not an integer`);
      if (type === 'u32') {
        if (v < 0 || v > 0xffffffff) throw new Error(`uniform ${layout.name}.${k}: ${v} out of u32 range`);
        view.setUint32(at, v, true);
      } else {
        if (v < -0x80000000 || v > 0x7fffffff)
          throw new Error(`uniform ${layout.name}.${k}: ${v} out of i32 range`);
        view.setInt32(at, v, true);
      }
    }
  }
  return buf;
}

export interface WgslField {
  name: string;
  type: string;
  offset: number;
}

const SCALAR_SIZE: Record<string, number> = { u32: 4, i32: 4, f32: 4 };

/**
 * The fields of `struct name { ... }` in WGSL source, with their byte offsets (scalar fields
 * only; anything else throws, since our uniforms hold scalars only).
 */
export function parseWgslStruct(source: string, name: string): WgslField[] {
  const noComments = source.replace(/\/\/[^\n]*/g, '');
  const m = new RegExp(`struct\\s+${name}\\s*\\{([^}]*)\\}`).exec(noComments);
  if (!m) throw new Error(`struct ${name} not found`);
  const out: WgslField[] = [];
  let offset = 0;
  for (const part of m[1].split(',')) {
    const f = part.trim();
    if (!f) continue;
    const fm = /^(?:@\S+\s+)*([A-Za-z_]\w*)\s*:\s*([\w<>]+)$/.exec(f);
    if (!fm) throw new Error(`struct ${name}: cannot parse field '${f}'`);
    const size = SCALAR_SIZE[fm[2]];
    if (size === undefined) throw new Error(`struct ${name}.${fm[1]}: type ${fm[2]} is not a 4-byte scalar`);
    out.push({ name: fm[1], type: fm[2], offset });
    offset += size;
  }
  return out;
}
