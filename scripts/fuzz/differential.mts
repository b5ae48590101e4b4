/**
 * Differential fuzzer: runs seeded random calls of every op family on one backend (webgpu, cpu or
 * cuda) and on the js backend (the float64 reference), and checks that they agree.
 *
 * What it checks, per op call (scripts/fuzz/harness.mts):
 * - both resolve: the same outputs, each element within the case tables' tolerance for that op and
 *   dtype (test/cases/tolerances.ts TOLERANCES, test/cases/policy.ts POLICY_TOLERANCES), compared by
 *   test/cases/check.ts compareElements, with each table's own scale (the families' headers say which);
 * - one rejects: a failure; both reject: the same GrpoKernelsError code and argument;
 * - nothing surfaces at ctx.synchronize() after the call (a device error left behind).
 * Families (scripts/fuzz/families/): logprobs, thr, advantages, policy, rejection, lmhead, order. Sizes stay small
 * (rows ≤ 12, V ≤ 300, d ≤ 96, ≤ 64 THR tokens): lavapipe and the CUDA emulator run tens of cases a
 * second on 2 cores.
 * One more family, invariance, runs on the backend alone (Session.same): a unit (row, group,
 * response) inside two different batches, at other positions and (on cpu) thread counts, must give
 * the same bits in every output it owns (docs/DESIGN.md, "Numerics"); its batches reach hundreds of
 * rows, past cuda's 4·SMs.
 *
 * How to run it (from the repository root; put a timeout on it):
 *   npx tsx scripts/fuzz/differential.mts --backend webgpu|cpu|cuda [--families a,b] [--seed N]
 *                                        [--seeds K | --secs S] [--verbose]
 *   webgpu without a GPU: `source .cache/vulkan/env.sh` first (bash scripts/setup-vulkan.sh installs it);
 *   cuda without a GPU, on the CPU emulator of the CUDA kernels:
 *     GRPO_KERNELS_NATIVE_PATH=$PWD/build/emu/grpo_kernels_native.node GRPO_KERNELS_CUDA_EMU=1
 * Seeds N, N+1, ... (default 1); each family draws its case from (family, seed) alone, so the same seed
 * gives the same case whatever else runs, and `--families F --seed N --seeds 1` reruns one case.
 * Default: --secs 60. --verbose also prints a line per call that both backends rejected alike.
 * Type check: npx tsc -p scripts/fuzz (the root tsconfig.json leaves scripts/ out); lint: npx biome check scripts/fuzz.
 *
 * Output: one line per failure, `FAIL family/op seed=N <parameters>: <what differs> [rerun: <flags>]`,
 * then one summary line (cases, op calls and agreed rejections per family; failures). Exit status 1 if
 * any check failed, 0 if none did, 2 on a usage error or a backend that does not start.
 *
 * What a failure means: the backend disagrees with the reference beyond the bound the case tables hold
 * every backend to, or rejects differently. Either a defect of the backend (make the case a test in
 * test/cases/*.ts and fix it), or, if the reference or the bound is what is wrong, of the table; never
 * widen a tolerance to make a failure go away without the error analysis that justifies it.
 */
import { parseArgs } from 'node:util';
import { type Context, createContext } from '../../src/index.js';
import { ensureRuntimeDir } from '../runtime-dir.mjs';
import { advantagesFamily } from './families/advantages.mjs';
import { invarianceFamily } from './families/invariance.mjs';
import { lmheadFamily } from './families/lmhead.mjs';
import { logprobsFamily } from './families/logprobs.mjs';
import { orderFamily } from './families/order.mjs';
import { policyFamily } from './families/policy.mjs';
import { rejectionFamily } from './families/rejection.mjs';
import { thrFamily } from './families/thr.mjs';
import { Rand } from './gen.mjs';
import { type Family, Session } from './harness.mjs';

const FAMILIES: readonly Family[] = [
  logprobsFamily,
  thrFamily,
  advantagesFamily,
  policyFamily,
  rejectionFamily,
  lmheadFamily,
  orderFamily,
  invarianceFamily,
];
const BACKENDS = ['webgpu', 'cpu', 'cuda'] as const;
type Backend = (typeof BACKENDS)[number];

function usage(): string {
  return [
    'usage: npx tsx scripts/fuzz/differential.mts --backend webgpu|cpu|cuda [--families a,b] [--seed N] [--seeds K | --secs S] [--verbose]',
    'families:',
    ...FAMILIES.map((f) => `  ${f.name.padEnd(11)} ${f.ops}`),
  ].join('\n');
}

function die(message: string): never {
  console.error(`differential: ${message}\n${usage()}`);
  process.exit(2);
}

function count(flag: string, text: string | undefined, min: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min)
    die(`--${flag}: expected an integer ≥ ${min}, got ${JSON.stringify(text)}`);
  return n;
}

interface Plan {
  backend: Backend;
  families: readonly Family[];
  seed: number;
  seeds?: number;
  secs?: number;
  verbose: boolean;
}

function parse(): Plan {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        backend: { type: 'string' },
        families: { type: 'string' },
        seed: { type: 'string' },
        seeds: { type: 'string' },
        secs: { type: 'string' },
        verbose: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    die((e as Error).message);
  }
  if (values.help) {
    console.log(usage());
    process.exit(0);
  }
  const backend = values.backend as string | undefined;
  if (!(BACKENDS as readonly (string | undefined)[]).includes(backend))
    die(`--backend: expected one of ${BACKENDS.join(', ')}, got ${JSON.stringify(backend)}`);
  const names = (values.families as string | undefined)?.split(',') ?? FAMILIES.map((f) => f.name);
  const families = names.map(
    (n) => FAMILIES.find((f) => f.name === n) ?? die(`--families: unknown family ${JSON.stringify(n)}`),
  );
  const seeds = count('seeds', values.seeds as string | undefined, 1);
  const secs = count('secs', values.secs as string | undefined, 1);
  if (seeds !== undefined && secs !== undefined) die('give --seeds or --secs, not both');
  return {
    backend: backend as Backend,
    families,
    seed: count('seed', values.seed as string | undefined, 0) ?? 1,
    seeds,
    secs: seeds === undefined ? (secs ?? 60) : undefined,
    verbose: values.verbose === true,
  };
}

async function open(backend: Backend): Promise<Context> {
  if (backend === 'webgpu') ensureRuntimeDir(process.env); // lavapipe's Wayland probe wants one
  let ctx: Context;
  try {
    ctx = await createContext({ backend });
  } catch (e) {
    console.error(`differential: the ${backend} backend does not start: ${(e as Error).message}`);
    process.exit(2);
  }
  // 'cpu' falls back to js without the native addon: comparing js with itself would prove nothing.
  if (ctx.backend !== backend) {
    const why = ctx.skipped.map((k) => `${k.backend}: ${k.reason}`).join('; ');
    console.error(`differential: asked for ${backend}, got ${ctx.backend} (${why})`);
    process.exit(2);
  }
  return ctx;
}

const plan = parse();
// Module-level: the contexts stay referenced for the whole run.
const js = await createContext({ backend: 'js' });
const backend = await open(plan.backend);
const session = new Session(js, backend, plan.verbose);
console.log(
  `differential: ${plan.backend} (${backend.device.name}) against js; families ${plan.families.map((f) => f.name).join(',')}; ` +
    `seeds from ${plan.seed}, ${plan.seeds !== undefined ? `${plan.seeds} of them` : `for ${plan.secs} s`}`,
);

const started = Date.now();
const deadline = plan.secs === undefined ? Number.POSITIVE_INFINITY : started + plan.secs * 1000;
let seed = plan.seed;
for (; plan.seeds === undefined ? Date.now() < deadline : seed < plan.seed + plan.seeds; seed++) {
  for (const family of plan.families) {
    if (Date.now() >= deadline) break;
    session.begin(family.name, seed);
    try {
      await family.run(new Rand(family.name, seed), session);
    } catch (e) {
      session.fail('-', '', `tool error: ${(e as Error).stack ?? e}`);
    }
  }
}

const parts = plan.families.map((f) => {
  const c = session.counts.get(f.name) ?? { cases: 0, ops: 0, rejected: 0, failures: 0 };
  return `${f.name} ${c.cases} cases/${c.ops} ops/${c.rejected} rejected alike/${c.failures} failed`;
});
const secs = ((Date.now() - started) / 1000).toFixed(1);
console.log(
  `SUMMARY ${plan.backend} seeds ${plan.seed}..${seed - 1} in ${secs} s: ${parts.join(', ')}; failures ${session.failures}`,
);
// webgpu's device keeps the event loop alive: exit explicitly.
process.exit(session.failures > 0 ? 1 : 0);
