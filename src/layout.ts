/**
 * Packed ("varlen") rollout layout, as flash-attention's cu_seqlens: responses packed along one
 * token axis (`responseOffsets [R+1]`), responses grouped by prompt (`groupOffsets [G+1]`).
 * These helpers work on host arrays; ops accept their results directly.
 */
import { describe, ownedView } from './api/validate.js';
import { fail } from './errors.js';

export interface Layout {
  /** Tokens of response r are [responseOffsets[r], responseOffsets[r+1]). */
  responseOffsets: Int32Array;
  /** Responses of group g are [groupOffsets[g], groupOffsets[g+1]). */
  groupOffsets: Int32Array;
}

/** A validated layout with the counts and per-group token ranges derived once. */
export interface ResolvedLayout extends Layout {
  numResponses: number;
  numGroups: number;
  numTokens: number;
  /** Tokens of group g are [groupTokenOffsets[g], groupTokenOffsets[g+1]). */
  groupTokenOffsets: Int32Array;
}

/**
 * Checks an offsets array: Int32Array, length ≥ 1, starts at 0, non-decreasing, ends at `total`
 * (when given). Throws LAYOUT naming `argument`. `scan` finds the first decrease (a backend's faster
 * one, Backend.firstDecrease; by default the loop below).
 */
export function validateOffsets(
  argument: string,
  given: unknown,
  total?: number,
  scan: (offsets: Int32Array) => number = firstDecrease,
): Int32Array {
  if (!(given instanceof Int32Array)) fail('DTYPE', argument, 'expected an Int32Array of offsets');
  // Offsets in a SharedArrayBuffer are copied first: another thread may write them after they were
  // checked, and the cuda addon refuses shared memory (found by test/api-fuzz.test.ts on cuda).
  const offsets = ownedView(given);
  if (offsets.length < 1) fail('LAYOUT', argument, 'expected at least one offset (0)');
  if (offsets[0] !== 0) fail('LAYOUT', argument, `expected offsets to start at 0, got ${offsets[0]}`);
  const i = scan(offsets);
  if (i > 0) {
    fail(
      'LAYOUT',
      argument,
      `expected non-decreasing offsets, but [${i - 1}] = ${offsets[i - 1]} > [${i}] = ${offsets[i]}`,
    );
  }
  const last = offsets[offsets.length - 1];
  if (total !== undefined && last !== total) {
    fail('LAYOUT', argument, `expected the last offset to equal ${total}, got ${last}`);
  }
  return offsets;
}

/**
 * The lowest i with offsets[i] < offsets[i − 1], or −1. Hot (1M response offsets per call on the
 * native backends, where it was the op's largest host cost): each element loaded once, four per step
 * with one combined test, the failing step rescanned for the exact index; no closures or allocations.
 */
export function firstDecrease(offsets: Int32Array): number {
  const n = offsets.length;
  let prev = n > 0 ? offsets[0] : 0;
  let i = 1;
  for (; i + 4 <= n; i += 4) {
    const a = offsets[i];
    const b = offsets[i + 1];
    const c = offsets[i + 2];
    const d = offsets[i + 3];
    if (a < prev || b < a || c < b || d < c) break;
    prev = d;
  }
  for (; i < n; i++) {
    const x = offsets[i];
    if (x < prev) return i;
    prev = x;
  }
  return -1;
}

/** groupOffsets for R responses in groups of `groupSize` (R must be a multiple of it). */
export function groupOffsetsFromSize(
  numResponses: number,
  groupSize: number,
  argument = 'groupSize',
): Int32Array {
  // Offsets are i32: R past 2^31 − 1 would wrap to negative offsets, a negative R has no groups.
  if (
    typeof numResponses !== 'number' ||
    !Number.isInteger(numResponses) ||
    numResponses < 0 ||
    numResponses > I32_MAX
  )
    fail('RANGE', 'numResponses', `expected an integer in [0, 2^31 − 1], got ${String(numResponses)}`);
  if (typeof groupSize !== 'number' || !Number.isInteger(groupSize) || groupSize < 1)
    fail('RANGE', argument, `expected an integer ≥ 1, got ${String(groupSize)}`);
  if (numResponses % groupSize !== 0) {
    fail(
      'LAYOUT',
      argument,
      `expected it to divide the number of responses (${numResponses}), got ${groupSize}`,
    );
  }
  const g = numResponses / groupSize;
  const out = new Int32Array(g + 1);
  for (let i = 0; i <= g; i++) out[i] = i * groupSize;
  return out;
}

/**
 * The response offsets of a per-token op's `layout` ({ responseOffsets, groupOffsets? }: policyLoss,
 * rolloutRejection), validated against the token count; groupOffsets, when given, is checked with them
 * (resolveLayout).
 */
export function responseOffsetsOf(
  layout: unknown,
  numTokens: number,
  scan: ((offsets: Int32Array) => number) | undefined,
): Int32Array {
  if (typeof layout !== 'object' || layout === null)
    fail('LAYOUT', 'layout', `expected { responseOffsets: Int32Array }, got ${describe(layout)}`);
  const l = layout as { responseOffsets?: unknown; groupOffsets?: unknown };
  return l.groupOffsets === undefined
    ? validateOffsets('layout.responseOffsets', l.responseOffsets, numTokens, scan)
    : resolveLayout(l, numTokens, 'layout', scan).responseOffsets;
}

/**
 * Validates a layout against the token count (when known) and derives its per-group ranges.
 * `numTokens` undefined means "whatever responseOffsets ends at".
 */
export function resolveLayout(
  layout: unknown,
  numTokens?: number,
  argument = 'layout',
  scan: (offsets: Int32Array) => number = firstDecrease,
): ResolvedLayout {
  if (typeof layout !== 'object' || layout === null) {
    fail('LAYOUT', argument, 'expected { responseOffsets: Int32Array, groupOffsets: Int32Array }');
  }
  const l = layout as Partial<Layout>;
  const responseOffsets = validateOffsets(`${argument}.responseOffsets`, l.responseOffsets, numTokens, scan);
  const numResponses = responseOffsets.length - 1;
  const groupOffsets = validateOffsets(`${argument}.groupOffsets`, l.groupOffsets, undefined, scan);
  const lastGroup = groupOffsets[groupOffsets.length - 1];
  if (lastGroup !== numResponses) {
    fail(
      'LAYOUT',
      `${argument}.groupOffsets`,
      `expected the last offset to equal the number of responses (${numResponses}), got ${lastGroup}`,
    );
  }
  const numGroups = groupOffsets.length - 1;
  const groupTokenOffsets = new Int32Array(numGroups + 1);
  for (let g = 0; g <= numGroups; g++) groupTokenOffsets[g] = responseOffsets[groupOffsets[g]];
  return {
    responseOffsets,
    groupOffsets,
    numResponses,
    numGroups,
    numTokens: responseOffsets[numResponses],
    groupTokenOffsets,
  };
}

/** Where each packed token came from in the padded [R, T] array. */
export interface Packing {
  responseOffsets: Int32Array;
  /** Flat index r·T + j in the padded array of each packed token. */
  positions: Int32Array;
  shape: readonly [number, number];
}

/**
 * Padded mask [R, T] (row-major, nonzero = valid token) → packed layout. Valid tokens of a row
 * need not be contiguous (left and right padding both work); their order is kept.
 */
export function packMask(mask: ArrayLike<number>, shape: readonly [number, number]): Packing {
  if (!isArrayLike(mask)) fail('DTYPE', 'mask', 'expected a typed array or an array of [R·T] flags');
  const [r, t] = checkPaddedShape(shape);
  if (mask.length !== r * t)
    fail('SHAPE', 'mask', `expected ${r}·${t} = ${r * t} elements, got ${mask.length}`);
  const responseOffsets = new Int32Array(r + 1);
  let n = 0;
  for (let i = 0; i < r * t; i++) if (mask[i]) n++;
  const positions = new Int32Array(n);
  n = 0;
  for (let row = 0; row < r; row++) {
    for (let j = 0; j < t; j++) if (mask[row * t + j]) positions[n++] = row * t + j;
    responseOffsets[row + 1] = n;
  }
  return { responseOffsets, positions, shape: [r, t] };
}

/** Padded values [R, T] → packed values [Ttotal], by a packing from packMask. */
export function pack<A extends Float32Array | Int32Array | Uint8Array | Uint16Array>(
  values: A,
  packing: Packing,
): A {
  checkPackedValues('values', values);
  const [r, t] = checkPacking(packing);
  if (values.length !== r * t)
    fail('SHAPE', 'values', `expected ${r * t} elements (the padded [R, T]), got ${values.length}`);
  const out = new (values.constructor as new (n: number) => A)(packing.positions.length);
  for (let i = 0; i < packing.positions.length; i++) out[i] = values[packing.positions[i]];
  return out;
}

/** Packed values [Ttotal] → padded [R, T], padding with `fill` (default 0). */
export function unpack<A extends Float32Array | Int32Array | Uint8Array | Uint16Array>(
  packed: A,
  packing: Packing,
  fill = 0,
): A {
  checkPackedValues('packed', packed);
  checkPacking(packing);
  if (packed.length !== packing.positions.length) {
    fail(
      'SHAPE',
      'packed',
      `expected ${packing.positions.length} elements (the packed tokens), got ${packed.length}`,
    );
  }
  const [r, t] = packing.shape;
  const out = new (packed.constructor as new (n: number) => A)(r * t);
  if (fill !== 0) out.fill(fill);
  for (let i = 0; i < packing.positions.length; i++) out[packing.positions[i]] = packed[i];
  return out;
}

const I32_MAX = 2 ** 31 - 1;

function isArrayLike(x: unknown): x is ArrayLike<number> {
  return Array.isArray(x) || (ArrayBuffer.isView(x) && !(x instanceof DataView));
}

/** [R, T] of a padded batch: non-negative integers whose offsets and flat positions fit i32. */
function checkPaddedShape(shape: unknown, argument = 'shape'): [number, number] {
  const ok =
    Array.isArray(shape) &&
    shape.length === 2 &&
    shape.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0);
  if (!ok) fail('SHAPE', argument, `expected [R, T] with non-negative integers, got ${describeShape(shape)}`);
  const [r, t] = shape as [number, number];
  if (r * t > I32_MAX || r > I32_MAX - 1)
    fail('SHAPE', argument, `expected R·T ≤ 2^31 − 1 (i32 offsets and positions), got [${r}, ${t}]`);
  return [r, t];
}

function describeShape(shape: unknown): string {
  return Array.isArray(shape) ? `[${shape.join(', ')}]` : String(shape);
}

/** The typed array pack and unpack copy (the kinds they can allocate again). */
function checkPackedValues(argument: string, values: unknown): void {
  const ok =
    values instanceof Float32Array ||
    values instanceof Int32Array ||
    values instanceof Uint8Array ||
    values instanceof Uint16Array;
  if (!ok) fail('DTYPE', argument, 'expected a Float32Array, Int32Array, Uint8Array or Uint16Array');
}

/**
 * A Packing from packMask: its positions must lie inside its [R, T] (a position outside would be read
 * as undefined, i.e. 0, by pack and written past the padded array by unpack).
 */
function checkPacking(packing: unknown): [number, number] {
  const p = packing as Partial<Packing> | null;
  if (typeof p !== 'object' || p === null || !(p.positions instanceof Int32Array))
    fail('DTYPE', 'packing', 'expected the { responseOffsets, positions, shape } packMask returns');
  const [r, t] = checkPaddedShape(p.shape, 'packing.shape');
  const n = r * t;
  const pos = p.positions;
  for (let i = 0; i < pos.length; i++) {
    if (pos[i] < 0 || pos[i] >= n)
      fail('RANGE', 'packing', `expected positions in [0, ${n}) (its R·T), got positions[${i}] = ${pos[i]}`);
  }
  return [r, t];
}
