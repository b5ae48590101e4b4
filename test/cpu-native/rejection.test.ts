/**
 * rolloutRejection on the native cpu backend (native/cpu/rejection.cc), beyond the shared case table
 * (test/rejection.cases.test.ts runs it on the default kernels): the case table on the portable
 * kernels, and on each path the same bits with 1, 2 and 8 threads (8 > the cores here, through
 * cpuTuning.maxThreads) for every criterion, alone and all at once, on a batch of many items.
 */
import { afterAll, describe, it } from 'vitest';
import { expectSameBits } from '../cases/check.js';
import { ALL_KINDS, lengths, makeData, medianCriteria, REJECTION_CASES, runOn } from '../cases/rejection.js';
import { runCaseTable } from '../cases/runner.js';
import { type NativeCpu, openNativeCpu } from './helpers.js';

const THREADS = [1, 2, 8] as const;
const PATHS = ['avx2', 'portable'] as const;
const opened: Record<string, NativeCpu[]> = {};
for (const path of PATHS) {
  opened[path] = [];
  for (const t of THREADS) opened[path].push(await openNativeCpu(path, t));
}
afterAll(() => {
  for (const list of Object.values(opened)) for (const o of list) o.ctx?.dispose();
});

// The case table on the path test/rejection.cases.test.ts does not take (it opens the default, AVX2 here).
const portable = opened.portable[1];
if (portable.ctx)
  runCaseTable('rolloutRejection, portable kernels', REJECTION_CASES, [{ name: 'cpu', ctx: portable.ctx }]);

for (const path of PATHS) {
  const list = opened[path];
  const reason = list.find((o) => o.reason)?.reason;
  describe.skipIf(reason !== undefined)(
    `native cpu rolloutRejection, ${path} kernels${reason ? ` (skipped: ${reason})` : ''}`,
    () => {
      it('threads: 1, 2 and 8 give the same mask and stats bits, each criterion alone and all 11', async () => {
        // 200k tokens in 5000 responses of up to 80: more items than threads; NaN and ±Inf under the mask.
        const d = makeData({ seed: 7100, lengths: lengths(7101, 5000, 80), maskP: 0.1, oddP: 0.001 });
        const all = medianCriteria(d, ALL_KINDS);
        for (const criteria of [...all.map((c) => [c]), all]) {
          const outs = [];
          for (const o of list) outs.push(await runOn(o.ctx!, d, { criteria }));
          for (let k = 1; k < outs.length; k++)
            for (const key of ['mask', 'stats'] as const)
              expectSameBits(
                outs[k][key].data,
                outs[0][key].data,
                `${key}, ${criteria.length} criteria, ${THREADS[k]} threads vs 1`,
              );
        }
      });
    },
  );
}
