/**
 * Which native addon loads, and load safety (docs/install.md): GRPO_KERNELS_NATIVE_PATH, the prebuilt
 * for this platform, the local build, in that order; every file is first loaded in a child process,
 * so a file that cannot load here, or that crashes while loading, is a BACKEND_UNAVAILABLE reason and
 * never takes this process down. And the readers scripts/prebuild.mjs checks the prebuilt with.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { compareVersions, dynamicNeeds, fatbinEntries } from '../scripts/lib/native-check.mjs';
import { loadedNativeAddon, loadNativeAddon, nativeAddonCandidates } from '../src/backends/addon.js';
import { GrpoKernelsError } from '../src/errors.js';
import { CUDA_ADDON } from './cuda/helpers.js';

const saved = { path: process.env.GRPO_KERNELS_NATIVE_PATH, only: process.env.GRPO_KERNELS_NATIVE };
const dir = mkdtempSync(join(tmpdir(), 'grpo-addon-'));
afterEach(() => {
  for (const [k, v] of [
    ['GRPO_KERNELS_NATIVE_PATH', saved.path],
    ['GRPO_KERNELS_NATIVE', saved.only],
  ] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function loadError(backend: 'cuda' | 'cpu' = 'cpu'): GrpoKernelsError {
  try {
    loadNativeAddon(backend);
  } catch (e) {
    if (e instanceof GrpoKernelsError) return e;
    throw e;
  }
  throw new Error('the addon loaded');
}

const hasLocal = existsSync(CUDA_ADDON);
if (!hasLocal) console.warn(`addon loader: local-build cases skipped: ${CUDA_ADDON} not built`);
const localCuda =
  hasLocal &&
  spawnSync(process.execPath, [
    '-e',
    `process.exit(require(${JSON.stringify(CUDA_ADDON)}).buildInfo().cuda ? 0 : 1)`,
  ]).status === 0;
if (hasLocal && !localCuda)
  console.warn('addon loader: fat-binary case skipped: the local build has no CUDA');
const cxx = spawnSync('c++', ['--version']).status === 0;
if (!cxx) console.warn('addon loader: the crashing-library case skipped: no c++ compiler on PATH');

describe('which addon loads', () => {
  it('the order: the prebuilt for this platform, then the local build; the environment path alone', () => {
    delete process.env.GRPO_KERNELS_NATIVE_PATH;
    delete process.env.GRPO_KERNELS_NATIVE;
    const c = nativeAddonCandidates();
    expect(c.map((x) => x.source)).toEqual(['prebuilt', 'local']);
    expect(c[0].path).toMatch(
      new RegExp(`prebuilds/${process.platform}-${process.arch}/grpo_kernels_native\\.node$`),
    );
    expect(c[1].path).toMatch(/build\/Release\/grpo_kernels_native\.node$/);
    process.env.GRPO_KERNELS_NATIVE = 'local';
    expect(nativeAddonCandidates().map((x) => x.source)).toEqual(['local']);
    process.env.GRPO_KERNELS_NATIVE_PATH = '/somewhere/x.node';
    expect(nativeAddonCandidates()).toEqual([{ source: 'env', path: '/somewhere/x.node' }]);
  });

  it('no file at all: "native addon not built", naming each place looked', () => {
    process.env.GRPO_KERNELS_NATIVE = 'prebuilt';
    const e = loadError();
    expect(e.code).toBe('BACKEND_UNAVAILABLE');
    expect(e.message).toMatch(/^cpu backend: native addon not built: no prebuilt addon/);
  });

  it.skipIf(!hasLocal)('GRPO_KERNELS_NATIVE=local loads the local build and says so', () => {
    process.env.GRPO_KERNELS_NATIVE = 'local';
    expect(loadNativeAddon('cpu').buildInfo().cpu).toBe(true);
    expect(loadedNativeAddon()).toMatch(/^local build \(.*build\/Release\/grpo_kernels_native\.node\)$/);
  });
});

describe('load safety', () => {
  it('a file that is not an addon: "not loadable", with the loader\'s reason', () => {
    const bogus = join(dir, 'bogus.node');
    writeFileSync(bogus, 'not an ELF file\n');
    process.env.GRPO_KERNELS_NATIVE_PATH = bogus;
    const e = loadError('cuda');
    expect(e.code).toBe('BACKEND_UNAVAILABLE');
    expect(e.message).toMatch(
      /^cuda backend: native addon not loadable: env .*bogus\.node does not load here: .*(invalid ELF header|too short)/,
    );
  });

  it.skipIf(!cxx)('a library that crashes while loading costs a reason, not this process', () => {
    const src = join(dir, 'crash.cc');
    const lib = join(dir, 'crash.node');
    writeFileSync(
      src,
      '#include <cstdlib>\n__attribute__((constructor)) static void boom() { std::abort(); }\n',
    );
    const r = spawnSync('c++', ['-shared', '-fPIC', '-o', lib, src], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    process.env.GRPO_KERNELS_NATIVE_PATH = lib;
    const e = loadError();
    expect(e.message).toMatch(
      /crash\.node does not load here: loading it crashed a probe process \(SIGABRT\)/,
    );
  });
});

describe.skipIf(!hasLocal)('the prebuilt checks, on the local build', () => {
  it.skipIf(!localCuda)(
    'its fat binaries: sm_80 and sm_90 machine code and compute_90 PTX in every CUDA unit',
    () => {
      const gpu = fatbinEntries(CUDA_ADDON);
      expect(Object.keys(gpu).sort()).toEqual(['elf sm_80', 'elf sm_90', 'ptx compute_90']);
      expect(new Set(Object.values(gpu)).size).toBe(1);
    },
  );

  it('its needs: glibc symbols no newer than 2.36 (2.34 for the static-runtime build), no libcudart', () => {
    const needs = dynamicNeeds(CUDA_ADDON);
    expect(needs.needed).toContain('libc.so.6');
    expect(needs.needed.filter((n) => /cudart/.test(n))).toEqual([]);
    expect(compareVersions(needs.glibc, '2.36')).toBeLessThanOrEqual(0);
    if (!needs.needed.includes('libstdc++.so.6')) {
      expect(needs.glibcxx).toBe(false);
      expect(compareVersions(needs.glibc, '2.34')).toBeLessThanOrEqual(0);
    }
  });
});
