/**
 * A small stand-in for the shared case-table runner (test/cases/runner.ts and check.ts, being built on
 * another branch): the same shapes (RefCase, SelfCase, runCaseTable, openBackends, lazy), so that
 * test/cases/policy.ts folds into the shared structure by changing its imports and deleting this file.
 *
 * A case is defined once with its float64 reference and run on every backend that opens (cpu always;
 * webgpu when an adapter is found, required when env CI is set; cuda when its context opens, on a GPU
 * or the CPU emulator of the vitest project "cuda-emu"). Every run poisons the outputs first, so an
 * element no kernel wrote is reported by index. The rule for every element i:
 *
 *   |got_i − want_i| ≤ atol + rtol·|want_i| + crtol·scale_i
 *
 * NaN, +Inf and −Inf must match the reference's class exactly. Env GK_CASES_MEASURE=1 prints the worst
 * element of every output as a multiple of its tolerance (what the tolerance comments quote).
 */
import { describe, expect, it } from 'vitest';
import { type Context, createContext } from '../../src/context.js';
import { POISON_I32, setOutputPoison } from '../../src/debug.js';
import type { DType, HostArray } from '../../src/dtypes.js';
import type { BackendName } from '../../src/tensor.js';
import { probeGpu } from '../cuda/helpers.js';
import { POISON_F32 } from '../util/compare.js';

export type { BackendName };

export interface Tolerance {
  atol: number;
  rtol: number;
  /** Relative to the element's scale (the reference's `scale`). */
  crtol?: number;
}
export const EXACT: Tolerance = { atol: 0, rtol: 0 };

/** One output of a backend, as read back. */
export interface Out {
  dtype: DType;
  data: HostArray;
}
export type Outputs = Record<string, Out>;
export interface Want {
  values: ArrayLike<number>;
  scale?: ArrayLike<number>;
}

export interface RefCase {
  kind: 'reference';
  name: string;
  tol: Readonly<Record<string, Tolerance>>;
  skip?: Partial<Record<BackendName, string>>;
  fails?: Partial<Record<BackendName, string>>;
  run(ctx: Context): Promise<Outputs>;
  want(): Record<string, Want>;
  check?(got: Record<string, Float64Array>, raw: Outputs): void;
}
export interface SelfCase {
  kind: 'self';
  name: string;
  skip?: Partial<Record<BackendName, string>>;
  fails?: Partial<Record<BackendName, string>>;
  run(ctx: Context): Promise<string[]>;
}
export type Case = RefCase | SelfCase;

export interface OpenBackend {
  name: BackendName;
  ctx?: Context;
  reason?: string;
}

export async function openBackends(names: readonly BackendName[]): Promise<OpenBackend[]> {
  const out: OpenBackend[] = [];
  for (const name of names) {
    if (name === 'cuda') {
      const p = await probeGpu();
      out.push({ name, ctx: p.ctx, reason: p.reason });
      continue;
    }
    try {
      out.push({ name, ctx: await createContext({ backend: name }) });
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      console.warn(`test/cases: ${name} cases skipped: ${reason}`);
      out.push({ name, reason });
    }
  }
  return out;
}

function numClass(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Number.POSITIVE_INFINITY) return '+Inf';
  if (x === Number.NEGATIVE_INFINITY) return '-Inf';
  return 'finite';
}

/** Problems (class mismatches, elements past their bound; at most 5 each) and the worst ratio. */
export function compareElements(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: Tolerance,
  scale?: ArrayLike<number>,
): { problems: string[]; worst: number } {
  const problems: string[] = [];
  if (got.length !== want.length)
    return { problems: [`length ${got.length}, expected ${want.length}`], worst: 0 };
  let worst = 0;
  let classes = 0;
  let over = 0;
  for (let i = 0; i < want.length; i++) {
    const a = got[i];
    const b = want[i];
    if (numClass(a) !== numClass(b)) {
      if (classes++ < 5) problems.push(`[${i}] got ${a} (${numClass(a)}), expected ${b} (${numClass(b)})`);
      continue;
    }
    if (!Number.isFinite(b)) continue;
    const err = Math.abs(a - b);
    if (err === 0) continue;
    const bound = tol.atol + tol.rtol * Math.abs(b) + (scale && tol.crtol ? tol.crtol * scale[i] : 0);
    const ratio = bound > 0 ? err / bound : Number.POSITIVE_INFINITY;
    worst = Math.max(worst, ratio);
    if (ratio > 1 && over++ < 5)
      problems.push(
        `[${i}] got ${a}, expected ${b}: |err| ${err.toExponential(3)} > ${bound.toExponential(3)}`,
      );
  }
  if (classes > 5) problems.push(`… ${classes} class mismatches in all`);
  if (over > 5) problems.push(`… ${over} elements past their tolerance in all`);
  return { problems, worst };
}

function poisonOf(dtype: DType): number {
  if (dtype === 'f32') return Math.fround(POISON_F32);
  if (dtype === 'i32') return POISON_I32;
  if (dtype === 'u8') return 0xab;
  return 0x7e01;
}

const measure = process.env.GK_CASES_MEASURE === '1';
const wants = new WeakMap<RefCase, Record<string, Want>>();

async function runReference(c: RefCase, ctx: Context, backend: BackendName): Promise<void> {
  setOutputPoison(POISON_F32);
  let raw: Outputs;
  try {
    raw = await c.run(ctx);
  } finally {
    setOutputPoison(undefined);
  }
  let want = wants.get(c);
  if (want === undefined) {
    want = c.want();
    wants.set(c, want);
  }
  expect(Object.keys(raw).sort(), 'outputs').toEqual(Object.keys(want).sort());
  const got: Record<string, Float64Array> = {};
  for (const [k, o] of Object.entries(raw)) {
    const p = poisonOf(o.dtype);
    const unwritten: number[] = [];
    for (let i = 0; i < o.data.length && unwritten.length < 5; i++) if (o.data[i] === p) unwritten.push(i);
    expect(unwritten, `${k}: elements never written (still poison)`).toEqual([]);
    got[k] = Float64Array.from(o.data as ArrayLike<number>);
    const tol = c.tol[k];
    expect(tol, `a tolerance for output ${k}`).toBeDefined();
    const m = compareElements(got[k], want[k].values, tol, want[k].scale);
    if (measure)
      console.log(`[measure] ${backend} | ${c.name} | ${k} | worst ${m.worst.toPrecision(3)}× tol`);
    expect(m.problems, `${k} (${backend}): worst ${m.worst.toPrecision(3)}× its tolerance`).toEqual([]);
  }
  c.check?.(got, raw);
}

/** Registers `describe(<title> on <backend>)` with one `it` per case. */
export function runCaseTable(title: string, cases: readonly Case[], backends: readonly OpenBackend[]): void {
  const names = new Set<string>();
  for (const c of cases) {
    expect(names.has(c.name), `duplicate case name ${c.name}`).toBe(false);
    names.add(c.name);
  }
  for (const b of backends) {
    const heading = b.ctx ? `${title} on ${b.name}` : `${title} on ${b.name} (skipped: ${b.reason})`;
    describe.skipIf(b.ctx === undefined)(heading, () => {
      for (const c of cases) {
        const why = c.skip?.[b.name];
        if (why !== undefined) {
          it.skip(`${c.name} (not on ${b.name}: ${why})`, () => {});
          continue;
        }
        const defect = c.fails?.[b.name];
        const test = defect === undefined ? it : it.fails;
        test(defect === undefined ? c.name : `${c.name} (fails on ${b.name}: ${defect})`, async () => {
          if (c.kind === 'reference') await runReference(c, b.ctx!, b.name);
          else expect(await c.run(b.ctx!), `${c.name} on ${b.name}`).toEqual([]);
        });
      }
    });
  }
}

/** A value computed on first use. */
export function lazy<T>(make: () => T): () => T {
  let v: T | undefined;
  let done = false;
  return () => {
    if (!done) {
      v = make();
      done = true;
    }
    return v as T;
  };
}

/** With env CI set, a missing WebGPU adapter fails the run instead of skipping. */
export function requireWebGpu(backends: readonly OpenBackend[]): void {
  const w = backends.find((b) => b.name === 'webgpu');
  it.skipIf(w === undefined || w.ctx !== undefined || !process.env.CI)(
    'a WebGPU adapter is present (required when env CI is set)',
    () => {
      expect.fail(`CI is set but the webgpu backend could not start: ${w?.reason}`);
    },
  );
}
