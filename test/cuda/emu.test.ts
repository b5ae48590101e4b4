/**
 * The CUDA emulator's self-test (tools/cuda-emu/selftest.cu, built by scripts/build-emu.mjs beside the
 * emulator addon): before test/cuda/ops.test.ts trusts results computed by the emulator, its warp
 * shuffles, barriers, race probe, failure reports, WMMA, and the PTX stand-ins (mma.sync m16n8k8
 * fragments, cp.async, ballot, dynamic shared memory, wgmma's descriptor layouts, fragments and pipeline
 * checks, mbarrier phases, TMA boxes and a TMA → wgmma pipeline, thread-block clusters) are checked
 * against CUDA's definitions.
 * Runs in the vitest project "cuda-emu" only.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

const exe = `${ROOT}build/emu/emu_selftest`;
const built = existsSync(exe);
if (!built)
  console.warn(`test/cuda: emulator self-test skipped: ${exe} not built (node scripts/build-emu.mjs)`);

describe.skipIf(!built)('CUDA emulator self-test', () => {
  it('every check passes: shuffles, barriers, race probe, reported failures, WMMA and mma.sync tf32, cp.async, wgmma, mbarrier and TMA, clusters', () => {
    const r = spawnSync(exe, { encoding: 'utf8', timeout: 60_000 });
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('ok ') || l.startsWith('FAIL '));
    expect(lines.length).toBeGreaterThanOrEqual(69);
    expect(lines.filter((l) => l.startsWith('FAIL '))).toEqual([]);
    expect(r.status).toBe(0);
  });
});
