/**
 * Runs one op's case table (test/cases/<family>.ts) on every backend that is available, ggml's
 * test-backend-ops in miniature: a case is defined once, with its float64 reference, and each backend
 * is held to the same per-element tolerances (test/cases/tolerances.ts).
 *
 * Backends: js (the float64 TypeScript backend) always; cpu (the native SIMD kernels) when the addon
 * has them, else it falls back to js; webgpu when an adapter is found (lavapipe on CI; with env CI set, a missing
 * adapter fails the run, as test/webgpu/setup.ts does); cuda when its context opens (a GPU, or the CPU
 * emulator in the vitest project "cuda-emu"). The unit project runs js, cpu and webgpu
 * (test/<family>.cases.test.ts), the cuda-emu project cuda (test/cuda/ops-cases.test.ts). A backend
 * that cannot start is a skipped describe block whose name says why, and the reason is printed once.
 *
 * A case a backend is known to fail today names the defect (`fails`): it runs as it.fails, so it
 * passes while the defect is there and turns red once it is fixed, to be unmarked.
 *
 * Every case runs with poisoned outputs (src/debug.ts): an element no kernel wrote is reported by
 * index. The reference of a case is computed once per test file and shared by the backends.
 *
 * Env GK_CASES_MEASURE=1 prints, per case and output, the worst error as a multiple of its tolerance
 * and the largest |err|, |err|/|want| and |err|/scale: what the tolerance comments quote as measured.
 */
import { describe, expect, it } from 'vitest';
import { type Context, createContext } from '../../src/context.js';
import { setOutputPoison } from '../../src/debug.js';
import type { DType, FloatDType, HostArray } from '../../src/dtypes.js';
import type { BackendName } from '../../src/tensor.js';
import { probeGpu } from '../cuda/helpers.js';
import { decodeLogits } from '../fixtures/logprobs.js';
import { POISON_F32 } from '../util/compare.js';
import { compareElements, expectNoPoison, expectWithin, type Tolerance } from './check.js';

export type { BackendName };

/** One output of a backend, as read back (f16/bf16 as raw bits). */
export interface Out {
  dtype: DType;
  data: HostArray;
}
export type Outputs = Record<string, Out>;

/** The float64 reference of one output. */
export interface Want {
  values: ArrayLike<number>;
  /** Per element, the magnitude the output was computed from (the tolerance's crtol term). */
  scale?: ArrayLike<number>;
  /** Per element, its sum with every term made positive (the tolerance's stol term). */
  terms?: ArrayLike<number>;
}

/** A case compared against its float64 reference. */
export interface RefCase {
  kind: 'reference';
  name: string;
  /** Tolerance of each output (an entry of test/cases/tolerances.ts). */
  tol: Readonly<Record<string, Tolerance>>;
  /** Backends that do not run the case, with the reason (the test is reported skipped with it). */
  skip?: Partial<Record<BackendName, string>>;
  /** Backends known to fail the case today, with the defect: run as it.fails, so a fix shows. */
  fails?: Partial<Record<BackendName, string>>;
  /** Runs the op on `ctx` and reads every output back. */
  run(ctx: Context): Promise<Outputs>;
  /** The reference of every output `run` returns (called once, then cached). */
  want(): Record<string, Want>;
  /** Exact properties checked after the tolerances (ignored rows are 0, shapes, ...), decoded values. */
  check?(got: Record<string, Float64Array>, raw: Outputs): void;
}

/** A case checked by itself (bit equality across batches, ...): returns what went wrong. */
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
  /** Why the backend is not available. */
  reason?: string;
}

async function open(name: BackendName): Promise<OpenBackend> {
  if (name === 'cuda') {
    const p = await probeGpu(); // prints its reason once
    return { name, ctx: p.ctx, reason: p.reason };
  }
  try {
    return { name, ctx: await createContext({ backend: name }) };
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    console.warn(`test/cases: ${name} cases skipped: ${reason}`);
    return { name, reason };
  }
}

/** Opens the named backends (once per test file). */
export async function openBackends(names: readonly BackendName[]): Promise<OpenBackend[]> {
  const out: OpenBackend[] = [];
  for (const n of names) out.push(await open(n));
  return out;
}

/** f32 values as f64, f16/bf16 bits decoded exactly (the tests' own decoder), integers as they are. */
export function decoded(o: Out): Float64Array {
  if (o.dtype === 'f16' || o.dtype === 'bf16')
    return decodeLogits(o.dtype as FloatDType, o.data as Uint16Array);
  return Float64Array.from(o.data as ArrayLike<number>);
}

const measure = process.env.GK_CASES_MEASURE === '1';

/** Cached references, per case object. */
const wants = new WeakMap<RefCase, Record<string, Want>>();
function wantOf(c: RefCase): Record<string, Want> {
  let w = wants.get(c);
  if (w === undefined) {
    w = c.want();
    wants.set(c, w);
  }
  return w;
}

async function runReference(c: RefCase, ctx: Context, backend: BackendName): Promise<void> {
  setOutputPoison(POISON_F32);
  let raw: Outputs;
  try {
    raw = await c.run(ctx);
  } finally {
    setOutputPoison(undefined);
  }
  const want = wantOf(c);
  expect(Object.keys(raw).sort(), 'outputs').toEqual(Object.keys(want).sort());
  const got: Record<string, Float64Array> = {};
  for (const [k, o] of Object.entries(raw)) {
    expectNoPoison(o.data, o.dtype, k);
    const tol = c.tol[k];
    expect(tol, `a tolerance for output ${k}`).toBeDefined();
    got[k] = decoded(o);
    const w = want[k];
    if (measure) report(c.name, backend, k, got[k], w, tol);
    expectWithin(got[k], w.values, tol, `${k} (${backend})`, w.scale, w.terms);
  }
  c.check?.(got, raw);
}

function report(name: string, backend: string, k: string, got: Float64Array, w: Want, tol: Tolerance) {
  let abs = 0;
  let rel = 0;
  let cond = 0;
  let sums = 0;
  for (let i = 0; i < got.length; i++) {
    const b = w.values[i];
    const e = Math.abs(got[i] - b);
    if (!Number.isFinite(e)) continue;
    abs = Math.max(abs, e);
    if (b !== 0) rel = Math.max(rel, e / Math.abs(b));
    if (w.scale && w.scale[i] > 0) cond = Math.max(cond, e / w.scale[i]);
    if (w.terms && w.terms[i] > 0) sums = Math.max(sums, e / w.terms[i]);
  }
  const m = compareElements(got, w.values, tol, w.scale, w.terms);
  console.log(
    `[measure] ${backend} | ${name} | ${k} | worst ${m.worst.toPrecision(3)}× tol | abs ${abs.toExponential(2)} | rel ${rel.toExponential(2)} | /scale ${cond.toExponential(2)}${w.terms ? ` | /terms ${sums.toExponential(2)}` : ''}`,
  );
}

/**
 * Registers the tests of a table on each backend: `describe(<title> on <backend>)` holding one `it`
 * per case. A case skipped on a backend says why in its name.
 */
export function runCaseTable(title: string, cases: readonly Case[], backends: readonly OpenBackend[]): void {
  const names = new Set<string>();
  for (const c of cases) {
    if (names.has(c.name)) throw new Error(`${title}: two cases are named ${c.name}`);
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
          const ctx = b.ctx!;
          if (c.kind === 'reference') await runReference(c, ctx, b.name);
          else expect(await c.run(ctx), `${c.name} on ${b.name}`).toEqual([]);
        });
      }
    });
  }
}

/** A value computed on first use (large inputs are built only when a case runs). */
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

/** With env CI set, a missing WebGPU adapter fails the run instead of skipping the webgpu cases. */
export function requireWebGpu(backends: readonly OpenBackend[]): void {
  const w = backends.find((b) => b.name === 'webgpu');
  it.skipIf(w === undefined || w.ctx !== undefined || !process.env.CI)(
    'a WebGPU adapter is present (required when env CI is set)',
    () => {
      expect.fail(`CI is set but the webgpu backend could not start: ${w?.reason}`);
    },
  );
}
