/**
 * Argument checks shared by every op. Each throws GrpoKernelsError naming the argument and what
 * was expected, before any kernel runs.
 */

import type { Backend } from '../backends/backend.js';
import { type DType, type HostArrayMap, inferDType, isHostArrayOf } from '../dtypes.js';
import { fail } from '../errors.js';
import { ownerOf, Tensor } from '../tensor.js';

/** A Tensor, or for one-dimensional inputs a plain typed array. */
export type TensorLike<D extends DType = DType> = Tensor<D> | HostArrayMap[D];

/** Shape pattern: a number must match; null matches any size. */
export type ShapePattern = readonly (number | null)[];

function describeShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Accepts a Tensor of this backend or a 1-D typed array (uploaded). Checks dtype ∈ `dtypes` and
 * the shape against `pattern`. Returns the tensor and whether it was uploaded here (so the op can
 * dispose the temporary).
 */
export function asTensor<D extends DType>(
  backend: Backend,
  argument: string,
  value: unknown,
  dtypes: readonly D[],
  pattern: ShapePattern,
): { tensor: Tensor<D>; uploaded: boolean } {
  let tensor: Tensor<D>;
  let uploaded = false;
  if (value instanceof Tensor) {
    if (value.disposed) fail('SHAPE', argument, 'expected a live Tensor, got one that was disposed');
    try {
      value.storage; // throws BACKEND_UNAVAILABLE when its context was disposed
    } catch (e) {
      fail('BACKEND_UNAVAILABLE', argument, `expected a Tensor of a live context: ${(e as Error).message}`);
    }
    const owner = ownerOf(value);
    if (value.backend !== backend.name || owner !== backend) {
      fail(
        'DTYPE',
        argument,
        value.backend !== backend.name
          ? `expected a Tensor of this context's backend (${backend.name}), got one of ${value.backend}`
          : owner === undefined
            ? // `new Tensor(...)` by hand: its storage may be anything (another tensor's, of another
              // size or dtype), which a backend would read past or misread.
              'expected a Tensor made by this context (ctx.tensor, an op, fromGPUBuffer), got one constructed directly'
            : `expected a Tensor of this context, got one made by another ${value.backend} context`,
      );
    }
    if (!(dtypes as readonly DType[]).includes(value.dtype)) {
      fail('DTYPE', argument, `expected dtype ${dtypes.join(' or ')}, got ${value.dtype}`);
    }
    tensor = value as Tensor<D>;
  } else if (ArrayBuffer.isView(value)) {
    if (pattern.length !== 1) {
      fail(
        'SHAPE',
        argument,
        `expected a Tensor of shape [${pattern.map((d) => d ?? '?').join(', ')}]; plain arrays are accepted for 1-D inputs only`,
      );
    }
    const inferred = inferDType(value);
    const dtype = (dtypes as readonly DType[]).find((d) =>
      inferred === undefined ? isHostArrayOf(value, d) : d === inferred,
    );
    if (dtype === undefined) {
      fail(
        'DTYPE',
        argument,
        `expected a ${dtypes.map(hostArrayName).join(' or ')} (dtype ${dtypes.join(' or ')}), got ${value.constructor.name}`,
      );
    }
    checkDetached(argument, value);
    const arr = ownedView(value as unknown as HostArrayMap[D]);
    tensor = backend.upload(arr, [arr.length], dtype as D);
    uploaded = true;
  } else {
    fail(
      'DTYPE',
      argument,
      `expected a Tensor or a typed array (dtype ${dtypes.join(' or ')}), got ${describe(value)}`,
    );
  }
  checkShape(argument, tensor.shape, pattern);
  return { tensor, uploaded };
}

/**
 * `data`, or a copy of it when its memory is a SharedArrayBuffer: another thread may write it while a
 * backend copies it (Dawn's writeBuffer crashed on one, the cuda addon refused it), so every backend
 * uploads from memory of its own.
 */
export function ownedView<A extends ArrayBufferView>(data: A): A {
  if (typeof SharedArrayBuffer !== 'undefined' && data.buffer instanceof SharedArrayBuffer) {
    return (data as unknown as { slice(): A }).slice();
  }
  return data;
}

/**
 * Refuses a typed array whose ArrayBuffer was detached (transferred, e.g. to a worker): it reads as
 * empty, and copying it throws a TypeError. Only an empty view can be detached, so this costs nothing
 * on real data.
 */
export function checkDetached(argument: string, value: ArrayBufferView): void {
  if (value.byteLength !== 0 || value.buffer.byteLength !== 0) return;
  try {
    new Uint8Array(value.buffer);
  } catch {
    fail(
      'DTYPE',
      argument,
      `expected a typed array with its memory, got a ${value.constructor.name} whose ArrayBuffer was detached (transferred)`,
    );
  }
}

export function hostArrayName(dtype: DType): string {
  switch (dtype) {
    case 'f32':
      return 'Float32Array';
    case 'i32':
      return 'Int32Array';
    case 'u8':
      return 'Uint8Array';
    default:
      return 'Uint16Array';
  }
}

export function checkShape(argument: string, shape: readonly number[], pattern: ShapePattern): void {
  const ok = shape.length === pattern.length && pattern.every((d, i) => d === null || d === shape[i]);
  if (!ok) {
    fail(
      'SHAPE',
      argument,
      `expected shape [${pattern.map((d) => d ?? '?').join(', ')}], got ${describeShape(shape)}`,
    );
  }
}

/** The kind of a value, for DTYPE messages: "a string", "null", "a Float64Array", "a Tensor". */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (value instanceof Tensor) return `a Tensor of dtype ${value.dtype}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  if (Array.isArray(value)) return 'an array';
  const t = typeof value;
  return t === 'object' ? 'an object' : `a ${t}`;
}

/** A value as the caller wrote it, for RANGE messages: 'abc' quoted, NaN as NaN, 1e20 as 100000000000000000000. */
export function quote(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return describe(value);
}

/**
 * One rule for every option: a value of the wrong type is DTYPE naming its type; a value of the
 * right type out of range is RANGE quoting it as given. `undefined` (an absent option) is the
 * caller's to default; null is a wrong type like any other.
 */
export function checkNumber(
  argument: string,
  value: unknown,
  bounds: { min?: number; max?: number; exclusiveMin?: boolean; integer?: boolean; f32?: boolean } = {},
): number {
  const { min, max, exclusiveMin = false, integer = false, f32 = false } = bounds;
  const range = `${min === undefined ? '(-∞' : exclusiveMin ? `(${min}` : `[${min}`}, ${max === undefined ? '∞)' : `${max}]`}`;
  const what = `expected ${integer ? 'an integer' : 'a finite number'} in ${range}`;
  if (typeof value !== 'number') fail('DTYPE', argument, `expected a number, got ${describe(value)}`);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value)))
    fail('RANGE', argument, `${what}, got ${quote(value)}`);
  if (min !== undefined && (exclusiveMin ? value <= min : value < min))
    fail('RANGE', argument, `${what}, got ${quote(value)}`);
  if (max !== undefined && value > max) fail('RANGE', argument, `${what}, got ${quote(value)}`);
  // The GPU kernels take the value as an f32: past its range it would be ±Inf, below its least
  // normal 0 (or a denormal a GPU flushes to 0), and the backends would disagree.
  const a = Math.abs(value);
  if (f32 && (a > F32_MAX || (a !== 0 && a < F32_MIN_NORMAL)))
    fail(
      'RANGE',
      argument,
      `${what} and 0 or an f32 normal (1.1754944e-38 ≤ |x| ≤ 3.4028235e38), got ${quote(value)}`,
    );
  return value;
}

/** The largest finite f32 and the least positive normal one. */
export const F32_MAX = 3.4028234663852886e38;
export const F32_MIN_NORMAL = 1.1754943508222875e-38;

/** checkNumber, with `fallback` for an absent (undefined) option. */
export function numberOption(
  argument: string,
  value: unknown,
  fallback: number,
  bounds: Parameters<typeof checkNumber>[2] = {},
): number {
  return value === undefined ? fallback : checkNumber(argument, value, bounds);
}

/** One of a fixed set of strings: another type is DTYPE, another string RANGE. */
export function checkEnum<T extends string>(argument: string, value: unknown, allowed: readonly T[]): T {
  const list = allowed.map((a) => `'${a}'`).join(', ');
  if (typeof value !== 'string') fail('DTYPE', argument, `expected one of ${list}, got ${describe(value)}`);
  if (!(allowed as readonly string[]).includes(value))
    fail('RANGE', argument, `expected one of ${list}, got ${quote(value)}`);
  return value as T;
}

/** checkEnum, with `fallback` for an absent (undefined) option. */
export function enumOption<T extends string>(
  argument: string,
  value: unknown,
  allowed: readonly T[],
  fallback: T,
): T {
  return value === undefined ? fallback : checkEnum(argument, value, allowed);
}

export function checkBoolean(argument: string, value: unknown): boolean {
  if (typeof value !== 'boolean') fail('DTYPE', argument, `expected a boolean, got ${describe(value)}`);
  return value;
}

/** checkBoolean, with `fallback` for an absent (undefined) option. */
export function booleanOption(argument: string, value: unknown, fallback: boolean): boolean {
  return value === undefined ? fallback : checkBoolean(argument, value);
}

/**
 * Options objects must be objects (or undefined) holding only the keys the op knows: a misspelt
 * option (`temprature`) would otherwise be ignored silently and give a wrong number.
 */
export function checkOptions<T extends object>(
  argument: string,
  value: unknown,
  keys: readonly (keyof T & string)[],
): Partial<T> {
  if (value === undefined) return {};
  // A plain object (of any realm): arrays, typed arrays, Maps and Dates are refused, not read as {}.
  if (
    typeof value !== 'object' ||
    value === null ||
    Object.prototype.toString.call(value) !== '[object Object]'
  )
    fail('DTYPE', argument, `expected an options object, got ${describe(value)}`);
  for (const k of Object.keys(value)) {
    if (!(keys as readonly string[]).includes(k)) {
      fail('DTYPE', `${argument}.${k}`, `unknown option; expected one of ${keys.join(', ')}`);
    }
  }
  return value as Partial<T>;
}

/** Takes one tensor argument: asTensor, with a plain array's upload recorded for disposal. */
export type Take = <D extends DType>(
  argument: string,
  value: unknown,
  dtypes: readonly D[],
  pattern: ShapePattern,
) => Tensor<D>;

/**
 * Runs an op body with `take`, which accepts each tensor argument (asTensor) and records the
 * temporaries it uploads; they are disposed when the body ends, whatever happens in between (a later
 * check that throws included). The one upload-tracking helper of every op.
 */
export async function withInputs<T>(backend: Backend, run: (take: Take) => Promise<T>): Promise<T> {
  const uploaded: Tensor[] = [];
  const take: Take = (argument, value, dtypes, pattern) => {
    const r = asTensor(backend, argument, value, dtypes, pattern);
    if (r.uploaded) uploaded.push(r.tensor);
    return r.tensor;
  };
  try {
    return await run(take);
  } finally {
    for (const t of uploaded) t.dispose();
  }
}
