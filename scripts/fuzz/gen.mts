/**
 * Seeded inputs for the differential fuzzer (scripts/fuzz/differential.mts): a random source per
 * (family, seed), so that a case depends on nothing but its seed and family (not on the backend, the
 * families run beside it, or the cases run before it), and the generators the families share.
 */
import { decodeFloats, encodeFloats, type FloatDType } from '../../src/index.js';
import { normal, rng } from '../../test/util/rng.js';

export const FLOAT_DTYPES: readonly FloatDType[] = ['f32', 'f16', 'bf16'];

/** Uniform, integer, choice and normal draws from one seeded stream (test/util/rng.ts's mulberry32). */
export class Rand {
  readonly #u: () => number;
  readonly #n: () => number;

  constructor(family: string, seed: number) {
    // FNV-1a of the family name, mixed with the seed: families draw independent streams.
    let h = 0x811c9dc5;
    for (const ch of family) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
    const u = rng((Math.imul(seed >>> 0, 0x9e3779b1) ^ h) >>> 0);
    this.#u = u;
    this.#n = normal(u);
  }

  /** Uniform in [0, 1). */
  u(): number {
    return this.#u();
  }
  /** An integer in [lo, hi], both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.#u() * (hi - lo + 1));
  }
  /** True with probability p. */
  bool(p = 0.5): boolean {
    return this.#u() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.#u() * xs.length)];
  }
  /** Standard normal. */
  normal(): number {
    return this.#n();
  }
  normals(n: number, scale = 1, mean = 0): Float64Array {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = mean + scale * this.#n();
    return out;
  }
}

/** Host data of a float dtype: the bits a backend gets, and their exact values (decoded). */
export interface FloatData {
  dtype: FloatDType;
  bits: Float32Array | Uint16Array;
  values: Float64Array;
}

/** `x` rounded to `dtype`: the encoded bits and the exact values they hold. */
export function floatData(dtype: FloatDType, x: ArrayLike<number>): FloatData {
  const bits = encodeFloats(dtype, x);
  return { dtype, bits, values: decodeFloats(dtype, bits) };
}

/** A packed ("varlen") layout: group g's responses [groupOffsets[g], +1), response r's tokens. */
export interface RaggedLayout {
  groupOffsets: Int32Array;
  responseOffsets: Int32Array;
  groups: number;
  responses: number;
  tokens: number;
}

/**
 * Ragged groups with singletons, empty responses and (when minGroups is 0) no groups at all; at
 * most `maxTokens` tokens (later responses are cut short, possibly to empty ones).
 */
export function raggedLayout(
  r: Rand,
  o: { maxGroups: number; maxGroupSize: number; maxLength: number; maxTokens: number; minGroups?: number },
): RaggedLayout {
  const groups = r.int(o.minGroups ?? 0, o.maxGroups);
  const go = [0];
  const ro = [0];
  let tokens = 0;
  for (let g = 0; g < groups; g++) {
    const size = r.bool(0.3) ? r.pick([1, 1, 2]) : r.int(1, o.maxGroupSize);
    for (let k = 0; k < size; k++) {
      const len = r.bool(0.12) ? 0 : r.int(1, o.maxLength);
      tokens += Math.min(len, o.maxTokens - tokens);
      ro.push(tokens);
    }
    go.push(ro.length - 1);
  }
  return {
    groupOffsets: Int32Array.from(go),
    responseOffsets: Int32Array.from(ro),
    groups,
    responses: ro.length - 1,
    tokens,
  };
}

/** Short text of an offsets array for a failure line. */
export function offsetsText(a: ArrayLike<number>): string {
  return `[${Array.from(a).join(',')}]`;
}
