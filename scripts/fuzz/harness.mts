/**
 * The differential harness of scripts/fuzz/differential.mts: runs one op call on the js backend (the
 * float64 reference) and on the backend under test, and compares what came back, with the case
 * tables' own comparison (test/cases/check.ts compareElements) and tolerances.
 *
 * - Both resolve: the same outputs, each element within its tolerance (|got − want| ≤ atol +
 *   rtol·|want| + crtol·scale + stol·terms, NaN/±Inf by class).
 * - One rejects: a failure, whatever the other did. Both reject: each with a GrpoKernelsError of the
 *   same code and argument (docs/DESIGN.md, "Errors"); an error of another class is a failure.
 * - After the backend's call, ctx.synchronize(): an error that only surfaces then (a device flag the
 *   call left behind) is a failure of that call.
 * - Session.same, for the invariance family: two calls on the backend alone, bit for bit where the
 *   family pairs their elements.
 */
import {
  type Context,
  decodeFloats,
  GrpoKernelsError,
  type HostArray,
  type Tensor,
} from '../../src/index.js';
import { compareElements, type Tolerance } from '../../test/cases/check.js';
import type { Rand } from './gen.mjs';

export type { Tolerance };

/** Decoded outputs of one call, by name. */
export type Values = Record<string, Float64Array>;

/** How one output is compared: its table entry and, where the entry has crtol or stol, its scales. */
export interface Expect {
  tol: Tolerance;
  scale?: ArrayLike<number>;
  terms?: ArrayLike<number>;
}

/** Registers a tensor (or anything disposable) to be freed once the call has been read back. */
export type Keep = <T extends { dispose(): void } | undefined>(t: T) => T;

/** One op call, defined once and run on both contexts. */
export interface OpSpec {
  /** The op's name in failure lines (an API name, or a chain such as 'linearLogprobStates+merge'). */
  op: string;
  /** The case's parameters, short; the seed reproduces it. */
  desc: string;
  /** Calls the op on `ctx` and reads every output back (decoded to float64). */
  run(ctx: Context, keep: Keep): Promise<Values>;
  /** Each output's tolerance and scale, given js's outputs. */
  expect(js: Values): Record<string, Expect>;
}

/** Reads a tensor back as float64 values (f16/bf16 bits decoded exactly) and frees it. */
export async function readValues(t: Tensor): Promise<Float64Array> {
  try {
    const data: HostArray = await t.read();
    if (t.dtype === 'f16' || t.dtype === 'bf16') return decodeFloats(t.dtype, data as Uint16Array);
    return Float64Array.from(data);
  } finally {
    t.dispose();
  }
}

function describeError(e: unknown): string {
  if (e instanceof GrpoKernelsError) return `${e.code} (${e.message.slice(0, 140)})`;
  if (e instanceof Error) return `untyped ${e.name}: ${e.message.slice(0, 200)}`;
  return `non-Error thrown: ${String(e).slice(0, 200)}`;
}

type Outcome = { ok: Values } | { error: unknown };

/** A Keep and what frees everything it kept (once the call's outputs have been read back). */
function keeper(): { keep: Keep; release(): void } {
  const held: { dispose(): void }[] = [];
  return {
    keep: (t) => {
      if (t !== undefined) held.push(t);
      return t;
    },
    release: () => {
      for (const t of held) t.dispose();
    },
  };
}

async function attempt(ctx: Context, spec: OpSpec): Promise<Outcome> {
  const { keep, release } = keeper();
  try {
    return { ok: await spec.run(ctx, keep) };
  } catch (error) {
    return { error };
  } finally {
    release();
  }
}

export interface FamilyCount {
  cases: number;
  /** Op calls compared (a case may chain several). */
  ops: number;
  /** Calls that both backends rejected, with the same code. */
  rejected: number;
  /** Failure lines (one per output, outcome or error that differs). */
  failures: number;
}

/** Runs the comparisons, counts them, and prints one line per failure. */
export class Session {
  readonly js: Context;
  readonly backend: Context;
  readonly counts = new Map<string, FamilyCount>();
  failures = 0;
  #family = '';
  #seed = 0;

  /** Also print a line per call both backends rejected alike (to see what the fuzzer reaches). */
  readonly verbose: boolean;

  constructor(js: Context, backend: Context, verbose = false) {
    this.js = js;
    this.backend = backend;
    this.verbose = verbose;
  }

  /** The case now running (for failure lines). */
  begin(family: string, seed: number): void {
    this.#family = family;
    this.#seed = seed;
    this.#count().cases++;
  }

  #count(): FamilyCount {
    let c = this.counts.get(this.#family);
    if (c === undefined) {
      c = { cases: 0, ops: 0, rejected: 0, failures: 0 };
      this.counts.set(this.#family, c);
    }
    return c;
  }

  /** Prints a failure of the current case: one line, with what reruns it. */
  fail(op: string, desc: string, what: string): void {
    this.failures++;
    this.#count().failures++;
    const rerun = `--backend ${this.backend.backend} --families ${this.#family} --seed ${this.#seed} --seeds 1`;
    console.log(`FAIL ${this.#family}/${op} seed=${this.#seed} ${desc}: ${what} [rerun: ${rerun}]`);
  }

  /**
   * Runs `spec` on js, then on the backend, and compares. Returns js's outputs when js resolved (what
   * a chained op takes as its inputs on both backends), else undefined.
   */
  async compare(spec: OpSpec): Promise<Values | undefined> {
    this.#count().ops++;
    const a = await attempt(this.js, spec);
    const b = await attempt(this.backend, spec);
    const name = this.backend.backend;
    try {
      await this.backend.synchronize();
    } catch (e) {
      this.fail(spec.op, spec.desc, `an error surfaced at synchronize() after the call: ${describeError(e)}`);
    }
    if ('error' in a || 'error' in b) {
      this.#compareErrors(spec, a, b, name);
      return 'ok' in a ? a.ok : undefined;
    }
    let want: Record<string, Expect>;
    try {
      want = spec.expect(a.ok);
    } catch (e) {
      this.fail(spec.op, spec.desc, `tool error computing the scales: ${(e as Error).stack ?? e}`);
      return a.ok;
    }
    const ka = Object.keys(a.ok).sort().join(',');
    const kb = Object.keys(b.ok).sort().join(',');
    if (ka !== kb) {
      this.fail(spec.op, spec.desc, `outputs differ: js {${ka}}, ${name} {${kb}}`);
      return a.ok;
    }
    for (const k of Object.keys(a.ok)) {
      const e = want[k];
      if (e === undefined) {
        this.fail(spec.op, spec.desc, `tool error: no tolerance for output ${k}`);
        continue;
      }
      const m = compareElements(b.ok[k], a.ok[k], e.tol, e.scale, e.terms); // non-finite scales never widen a bound
      if (m.problems.length > 0)
        this.fail(
          spec.op,
          spec.desc,
          `${k} (${name} vs js; worst ${m.worst.toPrecision(3)}× tol): ${m.problems.slice(0, 3).join('; ')}`,
        );
    }
    return a.ok;
  }

  /**
   * An invariance check on the backend alone (no js): `spec.run` makes two calls whose outputs must
   * hold the same bits where `pairs` matches them (a row computed inside two different batches, at
   * other positions, on other thread counts). Values are compared with Object.is on their exact
   * decoded values: −0 and +0 differ, any NaN matches any NaN (payloads are not compared). A call that
   * rejects is a failure: the family gives only valid inputs.
   */
  async same(spec: SameSpec): Promise<void> {
    this.#count().ops++;
    const { keep, release } = keeper();
    let out: Record<string, Paired>;
    try {
      out = await spec.run(keep);
      await this.backend.synchronize();
    } catch (e) {
      this.fail(spec.op, spec.desc, `rejected valid input: ${describeError(e)}`);
      return;
    } finally {
      release();
    }
    for (const [k, { whole, part, pairs }] of Object.entries(out)) {
      if (pairs.length !== part.length) {
        this.fail(spec.op, spec.desc, `tool error: ${k} has ${part.length} elements, ${pairs.length} pairs`);
        continue;
      }
      let differ = 0;
      let first = -1;
      for (let i = 0; i < part.length; i++) {
        const j = pairs[i];
        if (j < 0) continue;
        if (j >= whole.length || !Object.is(part[i], whole[j])) {
          differ++;
          if (first < 0) first = i;
        }
      }
      if (differ > 0)
        this.fail(
          spec.op,
          spec.desc,
          `${k}: ${differ} element(s) differ between the two calls; first: part[${first}] = ${part[first]}, whole[${pairs[first]}] = ${whole[pairs[first]]}`,
        );
    }
  }

  #compareErrors(spec: OpSpec, a: Outcome, b: Outcome, name: string): void {
    const ea = 'error' in a ? a.error : undefined;
    const problem = errorMismatch(ea, 'error' in b ? b.error : undefined, name);
    if (problem !== undefined) {
      this.fail(spec.op, spec.desc, problem);
      return;
    }
    this.#count().rejected++;
    if (this.verbose)
      console.log(`rejected alike ${this.#family}/${spec.op} seed=${this.#seed}: ${describeError(ea)}`);
  }
}

/** What is wrong when one side or both rejected (undefined: the same typed error on both). */
function errorMismatch(ea: unknown, eb: unknown, name: string): string | undefined {
  if (ea !== undefined && !(ea instanceof GrpoKernelsError))
    return `js threw a non-GrpoKernelsError: ${describeError(ea)}`;
  if (eb !== undefined && !(eb instanceof GrpoKernelsError))
    return `${name} threw a non-GrpoKernelsError: ${describeError(eb)}`;
  if (eb === undefined) return `js rejects ${describeError(ea)}, ${name} resolves`;
  if (ea === undefined) return `${name} rejects ${describeError(eb)}, js resolves`;
  const ga = ea as GrpoKernelsError;
  const gb = eb as GrpoKernelsError;
  if (ga.code === gb.code && ga.argument === gb.argument) return undefined;
  return `errors differ: js ${describeError(ga)} [argument ${ga.argument}], ${name} ${describeError(gb)} [argument ${gb.argument}]`;
}

/** One output of an invariance check: both calls' values, and for each element of `part` the index
 * of the same element in `whole` (−1: not shared, not compared). */
export interface Paired {
  whole: Float64Array;
  part: Float64Array;
  pairs: Int32Array;
}

/** Two calls on the backend that must agree bit for bit where paired (Session.same). */
export interface SameSpec {
  op: string;
  desc: string;
  run(keep: Keep): Promise<Record<string, Paired>>;
}

/** A family of ops: one case per seed, from its own random stream (gen.mts Rand). */
export interface Family {
  name: string;
  /** What the family calls, for the help text. */
  ops: string;
  run(r: Rand, s: Session): Promise<void>;
}
