/**
 * The benchmarks: every case of every tier, in table order. `grpo-kernels bench` (cli/bench.ts) runs
 * the gpu, cpu and quick tiers on each backend; `npm run bench:reference` (bench/run.ts) runs the
 * reference tier on the js backend (the float64 reference) beside its peers. The cases live in bench/<family>.bench.ts.
 */
import type { BackendName } from 'grpo-kernels';
import { advantagesCase, expandCase, whitenCase } from './advantages.bench.js';
import type { BenchCase, Tier } from './case.js';
import { linearCase } from './lmhead.bench.js';
import { backwardCase, gatherProbsCase, logprobsCase } from './logprobs.bench.js';
import { policyLossCase } from './policy.bench.js';
import { rejectionCase } from './rejection.bench.js';
import { restrictedVocabCase, reweightCase, thrCase } from './thr.bench.js';

export { type BenchCase, OP_NAMES, type OpName, type Peer, type Prepared, type Tier } from './case.js';

const V = [32000, 128256, 151936];

/** The cases of a tier, in table order. */
export function benchCases(tier: Tier): BenchCase[] {
  if (tier === 'quick') {
    return [
      logprobsCase(4, 32000, 'f32'),
      backwardCase(4, 32000, 'f32'),
      linearCase(4, 64, 32000, 'f32', false),
      linearCase(4, 64, 32000, 'f32', true),
      gatherProbsCase(1, 4, 4, 32000),
      advantagesCase(1000, 8),
      advantagesCase(10000, 8),
      expandCase(256, 16),
      whitenCase(4096),
      restrictedVocabCase(2, 4, 32, 151936),
      thrCase(1, 4, 8, 896, 151936),
      reweightCase(4, 4, 256),
      policyLossCase(64, 16),
      rejectionCase(64, 16),
    ];
  }
  if (tier === 'reference') {
    // The js reference against naive formulations (bench/RESULTS.md, "cpu reference").
    return [
      logprobsCase(64, 151936, 'f32', { peers: true }),
      logprobsCase(256, 151936, 'f32', { peers: true }),
      logprobsCase(256, 151936, 'f32', { moments: true }),
      ...[1e3, 1e4, 1e5, 1e6].flatMap((r) =>
        (['grpo', 'rloo', 'opo', 'reinforce_pp_baseline'] as const).map((e) =>
          advantagesCase(r, 'ragged', e),
        ),
      ),
      ...[512, 2048].map((L) => thrCase(1, 8, L, 256, 151936, { distinct: 2000, peers: true })),
    ];
  }
  const gpu = tier === 'gpu';
  // GPU: logits of 250-310 MB (f32) per case. CPU reference: 8 rows, a few ms to a second each.
  const rows = (v: number) => (gpu ? (v === 32000 ? 2048 : 512) : 8);
  return [
    ...(['f32', 'bf16'] as const).flatMap((dt) => V.map((v) => logprobsCase(rows(v), v, dt))),
    backwardCase(rows(151936), 151936, 'f32'),
    backwardCase(rows(151936), 151936, 'bf16'),
    // The LM head fused, beside logprobs on the materialised logits of the same N × V.
    // (1024 × 896 × 151936 f32: the native cpu backend's goal size, issue 16; bench/cpu.bench.ts has its peers.)
    ...(gpu
      ? [
          linearCase(1024, 896, 151936, 'f32', false),
          linearCase(4096, 4096, 151936, 'bf16', false),
          linearCase(4096, 4096, 151936, 'bf16', true),
        ]
      : [linearCase(8, 256, 32000, 'f32', false), linearCase(8, 256, 32000, 'f32', true)]),
    ...(gpu ? [logprobsCase(4096, 151936, 'bf16')] : []),
    gpu ? gatherProbsCase(4, 8, 16, 151936) : gatherProbsCase(2, 4, 8, 151936),
    ...[1e3, 1e4, 1e5, 1e6].map((r) => advantagesCase(r, 8)),
    gpu ? expandCase(16384, 256) : expandCase(4096, 256),
    whitenCase(gpu ? 1 << 22 : 1 << 20),
    gpu ? restrictedVocabCase(8, 16, 512, 151936) : restrictedVocabCase(4, 8, 256, 151936),
    gpu ? thrCase(8, 8, 256, 896, 151936) : thrCase(2, 4, 64, 896, 151936),
    gpu ? thrCase(8, 8, 256, 3584, 151936) : thrCase(2, 4, 16, 3584, 151936),
    gpu ? reweightCase(64, 16, 1024) : reweightCase(16, 16, 256),
    // 1M tokens in 64k responses (the size) on a GPU; 64k tokens in 4k on cpu.
    gpu ? policyLossCase(65536, 16) : policyLossCase(4096, 16),
    gpu ? policyLossCase(65536, 16, 'gmpo') : policyLossCase(4096, 16, 'gmpo'),
    gpu ? policyLossCase(65536, 16, 'vespo') : policyLossCase(4096, 16, 'vespo'),
    gpu ? policyLossCase(65536, 16, 'ppo-opsm') : policyLossCase(4096, 16, 'ppo-opsm'),
    // 1M tokens in 64k responses on a GPU, as policyLoss's; 64k in 4k on cpu.
    gpu ? rejectionCase(65536, 16) : rejectionCase(4096, 16),
    gpu ? rejectionCase(65536, 16, 'all') : rejectionCase(4096, 16, 'all'),
  ];
}

/**
 * Which tier `grpo-kernels bench` gives a backend: js (the float64 reference) and software drivers
 * (lavapipe, whose figures are no speed claim) get the small sizes; the native cpu backend gets the
 * real ones.
 */
export function tierFor(
  backend: BackendName,
  quick: boolean,
  softwareDriver = false,
): Exclude<Tier, 'reference'> {
  if (quick) return 'quick';
  return backend === 'js' || softwareDriver ? 'cpu' : 'gpu';
}
