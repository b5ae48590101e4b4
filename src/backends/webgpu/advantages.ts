/// <reference types="@webgpu/types" />
/**
 * The advantages family on WebGPU: host side of shaders/advantages.wgsl (formulas, work split,
 * bytes and FLOPs are in that file's header).
 *
 * - advantages: a "group pass" writes everything for grpo/dr_grpo/rloo/opo/grpo_passk under scale
 *   'group'/'none'. It is `adv_small` (one invocation per group of ≤ SMALL_GROUP members, over all
 *   G) and `adv_group` (one workgroup per larger group, over a host-built list of them); either
 *   is skipped when it has no group. Batch quantities take three steps: group pass phase 1
 *   (per-group moment states) → `adv_merge` (one workgroup, fixed-order merge: batch std, gpg's
 *   α) → group pass phase 0. reinforce_pp_baseline: group pass (group values + length-weighted
 *   states) → `adv_merge` (whitening map) → `expand_tokens`. The u8 degenerate flags go through a
 *   u32 scratch and `pack_flags` (one invocation per output word, so no two workgroups write the
 *   same word).
 * - expandToTokens: `expand_tokens` (one invocation per token).
 * - whiten: `whiten_partial` (chunks of WG·16 elements) → `adv_merge` → `whiten_apply`.
 * All dispatches of an op go in one compute pass; scratch buffers are destroyed once it is
 * submitted (WebGPU frees them after the queued work).
 */
import { GrpoKernelsError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import type {
  AdvantagesArgs,
  AdvantagesResult,
  Estimator,
  ExpandToTokensArgs,
  ScaleKind,
  SingletonPolicy,
  WhitenArgs,
} from '../backend.js';
import { runWithScratch, type WebGpuKit } from './kit.js';
import { type Binding, Usage } from './runtime.js';
import type { EntrySpec, ModuleKey } from './shaders.js';
import { gpuStorage, outputTensor } from './storage.js';
import { uniformLayout } from './uniforms.js';

/** The uniform struct of shaders/advantages.wgsl (checked against the WGSL by infra.test.ts). */
export const ADVANTAGES_PARAMS = uniformLayout('advantages.wgsl', 'AdvParams', [
  ['num_groups', 'u32'],
  ['num_responses', 'u32'],
  ['count', 'u32'],
  ['estimator', 'u32'],
  ['std_sample', 'u32'],
  ['scale', 'u32'],
  ['singleton', 'u32'],
  ['phase', 'u32'],
  ['need_batch', 'u32'],
  ['mode', 'u32'],
  ['var_sample', 'u32'],
  ['var_clamp', 'u32'],
  ['keep_mean', 'u32'],
  ['has_mask', 'u32'],
  ['small_max', 'u32'],
  ['nan_skip', 'u32'],
  ['eps', 'f32'],
  ['mask_eps', 'f32'],
]);
const ZERO_PARAMS = {
  num_groups: 0,
  num_responses: 0,
  count: 0,
  estimator: 0,
  std_sample: 0,
  scale: 0,
  singleton: 0,
  phase: 0,
  need_batch: 0,
  mode: 0,
  var_sample: 0,
  var_clamp: 0,
  keep_mean: 0,
  has_mask: 0,
  small_max: 0,
  nan_skip: 0,
  eps: 0,
  mask_eps: 0,
};
type AdvParams = typeof ZERO_PARAMS;
function packValues(p: Partial<AdvParams>): AdvParams {
  return { ...ZERO_PARAMS, ...p };
}

/** The estimator codes of shaders/advantages.wgsl (EST_*; test/cuda/enums.test.ts checks them). */
export const ESTIMATOR_CODE: Record<Estimator, number> = {
  grpo: 0,
  dr_grpo: 1,
  rloo: 2,
  opo: 3,
  grpo_passk: 4,
  gpg: 5,
  reinforce_pp_baseline: 6,
};
export const SCALE_CODE: Record<ScaleKind, number> = { group: 0, batch: 1, none: 2 };
export const SINGLETON_CODE: Record<SingletonPolicy, number> = { zero: 0, mean0: 1, nan: 2 };

/**
 * Groups of at most this many members take `adv_small` (one invocation per group); larger ones
 * `adv_group` (one workgroup per group). 64 covers the group sizes GRPO trainers use (4–64
 * responses per prompt), so a typical batch never launches a workgroup per group, where a
 * 256-invocation workgroup leaves ≥ 75% of its invocations idle at n ≤ 64 and pays two or more
 * log2(WG)-step barrier reductions per group. Above it, one invocation's serial loop (3–4 passes
 * of n dependent loads, one group's members per lane, uncoalesced on a GPU) becomes the slowest
 * lane of its wave, and workgroup striding wins. Numerics: a sequential f32 sum of ≤ 64
 * deviations from the pivot (error ≲ √n·u typical, ≤ (n − 1)·u at worst, relative to Σ|r − p|),
 * versus adv_group's strided sum + tree; both are well inside the tests' 2e-6.
 */
export const SMALL_GROUP = 64;
/** Test knob (as thrTuning in thr.ts): the adv_small / adv_group split; an integer ≥ 0. */
export const advantagesTuning = { smallMax: SMALL_GROUP };

/** Elements per whiten_partial workgroup = WG · ITEMS (ITEMS in advantages.wgsl). */
const ITEMS = 16;
/** Bytes of one moment state (struct St in advantages.wgsl). */
const STATE_BYTES = 20;

const spec = (entry: string, bindings: [number, 'uniform' | 'read' | 'rw'][]): EntrySpec => ({
  entry,
  bindings,
});
const GROUP_BINDINGS: [number, 'uniform' | 'read' | 'rw'][] = [
  [0, 'uniform'],
  [1, 'read'],
  [2, 'read'],
  [3, 'read'],
  [4, 'rw'],
  [8, 'rw'],
  [9, 'rw'],
  [10, 'rw'],
  [12, 'rw'],
];
// Eight storage buffers: exactly WebGPU's default maxStorageBuffersPerShaderStage (8). Chromium's
// SwiftShader allows 10, Dawn on lavapipe more, so the tests check every entry point (infra.test.ts).
const SMALL = spec('adv_small', GROUP_BINDINGS);
const GROUP = spec('adv_group', GROUP_BINDINGS);
const MERGE = spec('adv_merge', [
  [0, 'uniform'],
  [8, 'rw'],
  [9, 'rw'],
]);
const EXPAND = spec('expand_tokens', [
  [0, 'uniform'],
  [1, 'read'],
  [3, 'read'],
  [4, 'rw'],
  [9, 'rw'],
]);
const WHITEN_PARTIAL = spec('whiten_partial', [
  [0, 'uniform'],
  [1, 'read'],
  [8, 'rw'],
  [11, 'read'],
]);
const WHITEN_APPLY = spec('whiten_apply', [
  [0, 'uniform'],
  [1, 'read'],
  [4, 'rw'],
  [9, 'rw'],
  [11, 'read'],
]);
const PACK = spec('pack_flags', [
  [0, 'uniform'],
  [7, 'rw'],
  [12, 'rw'],
]);

function moduleKey(k: WebGpuKit): ModuleKey {
  return { file: 'advantages.wgsl', sections: [k.reduceSection, 'response_of'], subgroups: k.useSubgroups };
}

export async function webgpuAdvantages(k: WebGpuKit, a: AdvantagesArgs): Promise<AdvantagesResult> {
  const { rt } = k;
  rt.check();
  const G = a.numGroups;
  const R = a.numResponses;
  const T = a.numTokens;
  const est = a.estimator;
  const perToken = est === 'reinforce_pp_baseline';
  const divides = est === 'grpo' || est === 'grpo_passk';
  const needBatch = (divides && a.scale === 'batch') || est === 'gpg';
  k.checkVector('rewards', R);
  if (perToken) k.checkVector('responseOffsets', T); // (its T tokens: the per-token output's length)
  if (G * STATE_BYTES > rt.limits.maxStorageBufferBindingSize) {
    throw new GrpoKernelsError(
      'SHAPE',
      `groupOffsets: ${G} groups need ${G * STATE_BYTES} bytes of group statistics, over this device's storage binding limit`,
      { argument: 'groupOffsets' },
    );
  }
  // Plan the group pass on the host: adv_small takes every group of ≤ smallMax members (empty
  // ones included), adv_group the listed larger ones.
  const smallMax = advantagesTuning.smallMax;
  const go = a.groupOffsets;
  let numLarge = 0;
  for (let g = 0; g < G; g++) if (go[g + 1] - go[g] > smallMax) numLarge++;
  // The group offsets, then the large groups' indices (adv_group reads them at G + 1 + j).
  const offsetsAndLarge = new Int32Array(G + 1 + numLarge);
  offsetsAndLarge.set(go.subarray(0, G + 1));
  for (let g = 0, j = G + 1; g < G; g++) if (go[g + 1] - go[g] > smallMax) offsetsAndLarge[j++] = g;
  const numSmall = G - numLarge;
  const key = moduleKey(k);
  const constants = { WG: k.wg };
  const [smallPipe, groupPipe, mergePipe, expandPipe, packPipe] = await Promise.all([
    numSmall > 0 ? k.pipelines.get(key, SMALL, constants) : undefined,
    numLarge > 0 ? k.pipelines.get(key, GROUP, constants) : undefined,
    needBatch || perToken ? k.pipelines.get(key, MERGE, constants) : undefined,
    perToken ? k.pipelines.get(key, EXPAND, constants) : undefined,
    k.pipelines.get(key, PACK, constants),
  ]);
  const base = packValues({
    num_groups: G,
    num_responses: R,
    estimator: ESTIMATOR_CODE[est],
    std_sample: a.std === 'sample' ? 1 : 0,
    scale: SCALE_CODE[a.scale],
    singleton: SINGLETON_CODE[a.singleton],
    eps: a.eps,
    mask_eps: a.whitenMaskEps,
    var_sample: a.whitenVariance === 'sample' ? 1 : 0,
    var_clamp: a.whitenVarianceEps === 'clamp' ? 1 : 0,
    small_max: smallMax,
    nan_skip: a.nanRewards === 'unscorable' ? 1 : 0,
  });
  return runWithScratch(k, 'advantages', (s) => {
    const adv = outputTensor(rt, 'f32', [perToken ? T : R]);
    const mean = outputTensor(rt, 'f32', [G]);
    const std = outputTensor(rt, 'f32', [G]);
    const degenerate = outputTensor(rt, 'u8', [G]);
    const result = { advantages: adv, mean, std, degenerate };
    if (G === 0) return result;
    const rewards = gpuStorage(a.rewards, 'rewards').buffer;
    const goff = rt.transientData(offsetsAndLarge, Usage.STORAGE, 'groupOffsets + large groups');
    const roff =
      a.responseOffsets !== undefined
        ? rt.transientData(a.responseOffsets, Usage.STORAGE, 'responseOffsets')
        : k.dummies[0];
    const states = s.buffer(G * STATE_BYTES, 'group states');
    const batch = s.buffer(16, 'batch');
    // mean bits [0, G), std bits [G, 2G), degenerate flags [2G, 3G): see `gout` in the WGSL.
    const gout = s.buffer(12 * G, 'group outputs');
    const vals = perToken ? s.buffer(4 * R, 'group values') : k.dummies[1];
    const advBuf = perToken ? k.dummies[2] : gpuStorage(adv).buffer;
    const enc = rt.device.createCommandEncoder({ label: 'advantages' });
    const pass = enc.beginComputePass();
    const groupBindings = (u: GPUBuffer): Binding[] => [
      { binding: 0, buffer: u },
      { binding: 1, buffer: rewards },
      { binding: 2, buffer: goff },
      { binding: 3, buffer: roff },
      { binding: 4, buffer: advBuf },
      { binding: 8, buffer: states },
      { binding: 9, buffer: batch },
      { binding: 10, buffer: vals },
      { binding: 12, buffer: gout },
    ];
    const merge = (mode: number) =>
      rt.dispatch(
        pass,
        mergePipe!,
        [
          { binding: 0, buffer: rt.uniform(ADVANTAGES_PARAMS, { ...base, count: G, mode }) },
          { binding: 8, buffer: states },
          { binding: 9, buffer: batch },
        ],
        1,
      );
    // adv_small then adv_group: they write disjoint groups, so their order does not matter.
    const groupPass = (phase: number) => {
      const u = rt.uniform(ADVANTAGES_PARAMS, {
        ...base,
        phase,
        need_batch: phase === 0 && needBatch ? 1 : 0,
        count: numLarge,
      });
      if (numSmall > 0) rt.dispatch(pass, smallPipe!, groupBindings(u), Math.ceil(G / k.wg));
      if (numLarge > 0) rt.dispatch(pass, groupPipe!, groupBindings(u), numLarge);
    };
    if (needBatch) {
      groupPass(1);
      merge(0);
    }
    groupPass(0);
    if (perToken && T > 0) {
      merge(1);
      rt.dispatch(
        pass,
        expandPipe!,
        [
          { binding: 0, buffer: rt.uniform(ADVANTAGES_PARAMS, { ...base, count: T, mode: 1 }) },
          { binding: 1, buffer: vals },
          { binding: 3, buffer: roff },
          { binding: 4, buffer: gpuStorage(adv).buffer },
          { binding: 9, buffer: batch },
        ],
        Math.ceil(T / k.wg),
      );
    }
    rt.dispatch(
      pass,
      packPipe,
      [
        { binding: 0, buffer: rt.uniform(ADVANTAGES_PARAMS, { ...base, count: G }) },
        { binding: 7, buffer: gpuStorage(degenerate).buffer },
        { binding: 12, buffer: gout },
      ],
      Math.ceil(Math.ceil(G / 4) / k.wg),
    );
    pass.end();
    // The bits of mean and std, copied as they are.
    enc.copyBufferToBuffer(gout, 0, gpuStorage(mean).buffer, 0, 4 * G);
    enc.copyBufferToBuffer(gout, 4 * G, gpuStorage(std).buffer, 0, 4 * G);
    rt.submit(enc);
    return result;
  });
}

export async function webgpuExpandToTokens(k: WebGpuKit, a: ExpandToTokensArgs): Promise<Tensor<'f32'>> {
  const { rt } = k;
  rt.check();
  const T = a.numTokens;
  const R = a.responseOffsets.length - 1;
  k.checkVector('values', R);
  k.checkVector('responseOffsets', R + 1);
  k.checkVector('responseOffsets', T); // (its T tokens: the output's length)
  const pipe = T > 0 ? await k.pipelines.get(moduleKey(k), EXPAND, { WG: k.wg }) : undefined;
  return rt.run('expandToTokens', () => {
    const out = outputTensor(rt, 'f32', [T]);
    if (T === 0) return out;
    const enc = rt.device.createCommandEncoder({ label: 'expandToTokens' });
    const pass = enc.beginComputePass();
    rt.dispatch(
      pass,
      pipe!,
      [
        {
          binding: 0,
          buffer: rt.uniform(ADVANTAGES_PARAMS, packValues({ num_responses: R, count: T, mode: 0 })),
        },
        { binding: 1, buffer: gpuStorage(a.values, 'values').buffer },
        { binding: 3, buffer: rt.transientData(a.responseOffsets, Usage.STORAGE, 'responseOffsets') },
        { binding: 4, buffer: gpuStorage(out).buffer },
        { binding: 9, buffer: k.dummies[0] },
      ],
      Math.ceil(T / k.wg),
    );
    pass.end();
    rt.submit(enc);
    return out;
  });
}

export async function webgpuWhiten(k: WebGpuKit, a: WhitenArgs): Promise<Tensor<'f32'>> {
  const { rt } = k;
  rt.check();
  const n = a.values.shape.reduce((x, y) => x * y, 1);
  k.checkVector('values', n);
  const chunk = k.wg * ITEMS;
  const chunks = Math.ceil(n / chunk);
  const key = moduleKey(k);
  const constants = { WG: k.wg };
  const [partialPipe, mergePipe, applyPipe] =
    n > 0
      ? await Promise.all([
          k.pipelines.get(key, WHITEN_PARTIAL, constants),
          k.pipelines.get(key, MERGE, constants),
          k.pipelines.get(key, WHITEN_APPLY, constants),
        ])
      : [];
  const base = packValues({
    count: n,
    mode: 1,
    has_mask: a.mask !== undefined ? 1 : 0,
    mask_eps: a.maskEps,
    var_sample: a.variance === 'sample' ? 1 : 0,
    var_clamp: a.varianceEps === 'clamp' ? 1 : 0,
    keep_mean: a.keepMean ? 1 : 0,
  });
  return runWithScratch(k, 'whiten', (s) => {
    const out = outputTensor(rt, 'f32', a.values.shape);
    if (n === 0) return out;
    const x = gpuStorage(a.values, 'values').buffer;
    const mask = a.mask !== undefined ? gpuStorage(a.mask, 'mask').buffer : k.dummies[0];
    const states = s.buffer(chunks * STATE_BYTES, 'chunk states');
    const batch = s.buffer(16, 'whitening map');
    const enc = rt.device.createCommandEncoder({ label: 'whiten' });
    const pass = enc.beginComputePass();
    const u = (p: AdvParams) => rt.uniform(ADVANTAGES_PARAMS, p);
    rt.dispatch(
      pass,
      partialPipe!,
      [
        { binding: 0, buffer: u(base) },
        { binding: 1, buffer: x },
        { binding: 8, buffer: states },
        { binding: 11, buffer: mask },
      ],
      chunks,
    );
    rt.dispatch(
      pass,
      mergePipe!,
      [
        { binding: 0, buffer: u({ ...base, count: chunks }) },
        { binding: 8, buffer: states },
        { binding: 9, buffer: batch },
      ],
      1,
    );
    rt.dispatch(
      pass,
      applyPipe!,
      [
        { binding: 0, buffer: u(base) },
        { binding: 1, buffer: x },
        { binding: 4, buffer: gpuStorage(out).buffer },
        { binding: 9, buffer: batch },
        { binding: 11, buffer: mask },
      ],
      Math.ceil(n / k.wg),
    );
    pass.end();
    rt.submit(enc);
    return out;
  });
}
