/**
 * One name table per enum across the native boundary (issue 12, "The native boundary, typed"): the
 * C++ tables native/ops_*.cc convert strings with (native/addon.cc's enums()), the TypeScript lists
 * the API validates against, and the WGSL constants the webgpu kernels switch on agree name for name
 * and code for code.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  AGGREGATIONS,
  ESTIMATORS,
  KL_ESTIMATORS,
  NAN_REWARD_POLICIES,
  POLICY_LOSSES,
  REJECTION_LEVELS,
  REJECTION_MAX_CRITERIA,
  REJECTION_STATISTICS,
  REWEIGHT_MODES,
  ROLLOUT_LEVELS,
  ROLLOUT_MODES,
  SCALE_KINDS,
  SEQ_TOKEN_DIVISORS,
  SINGLETON_POLICIES,
  STD_KINDS,
  TERM_AGGREGATIONS,
  THR_PRECISIONS,
} from '../../src/backends/backend.js';
import { loadNativeAddon, type NativeEnums } from '../../src/backends/cuda/native.js';
import { ESTIMATOR_CODE, SCALE_CODE, SINGLETON_CODE } from '../../src/backends/webgpu/advantages.js';
import {
  AGGREGATION_CODE,
  KL_CODE,
  LEVEL_CODE,
  MODE_CODE,
  POLICY_LOSS_CODE,
} from '../../src/backends/webgpu/policy.js';
import { REJECTION_LEVEL_CODE, REJECTION_STATISTIC_CODE } from '../../src/backends/webgpu/rejection.js';

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
    expect(e.nanRewards).toEqual([...NAN_REWARD_POLICIES]);
    expect(e.thrPrecision).toEqual([...THR_PRECISIONS]);
    expect(e.reweightMode).toEqual([...REWEIGHT_MODES]);
    expect(e.policyLoss).toEqual([...POLICY_LOSSES]);
    expect(e.klEstimator).toEqual([...KL_ESTIMATORS]);
    expect(e.rolloutLevel).toEqual([...ROLLOUT_LEVELS]);
    expect(e.rolloutMode).toEqual([...ROLLOUT_MODES]);
    expect(e.aggregation).toEqual([...AGGREGATIONS]);
    expect(e.termAggregation).toEqual([...TERM_AGGREGATIONS]);
    expect(e.seqTokenDivisor).toEqual([...SEQ_TOKEN_DIVISORS]);
    expect(e.rejectionStatistic).toEqual([...REJECTION_STATISTICS]);
    expect(e.rejectionLevel).toEqual([...REJECTION_LEVELS]);
  });

  it('policy.wgsl constants = the webgpu codes = the list positions', () => {
    const wgsl = readFileSync(new URL('../../shaders/policy.wgsl', import.meta.url), 'utf8');
    const constant = (name: string) => {
      const m = new RegExp(`const ${name}: u32 = (\\d+)u;`).exec(wgsl);
      expect(m, `shaders/policy.wgsl defines ${name}`).not.toBeNull();
      return Number(m![1]);
    };
    const tables: [string, readonly string[], Record<string, number>, string[]][] = [
      [
        'LOSS_',
        POLICY_LOSSES,
        POLICY_LOSS_CODE,
        ['PPO', 'GSPO', 'CISPO', 'SAPO', 'REINFORCE', 'GMPO', 'VESPO'],
      ],
      ['KL_', KL_ESTIMATORS, KL_CODE, ['K1', 'ABS', 'K2', 'K3']],
      ['LEVEL_', ROLLOUT_LEVELS, LEVEL_CODE, ['TOKEN', 'SEQUENCE', 'GEOMETRIC']],
      ['MODE_', ROLLOUT_MODES, MODE_CODE, ['TRUNCATE', 'MASK', 'SEQUENCE_MASK']],
      [
        'AGG_',
        AGGREGATIONS,
        AGGREGATION_CODE,
        ['TOKEN_MEAN', 'TOKEN_SUM', 'SEQ_MEAN_TOKEN_SUM', 'SEQ_MEAN_TOKEN_MEAN', 'SEQ_MEAN_TOKEN_SUM_NORM'],
      ],
    ];
    for (const [prefix, list, codes, wgslNames] of tables) {
      expect(wgslNames.length).toBe(list.length);
      list.forEach((name, i) => {
        expect(
          wgslNames[i]
            .toLowerCase()
            .replace(/_/g, '-')
            .replace(/^k(\d)$/, 'k$1'),
          name,
        ).toBe(name.replace(/_/g, '-'));
        expect(constant(prefix + wgslNames[i]), `${prefix}${wgslNames[i]}`).toBe(i);
        expect(codes[name], name).toBe(i);
      });
    }
  });

  it('rejection.wgsl constants = the webgpu codes = the list positions', () => {
    const wgsl = readFileSync(new URL('../../shaders/rejection.wgsl', import.meta.url), 'utf8');
    const constant = (name: string) => {
      const m = new RegExp(`const ${name}: u32 = (\\d+)u;`).exec(wgsl);
      expect(m, `shaders/rejection.wgsl defines ${name}`).not.toBeNull();
      return Number(m![1]);
    };
    const tables: [string, readonly string[], Record<string, number>, string[]][] = [
      ['STAT_', REJECTION_STATISTICS, REJECTION_STATISTIC_CODE, ['K1', 'K2', 'K3']],
      ['LEVEL_', REJECTION_LEVELS, REJECTION_LEVEL_CODE, ['TOKEN', 'SEQ_SUM', 'SEQ_MEAN', 'SEQ_MAX']],
    ];
    for (const [prefix, list, codes, wgslNames] of tables) {
      expect(wgslNames.length).toBe(list.length);
      list.forEach((name, i) => {
        expect(wgslNames[i].toLowerCase().replace(/_/g, '-'), name).toBe(name);
        expect(constant(prefix + wgslNames[i]), `${prefix}${wgslNames[i]}`).toBe(i);
        expect(codes[name], name).toBe(i);
      });
    }
    expect(constant('MAX_CRITERIA')).toBe(REJECTION_MAX_CRITERIA);
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
