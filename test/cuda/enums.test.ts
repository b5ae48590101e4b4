/**
 * One name table per enum across the native boundary (issue 12, "The native boundary, typed"): the
 * C++ tables native/addon.cc converts strings with (its enums()), the TypeScript lists the API
 * validates against, and the WGSL constants the webgpu kernels switch on agree name for name and
 * code for code.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ESTIMATORS,
  REWEIGHT_MODES,
  SCALE_KINDS,
  SINGLETON_POLICIES,
  STD_KINDS,
  THR_PRECISIONS,
} from '../../src/backends/backend.js';
import { loadNativeAddon, type NativeEnums } from '../../src/backends/cuda/native.js';
import { ESTIMATOR_CODE, SCALE_CODE, SINGLETON_CODE } from '../../src/backends/webgpu/advantages.js';

function nativeEnums(): NativeEnums | string {
  try {
    const addon = loadNativeAddon();
    return addon.enums ? addon.enums() : `the addon was built without CUDA: ${addon.buildInfo().reason}`;
  } catch (e) {
    return (e as Error).message;
  }
}
const enums = nativeEnums();
const reason = typeof enums === 'string' ? enums : undefined;
if (reason) console.warn(`native enum tables not checked: ${reason}`);

describe('enum tables agree across TypeScript, C++ and WGSL', () => {
  it.skipIf(reason !== undefined)('C++ tables = the TypeScript lists, in order', () => {
    const e = enums as NativeEnums;
    expect(e.estimator).toEqual([...ESTIMATORS]);
    expect(e.stdKind).toEqual([...STD_KINDS]);
    expect(e.scaleKind).toEqual([...SCALE_KINDS]);
    expect(e.singleton).toEqual([...SINGLETON_POLICIES]);
    expect(e.thrPrecision).toEqual([...THR_PRECISIONS]);
    expect(e.reweightMode).toEqual([...REWEIGHT_MODES]);
  });

  it('WGSL constants = the webgpu codes = the list positions', () => {
    const wgsl = readFileSync(new URL('../../shaders/advantages.wgsl', import.meta.url), 'utf8');
    const constant = (name: string) => {
      const m = new RegExp(`const ${name}: u32 = (\\d+)u;`).exec(wgsl);
      expect(m, `shaders/advantages.wgsl defines ${name}`).not.toBeNull();
      return Number(m![1]);
    };
    const wgslNames: Record<string, string> = {
      EST_GRPO: 'grpo',
      EST_DR_GRPO: 'dr_grpo',
      EST_RLOO: 'rloo',
      EST_OPO: 'opo',
      EST_PASSK: 'grpo_passk',
      EST_GPG: 'gpg',
      EST_RPP: 'reinforce_pp_baseline',
    };
    expect(Object.values(wgslNames).sort()).toEqual([...ESTIMATORS].sort());
    for (const [c, name] of Object.entries(wgslNames)) {
      const i = ESTIMATORS.indexOf(name as (typeof ESTIMATORS)[number]);
      expect(constant(c), c).toBe(i);
      expect(ESTIMATOR_CODE[name as (typeof ESTIMATORS)[number]], name).toBe(i);
    }
    expect(constant('SCALE_BATCH')).toBe(SCALE_KINDS.indexOf('batch'));
    expect(constant('SCALE_NONE')).toBe(SCALE_KINDS.indexOf('none'));
    expect(constant('SINGLE_ZERO')).toBe(SINGLETON_POLICIES.indexOf('zero'));
    for (const k of SCALE_KINDS) expect(SCALE_CODE[k]).toBe(SCALE_KINDS.indexOf(k));
    for (const k of SINGLETON_POLICIES) expect(SINGLETON_CODE[k]).toBe(SINGLETON_POLICIES.indexOf(k));
  });
});
