/**
 * The native cpu kernels' exponentials (native/cpu/simd.h: exp2_neg5, the logprobs forward's; exp2_neg,
 * the LM head's) against exp2 in f64 over every 64th f32 argument, on both builds
 * (AVX2 + FMA + F16C where this CPU has them, and the portable one): test/native/exp2_test.cc, plain
 * C++, states the bounds simd.h promises.
 */
import { describe, it } from 'vitest';
import { compileAndRun, hasCompiler } from './cxx.js';

if (!hasCompiler) console.warn('test/native/exp2: skipped: no C++ compiler to build the exponentials test');
const x64 = process.arch === 'x64';
if (!x64) console.warn(`test/native/exp2: the avx2 build skipped: ${process.arch} is not x86-64`);

describe.skipIf(!hasCompiler)('native cpu exponentials (C++, no Node)', () => {
  it.skipIf(!x64)('avx2 build: exp2_neg5 within 3.7u, exp2_neg within 2u, special values', () => {
    compileAndRun(
      'exp2_avx2',
      ['test/native/exp2_test.cc'],
      ['-O2', '-mavx2', '-mfma', '-mf16c', '-DGK_CPU_ISA=avx2'],
    );
  });
  it('portable build: exp2_neg5 within 4u (no FMA on SSE2), exp2_neg within 2u, special values', () => {
    compileAndRun('exp2_portable', ['test/native/exp2_test.cc'], ['-O2', '-DGK_CPU_ISA=portable']);
  });
});
