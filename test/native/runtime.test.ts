/**
 * The native device runtime's job thread (native/runtime/jobs.h), which both native backends share,
 * tested as plain C++ without Node or a device: test/native/runtime_test.cc is compiled with the
 * system's C++ compiler and run. Call order, the sticky error of fire-and-forget jobs, out-of-memory,
 * and the close sequence (queued jobs run, then the device's resources are released, once).
 */
import { describe, it } from 'vitest';
import { compileAndRun, hasCompiler } from './cxx.js';

if (!hasCompiler) console.warn('test/native/runtime: skipped: no C++ compiler to build the runtime test');

describe.skipIf(!hasCompiler)('native device runtime (C++, no Node)', () => {
  it('jobs run in call order on one thread; fire-and-forget failures are sticky; close drains, then releases', () => {
    compileAndRun(
      'runtime_test',
      ['native/runtime/jobs.cc', 'test/native/runtime_test.cc'],
      ['-O1', '-pthread'],
    );
  });
});
