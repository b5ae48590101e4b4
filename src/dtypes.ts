/**
 * Element types and their host representations. f16 and bf16 travel as raw bits in a
 * Uint16Array (DESIGN.md, "Core types"); conversions round to nearest even.
 */
export type DType = 'f32' | 'f16' | 'bf16' | 'i32' | 'u8';
export type FloatDType = 'f32' | 'f16' | 'bf16';

export interface HostArrayMap {
  f32: Float32Array;
  f16: Uint16Array;
  bf16: Uint16Array;
  i32: Int32Array;
  u8: Uint8Array;
}
export type HostArray = HostArrayMap[DType];

export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'i32', 'u8'];
export const FLOAT_DTYPES: readonly FloatDType[] = ['f32', 'f16', 'bf16'];

export function bytesPerElement(dtype: DType): number {
  switch (dtype) {
    case 'f32':
    case 'i32':
      return 4;
    case 'f16':
    case 'bf16':
      return 2;
    case 'u8':
      return 1;
  }
}

/** The dtype a plain typed array implies when the caller names none (Uint16Array is ambiguous). */
export function inferDType(data: unknown): DType | undefined {
  if (data instanceof Float32Array) return 'f32';
  if (data instanceof Int32Array) return 'i32';
  if (data instanceof Uint8Array) return 'u8';
  return undefined;
}

/** Whether `data` is the host array type of `dtype`. */
export function isHostArrayOf(data: unknown, dtype: DType): boolean {
  switch (dtype) {
    case 'f32':
      return data instanceof Float32Array;
    case 'f16':
    case 'bf16':
      return data instanceof Uint16Array;
    case 'i32':
      return data instanceof Int32Array;
    case 'u8':
      return data instanceof Uint8Array;
  }
}

export function allocHost<D extends DType>(dtype: D, length: number): HostArrayMap[D] {
  switch (dtype) {
    case 'f32':
      return new Float32Array(length) as HostArrayMap[D];
    case 'f16':
    case 'bf16':
      return new Uint16Array(length) as HostArrayMap[D];
    case 'i32':
      return new Int32Array(length) as HostArrayMap[D];
    default:
      return new Uint8Array(length) as HostArrayMap[D];
  }
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** bf16 bits → number (exact). */
export function bf16ToF32(bits: number): number {
  u32Scratch[0] = (bits & 0xffff) << 16;
  return f32Scratch[0];
}

/** number → bf16 bits, rounding the f32 value to nearest even; NaN stays NaN. */
export function f32ToBf16(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) | 0x40) & 0xffff;
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** f16 bits → number (exact). */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** number → f16 bits, rounding to nearest even; overflow gives ±Inf, NaN stays NaN. */
export function f32ToF16(value: number): number {
  if (Number.isNaN(value)) return 0x7e00;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  let a = Math.abs(value);
  if (a === Number.POSITIVE_INFINITY) return sign | 0x7c00;
  // Round the value to f32 first so that double rounding matches a GPU's f32 → f16 conversion.
  f32Scratch[0] = a;
  a = f32Scratch[0];
  if (a >= 65520) return sign | 0x7c00;
  if (a < 2 ** -14) {
    // Subnormal: units of 2^-24, round half to even.
    const q = a * 2 ** 24;
    let r = Math.floor(q);
    const rem = q - r;
    if (rem > 0.5 || (rem === 0.5 && r % 2 === 1)) r += 1;
    return sign | r;
  }
  let exp = Math.floor(Math.log2(a));
  if (2 ** exp > a) exp -= 1;
  if (2 ** (exp + 1) <= a) exp += 1;
  const q = (a / 2 ** exp - 1) * 1024;
  let frac = Math.floor(q);
  const rem = q - frac;
  if (rem > 0.5 || (rem === 0.5 && frac % 2 === 1)) frac += 1;
  if (frac === 1024) {
    frac = 0;
    exp += 1;
  }
  if (exp > 15) return sign | 0x7c00;
  return sign | ((exp + 15) << 10) | frac;
}

/** Decodes element i of a float tensor's host array to a number. */
export function decodeFloat(dtype: FloatDType, data: Float32Array | Uint16Array, i: number): number {
  if (dtype === 'f32') return data[i];
  return dtype === 'bf16' ? bf16ToF32(data[i]) : f16ToF32(data[i]);
}

/** Encodes numbers as a host array of `dtype` (rounding to nearest even for f16/bf16). */
export function encodeFloats(dtype: FloatDType, values: ArrayLike<number>): Float32Array | Uint16Array {
  if (dtype === 'f32') return Float32Array.from(values);
  const out = new Uint16Array(values.length);
  const enc = dtype === 'bf16' ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < values.length; i++) out[i] = enc(values[i]);
  return out;
}

/** Decodes a whole float host array to Float64Array. */
export function decodeFloats(dtype: FloatDType, data: Float32Array | Uint16Array): Float64Array {
  const out = new Float64Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = decodeFloat(dtype, data, i);
  return out;
}
