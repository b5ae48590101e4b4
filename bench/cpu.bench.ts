/**
 * The native cpu backend against its peers, in one run on one machine (issue 13's goals): ONNX Runtime
 * (onnxruntime-node: LogSoftmax + GatherElements, bench/peers/onnx.ts) on 1 and on the backend's
 * threads, PyTorch CPU (bench/peers/torch_logprobs.py, when a python3 with torch is found: env
 * GRPO_KERNELS_PYTHON, python3, /usr/bin/python3), the streaming read of the same bytes on the same
 * threads (the addon's readProbe), the threads' f32 FMA peak (fmaProbe, THR's yardstick), and the
 * TypeScript float64 reference (the js backend) for every op.
 *
 * The LM head (issue 16's goals): linearLogprobs f32 at N = 1024, d = 896, V = 151936 against ONNX
 * Runtime's MatMul + LogSoftmax + GatherElements on the same threads and inputs (the materialised
 * logits, the way an exported model computes it), the FMA peaks of the threads at 8 lanes (fmaProbe)
 * and at the LM head's own width (lmheadFmaProbe: 16 lanes with its AVX-512 build), the backward's
 * rate, and each one's peak memory: the growth of the resident set over its first call (Linux:
 * VmHWM, reset through /proc/self/clear_refs), beside our plan and ORT's two [N, V] f32 tensors.
 *
 * The machine is shared: every figure is the median over `rounds` rounds (each round runs every
 * implementation once more, the js reference included, so a burst of load hits them alike), and each
 * ratio is the median of the per-round ratios. The load average before and after is recorded with the
 * rows. For the light ops (gatherProbs, the advantages family, thrReweight) a round also times the
 * native job alone (the addon's call, without the API's validation and the backend's plumbing) and a
 * streaming read of as many bytes as the op moves (so from the same level of the memory hierarchy):
 * where the js reference is already within 20x of the memory system, these rows show it.
 * policyLoss (bench/policy.bench.ts's case: ppo, k3 KL, entropy bonus, token-level rollout correction,
 * token-mean, on 1M tokens in 64k responses; and the same with losses gmpo and vespo, and ppo with the
 * off-policy mask and the bias-corrected KL) also gets that read probe of its own bytes (issue 15's
 * goal: at least 30% of its rate); its js reference runs the same case on 4096 responses.
 *
 *   npm run bench:cpu                          # = tsx bench/run.ts cpu → bench/out/cpu.json
 *   npm run bench:cpu -- --only advantages,whiten --rounds 5
 *   npx tsx bench/cpu.bench.ts [--rounds 3] [--threads 2] [--only SUBSTRING,…] [--out FILE.json]
 *   (`--only lmhead`: the LM head's rows alone)
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { loadNativeAddon } from '../src/backends/addon.js';
import type { NativeCpuDevice } from '../src/backends/cpu/native.js';
import { arrayOf } from '../src/backends/cpu/storage.js';
import { createContext, lmheadScratchBytes, type Tensor } from '../src/index.js';
import { makeThrCase, uniformGroup } from '../test/fixtures/thr.js';
import { loadOrt, ortLmhead, ortLogprobs } from './peers/onnx.js';
import { policyLossCase } from './policy.bench.js';

export interface CpuBenchRow {
  suite: 'cpu';
  benchmark: string;
  impl: string;
  threads: number;
  /** Median over rounds of each round's median ms. */
  ms: number;
  rate: number;
  unit: string;
  /** Bytes moved per second (GB/s) and over the streaming read's rate in the same rounds (cpu rows). */
  gbs?: number;
  ofReadProbe?: number;
  /** Peak memory of one call in MB: the resident set's growth over it (LM-head rows). */
  peakMB?: number;
  /** Light ops: over the rate of a streaming read of as many bytes as the op moves (same rounds). */
  ofOwnReadProbe?: number;
  device: string;
  date: string;
  load: string;
}

export interface CpuGoal {
  benchmark: string;
  measured: number;
  goal: number;
  /** What the number is: a ratio or a rate. */
  what: string;
  met: boolean;
}

const med = (a: number[]) => {
  const s = a.slice().sort((x, y) => x - y);
  return s.length === 0 ? Number.NaN : s[s.length >> 1];
};

async function timeMs(reps: number, f: () => Promise<unknown>): Promise<number> {
  await f();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await f();
    t.push(performance.now() - t0);
  }
  return med(t);
}

/** Normal-ish values (sum of 3 uniforms), std ≈ scale: fast for hundreds of MB. */
function randomF32(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0;
  const r = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() + r() + r() - 1.5) * 2 * scale;
  return out;
}
function toBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = (u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16;
  return out;
}

/** The first python3 that imports torch, or why none does. */
function findTorchPython(): { python?: string; reason?: string } {
  const candidates = [process.env.GRPO_KERNELS_PYTHON, 'python3', '/usr/bin/python3'].filter(
    (x): x is string => !!x,
  );
  for (const p of candidates) {
    const r = spawnSync(p, ['-c', 'import torch'], { encoding: 'utf8' });
    if (r.status === 0) return { python: p };
  }
  return {
    reason: `no python3 with torch (tried ${candidates.join(', ')}; Debian: apt-get install python3-torch)`,
  };
}

/** Bytes of the resident set's field (VmRSS, VmHWM), Linux; undefined elsewhere. */
function statusBytes(field: string): number | undefined {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** The resident set's peak growth over `f` (Linux: VmHWM reset to VmRSS first), or undefined. */
async function peakGrowth(f: () => Promise<unknown>): Promise<number | undefined> {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    return undefined;
  }
  const before = statusBytes('VmRSS');
  await f();
  const peak = statusBytes('VmHWM');
  return before === undefined || peak === undefined ? undefined : peak - before;
}

// ------------------------------------------------------------------ the LM head (issue 16)
const LM = { N: 1024, d: 896, V: 151936 };
const LM_FWD = `linearLogprobs f32 N ${LM.N}, d ${LM.d}, V ${LM.V}`;
const LM_BWD = `linearLogprobsBackward f32 N ${LM.N}, d ${LM.d}, V ${LM.V}`;

interface LmheadData {
  perRound: Record<string, number[]>;
  /** Peak growth of the resident set over a first call, bytes. */
  memCpu?: number;
  memOrt?: number;
  /** Our plan's forward scratch and ORT's two [N, V] f32 intermediates (logits, log-softmax), bytes. */
  plan: number;
  ortTensors: number;
  jsRate: number;
  isa: string;
}

/**
 * linearLogprobs f32 [1024, 896] × [151936, 896] on the native cpu backend and, on the same threads and
 * inputs, ONNX Runtime's MatMul + LogSoftmax + GatherElements; the backward; the two FMA probes; and the
 * first call's peak memory of each (before any timing: ORT keeps its arena after its first run).
 */
async function measureLmhead(
  ctx: Awaited<ReturnType<typeof createContext>>,
  js: Awaited<ReturnType<typeof createContext>>,
  dev: NativeCpuDevice,
  ort: ReturnType<typeof loadOrt>,
  T: number,
  rounds: number,
  notes: string[],
): Promise<LmheadData> {
  const { N, d, V } = LM;
  const h = randomF32(N * d, 31, 1);
  const w = randomF32(V * d, 32, 3 / Math.sqrt(d));
  const targets = Int32Array.from({ length: N }, (_, i) => (i * 7919) % V);
  const hidden = ctx.tensor(h, [N, d]);
  const weight = ctx.tensor(w, [V, d]);
  const g = randomF32(N, 33, 1);
  const fwd = async () => {
    const r = await ctx.linearLogprobs(hidden, weight, targets);
    await r.lse.read();
    r.logprobs.dispose();
    r.lse.dispose();
  };
  // The first call of the process measures the peak memory (later calls may reuse freed heap).
  const memCpu = await peakGrowth(fwd);
  const { lse } = await ctx.linearLogprobs(hidden, weight, targets);
  const bwd = async () => {
    const r = await ctx.linearLogprobsBackward(hidden, weight, targets, lse, g);
    await r.gradHidden.read();
    r.gradHidden.dispose();
    r.gradWeight.dispose();
  };
  const data: LmheadData = {
    perRound: {},
    plan: (await lmheadScratchBytes(ctx, { rows: N, vocab: V, dim: d, dtype: 'f32' })).forward,
    ortTensors: 2 * N * V * 4,
    jsRate: Number.NaN,
    isa: String(ctx.device.details.lmheadIsa),
  };
  const push = (k: string, v: number) => {
    data.perRound[k] ??= [];
    data.perRound[k].push(v);
  };
  data.memCpu = memCpu;
  const session = ort.ort ? await ortLmhead(ort.ort, T, h, w, targets, d, V) : undefined;
  if (session) data.memOrt = await peakGrowth(session.run);
  if (data.memCpu === undefined)
    notes.push('peak memory not measured: no /proc/self/clear_refs (Linux only)');
  const fwdFlops = 2 * N * d * V;
  for (let round = 0; round < rounds; round++) {
    push('cpu', await timeMs(2, fwd));
    if (session) push('ort', await timeMs(2, session.run));
    push('bwd', await timeMs(1, bwd));
    push('fma', (fwdFlops / (await dev.fmaProbe())) * 1e3);
    push('fma-lmhead', (fwdFlops / (await dev.lmheadFmaProbe())) * 1e3);
  }
  await session?.close();
  // The js reference on 4 rows (the same kernel at a size float64 JavaScript finishes in seconds).
  const n4 = 4;
  const jh = js.tensor(h.subarray(0, n4 * d), [n4, d]);
  const jw = js.tensor(w, [V, d]);
  const jms = await timeMs(1, () => js.linearLogprobs(jh, jw, targets.subarray(0, n4)));
  data.jsRate = (2 * n4 * d * V) / jms / 1e6;
  for (const t of [hidden, weight, lse, jh, jw]) t.dispose();
  return data;
}

function lmheadResults(
  data: LmheadData,
  common: Pick<CpuBenchRow, 'suite' | 'device' | 'date' | 'load'>,
  T: number,
  notes: string[],
): { rows: CpuBenchRow[]; goals: CpuGoal[] } {
  const f = (b: number | undefined) => (b === undefined ? 'n/a' : `${(b / 1e6).toFixed(1)} MB`);
  notes.push(
    `LM head peak memory (first call's resident-set growth): cpu ${f(data.memCpu)} (its plan: ${f(data.plan)}), ` +
      `ONNX Runtime ${f(data.memOrt)} (its logits and log-softmax, [N, V] f32 each: ${f(data.ortTensors)} together)`,
  );
  const { N, d, V } = LM;
  const pr = data.perRound;
  const fwdFlops = 2 * N * d * V;
  const rate = (k: string, flops: number) => flops / med(pr[k]) / 1e6;
  const ratio = (a: string, b: string) => med(pr[a].map((v, i) => pr[b][i] / v));
  const mb = (b: number | undefined) => (b === undefined ? undefined : b / 1e6);
  const rows: CpuBenchRow[] = [
    {
      ...common,
      benchmark: LM_FWD,
      impl: `cpu (LM head ${data.isa})`,
      threads: T,
      ms: med(pr.cpu),
      rate: rate('cpu', fwdFlops),
      unit: 'GFLOP/s',
      peakMB: mb(data.memCpu),
    },
  ];
  if (pr.ort)
    rows.push({
      ...common,
      benchmark: LM_FWD,
      impl: 'ONNX Runtime (MatMul + LogSoftmax + GatherElements)',
      threads: T,
      ms: med(pr.ort),
      rate: rate('ort', fwdFlops),
      unit: 'GFLOP/s',
      peakMB: mb(data.memOrt),
    });
  rows.push(
    {
      ...common,
      benchmark: LM_FWD,
      impl: 'f32 FMA peak probe, 8 lanes',
      threads: T,
      ms: med(pr.fma),
      rate: rate('fma', fwdFlops),
      unit: 'GFLOP/s',
    },
    {
      ...common,
      benchmark: LM_FWD,
      impl: `f32 FMA peak probe, the LM head's width (${data.isa})`,
      threads: T,
      ms: med(pr['fma-lmhead']),
      rate: rate('fma-lmhead', fwdFlops),
      unit: 'GFLOP/s',
    },
    {
      ...common,
      benchmark: LM_FWD,
      impl: 'js (float64 reference)',
      threads: 1,
      ms: Number.NaN,
      rate: data.jsRate,
      unit: 'GFLOP/s',
    },
    {
      ...common,
      benchmark: LM_BWD,
      impl: `cpu (LM head ${data.isa})`,
      threads: T,
      ms: med(pr.bwd),
      rate: rate('bwd', 3 * fwdFlops),
      unit: 'GFLOP/s (3 GEMMs)',
    },
  );
  const goals: CpuGoal[] = [];
  const goal = (measured: number, g: number, what: string) =>
    goals.push({ benchmark: LM_FWD, measured, goal: g, what, met: measured >= g });
  goal(ratio('cpu', 'fma'), 0.5, `of the f32 FMA peak of ${T} threads (8 lanes)`);
  goal(ratio('cpu', 'fma-lmhead'), 0.5, `of the f32 FMA peak at the LM head's width (${data.isa})`);
  if (pr.ort) goal(ratio('cpu', 'ort'), 1, `× ONNX Runtime on ${T} threads`);
  // Ours: the larger of the measured growth and the plan (a few MB: within the resident set's noise).
  if (data.memCpu !== undefined && data.memOrt !== undefined)
    goal(
      data.memOrt / Math.max(data.memCpu, data.plan),
      20,
      '× less peak memory than ONNX Runtime (ours ≤ 5% of its: ratio ≥ 20)',
    );
  goal(rate('cpu', fwdFlops) / data.jsRate, 20, '× the js reference');
  return { rows, goals };
}

export async function runCpuBench(
  opts: { rounds?: number; threads?: number; reps?: number; print?: boolean; only?: string[] } = {},
): Promise<{ rows: CpuBenchRow[]; goals: CpuGoal[]; notes: string[] }> {
  const rounds = opts.rounds ?? 3;
  const reps = opts.reps ?? 5;
  const print = opts.print ?? true;
  const only = opts.only ?? [];
  const chosen = (name: string) => only.length === 0 || only.some((o) => name.includes(o));
  const lp = 'logprobs f32 [256, 151936]';
  const peers = chosen(lp);
  const notes: string[] = [];
  const loadBefore = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  const ctx = await createContext({ backend: 'cpu', threads: opts.threads });
  if (ctx.backend !== 'cpu')
    throw new Error(`the native cpu backend is unavailable: ${ctx.skipped[0]?.reason}`);
  const T = Number(ctx.device.details.threads);
  const js = await createContext({ backend: 'js' });
  const addon = loadNativeAddon('cpu');
  const dev = new addon.CpuDevice!({
    threads: T,
    portable: ctx.device.details.isa === 'portable',
    avx512: ctx.device.details.lmheadIsa === 'avx512',
  });
  const ort = peers || chosen('lmhead') ? loadOrt() : {};
  if (ort.reason) notes.push(`ONNX Runtime skipped: ${ort.reason}`);
  const torch = peers ? findTorchPython() : {};
  if (torch.reason) notes.push(`PyTorch skipped: ${torch.reason}`);
  const commonOf = () => ({
    suite: 'cpu' as const,
    device: `${ctx.device.name}; ${process.arch}`,
    date: new Date().toISOString().slice(0, 10),
    load: `${loadBefore} → ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  });
  const finish = (rows: CpuBenchRow[], goals: CpuGoal[]) => {
    if (print) printResults(commonOf(), rows, goals, notes);
    dev.close();
    ctx.dispose();
    js.dispose();
    return { rows, goals, notes };
  };
  if (only.length > 0 && only.every((o) => o === 'lmhead')) {
    const data = await measureLmhead(ctx, js, dev, ort, T, rounds, notes);
    const r = lmheadResults(data, commonOf(), T, notes);
    return finish(r.rows, r.goals);
  }

  // ------------------------------------------------------------------ inputs
  const N = 256;
  const V = 151936;
  const x = randomF32(N * V, 1, 3);
  const xb = toBf16(x);
  const targets = Int32Array.from({ length: N }, (_, i) => (i * 7919) % V);
  const logits = ctx.tensor(x, [N, V]);
  const logitsBf16 = ctx.tensor(xb, [N, V], 'bf16');
  const inPlace = ctx.tensor(x, [N, V]);
  const { lse } = await ctx.logprobs(logits, targets);
  const lseHost = await lse.read();
  const g = randomF32(N, 2, 1);
  const R = 1 << 20;
  const rewardsHost = randomF32(R, 3, 1);
  const rewards = ctx.tensor(rewardsHost);
  // THR: one group of 8 responses (4 correct) of `length` tokens, d 896, |V*| = `k`.
  const thrCaseOf = (seed: number, length: number, k: number) =>
    makeThrCase({ seed, groups: [uniformGroup(8, length, 4)], dim: 896, vocabSize: V, exactVocab: k });
  const thrCase = thrCaseOf(1, 512, 2000);
  const thrFlops = 2 * 2000 * 896 * (2048 + 4096);
  const vocab = await ctx.restrictedVocab(thrCase.tokens, thrCase.layout);
  const hidden = ctx.tensor(thrCase.hidden as Float32Array, [thrCase.numTokens, 896]);
  const probs = ctx.tensor(thrCase.probs);
  const ro = Int32Array.from({ length: R + 1 }, (_, i) => i * 16);
  const go8 = Int32Array.from({ length: R / 8 + 1 }, (_, i) => i * 8);
  // gatherProbs on the same logits: one group of 16 responses × 16 tokens = the 256 rows, its tokens
  // spread over the vocabulary (|V*| ≈ 256: 64k probabilities).
  const gatherLayout = {
    responseOffsets: Int32Array.from({ length: 17 }, (_, i) => i * 16),
    groupOffsets: new Int32Array([0, 16]),
  };
  const gatherTokens = Int32Array.from({ length: N }, (_, i) => (i * 104729) % V);
  const gatherVocab = await ctx.restrictedVocab(gatherTokens, gatherLayout);
  const K = gatherVocab.host.offsets[1];
  const gatherAmount = N * K;
  const gatherColumns = await gatherVocab.columns.read();
  const whitenHost = randomF32(1 << 22, 4, 1);
  const whitenIn = ctx.tensor(whitenHost);
  // thrReweight on 64 groups × 16 responses × 1024 tokens (1M tokens), synthetic THR and tau.
  const rwT = 64 * 16 * 1024;
  const rwLayout = {
    responseOffsets: Int32Array.from({ length: 64 * 16 + 1 }, (_, i) => i * 1024),
    groupOffsets: Int32Array.from({ length: 65 }, (_, i) => i * 16),
  };
  const rwCorrect = Uint8Array.from({ length: 64 * 16 }, (_, i) => (i % 3 === 0 ? 1 : 0));
  const rwAdv = randomF32(rwT, 5, 1);
  const rwThr = randomF32(rwT, 6, 1);
  const rwTau = Float32Array.from(randomF32(64, 7, 0.3), Math.abs);
  // Inputs as tensors of each context (uploaded once), so the op is timed, not the upload.
  const reweightArgs = (c: typeof ctx) => ({
    tokenAdvantages: c.tensor(rwAdv),
    thr: c.tensor(rwThr),
    tau: c.tensor(rwTau),
    layout: rwLayout,
    correct: rwCorrect,
    p: 0.1,
  });
  const rwCpu = reweightArgs(ctx);

  // The js reference's inputs, at sizes it finishes in well under a second (rates are per unit of work):
  // the logprobs family on 8 of the 256 rows, THR on 8 × 64 tokens with |V*| 500, the rest at full size.
  const n8 = 8;
  const jx = js.tensor(x.subarray(0, n8 * V), [n8, V]);
  const jt = targets.subarray(0, n8);
  const { lse: jl8 } = await js.logprobs(jx, jt);
  const jxb = js.tensor(xb.subarray(0, n8 * V), [n8, V], 'bf16');
  const jgx = js.tensor(x, [N, V]);
  const jgv = await js.restrictedVocab(gatherTokens, gatherLayout);
  const jr1 = js.tensor(rewardsHost);
  const jw = js.tensor(whitenHost);
  const small = thrCaseOf(2, 64, 500);
  const sv = await js.restrictedVocab(small.tokens, small.layout);
  const sh = js.tensor(small.hidden as Float32Array, [small.numTokens, 896]);
  const rwJs = reweightArgs(js);

  // The native jobs alone (the addon's own calls, as src/backends/cpu/*.ts make them, on the tensors'
  // own host arrays: a copy of the same data can sit differently in the page tables, which a gather
  // feels), into outputs allocated once.
  const kAdv = {
    out: new Float32Array(R),
    mean: new Float32Array(R / 8),
    std: new Float32Array(R / 8),
    deg: new Uint8Array(R / 8),
  };
  const kExpand = new Float32Array(R * 16);
  const kWhiten = new Float32Array(1 << 22);
  const kReweight = new Float32Array(rwT);
  const kGather = new Float32Array(gatherAmount);
  const degenerate64 = new Uint8Array(64);
  const eta64 = new Float64Array(64); // the reweight plan's eta per group (mode 'thr' reads none)

  // policyLoss: 1M tokens in 64k responses (its inputs as tensors of each context, uploaded once).
  // bench/case.ts types the library by its package name (dist/ in the CLI's build), this file by its
  // source: the same classes at run time, hence the casts.
  type CaseContext = Parameters<ReturnType<typeof policyLossCase>['setup']>[0];
  const plName = 'policyLoss 1M tokens, 64k responses';
  // The same case with each loss: ppo; gmpo (seq-mean-token-mean: two passes per response, ΣΔ̂ and Q_r
  // in the first); vespo (token-mean; its pass A sums the clamped log-ratios and the token weights' logs).
  type Setup = Awaited<ReturnType<ReturnType<typeof policyLossCase>['setup']>>;
  const policyRuns: { name: string; T: number; jsT: number; bench: Setup; jsBench: Setup }[] = [];
  // ppo-opsm: ppo with the off-policy mask (a pass over each response for κ_r) and the bias-corrected KL.
  for (const loss of ['ppo', 'gmpo', 'vespo', 'ppo-opsm'] as const) {
    const name = loss === 'ppo' ? plName : `policyLoss ${loss} 1M tokens, 64k responses`;
    if (!chosen(name)) continue;
    const c = policyLossCase(65536, 16, loss);
    const jc = policyLossCase(4096, 16, loss);
    const bench = await c.setup(ctx as unknown as CaseContext);
    const jsBench = await jc.setup(js as unknown as CaseContext);
    policyRuns.push({ name, T: c.sizes.T, jsT: jc.sizes.T, bench, jsBench });
  }

  const disposeAll = (ts: (Tensor | undefined)[]) => {
    for (const t of ts) t?.dispose();
  };
  const disposeOutputs = (ts: unknown[]) => disposeAll(ts as Tensor[]);
  interface Op {
    run: () => Promise<unknown>;
    amount: number;
    unit: string;
    /** The least the op must move (inputs read + outputs written), for GB/s and the read probes. */
    bytes: number;
    /** The js reference and the amount of work it does. */
    js: () => Promise<unknown>;
    jsAmount: number;
    /** Timed reps of the js reference per round (1 for THR: seconds). */
    jsReps?: number;
    /** The native job alone (light ops). */
    kernel?: () => Promise<void>;
    /** A streaming read of the op's own bytes each round, without a native job alone (policyLoss). */
    ownRead?: boolean;
  }
  const ops: Record<string, Op> = {
    [lp]: {
      run: async () => disposeAll(Object.values(await ctx.logprobs(logits, targets))),
      amount: N * V,
      unit: 'G elem/s',
      bytes: N * V * 4,
      js: () => js.logprobs(jx, jt),
      jsAmount: n8 * V,
    },
    'logprobs bf16 [256, 151936]': {
      run: async () => disposeAll(Object.values(await ctx.logprobs(logitsBf16, targets))),
      amount: N * V,
      unit: 'G elem/s',
      bytes: N * V * 2,
      js: () => js.logprobs(jxb, jt),
      jsAmount: n8 * V,
    },
    'logprobs f32 + entropy + Σp²': {
      run: async () =>
        disposeAll(Object.values(await ctx.logprobs(logits, targets, { entropy: true, sumSquares: true }))),
      amount: N * V,
      unit: 'G elem/s',
      bytes: N * V * 4,
      js: () => js.logprobs(jx, jt, { entropy: true, sumSquares: true }),
      jsAmount: n8 * V,
    },
    'logprobsBackward f32, out of place': {
      run: async () => (await ctx.logprobsBackward(logits, targets, lse, g)).dispose(),
      amount: N * V,
      unit: 'G elem/s',
      bytes: 2 * N * V * 4,
      js: () => js.logprobsBackward(jx, jt, jl8, g.subarray(0, n8)),
      jsAmount: n8 * V,
    },
    'logprobsBackward f32, in place': {
      run: () => ctx.logprobsBackward(inPlace, targets, lse, g, { inPlace: true }),
      amount: N * V,
      unit: 'G elem/s',
      bytes: 2 * N * V * 4,
      js: () => js.logprobsBackward(jx, jt, jl8, g.subarray(0, n8), { inPlace: true }),
      jsAmount: n8 * V,
    },
    'gatherProbs 256 tokens × |V*| 256, V 151936': {
      run: async () =>
        (await ctx.gatherProbs(logits, lse, { layout: gatherLayout, vocab: gatherVocab })).dispose(),
      amount: gatherAmount,
      unit: 'G probs/s',
      // One 64-byte line per probability (random columns), 4 bytes written.
      bytes: gatherAmount * 68,
      js: () => js.gatherProbs(jgx, lseHost, { layout: gatherLayout, vocab: jgv }),
      jsAmount: gatherAmount,
      kernel: () =>
        dev.gatherProbs({
          logits: arrayOf(logits),
          dtype: 'f32',
          lse: arrayOf(lse),
          numTokens: N,
          vocab: V,
          temperature: 1,
          columns: gatherColumns,
          groupTokenOffsets: new Int32Array([0, N]),
          vocabOffsets: new Int32Array([0, K]),
          probsOffsets: new Float64Array([0, gatherAmount]),
          outProbs: kGather,
        }),
    },
    'advantages 1M responses, groups of 8': {
      run: async () => disposeAll(Object.values(await ctx.advantages(rewards, { groupSize: 8 }))),
      amount: R,
      unit: 'G resp/s',
      bytes: R * 8 + (R / 8) * 9,
      js: () => js.advantages(jr1, { groupSize: 8 }),
      jsAmount: R,
      kernel: () =>
        dev.advantages({
          rewards: arrayOf(rewards),
          groupOffsets: go8,
          estimator: 'grpo',
          std: 'sample',
          eps: 1e-6,
          scale: 'group',
          singleton: 'zero',
          nanRewards: 'propagate',
          whitenMaskEps: 0,
          whitenVariance: 'sample',
          whitenVarianceEps: 'add',
          outAdvantages: kAdv.out,
          outMean: kAdv.mean,
          outStd: kAdv.std,
          outDegenerate: kAdv.deg,
        }),
    },
    'expandToTokens 1M × 16': {
      run: async () => (await ctx.expandToTokens(rewards, ro)).dispose(),
      amount: R * 16,
      unit: 'G tok/s',
      bytes: R * 8 + R * 16 * 4,
      js: () => js.expandToTokens(jr1, ro),
      jsAmount: R * 16,
      kernel: () => dev.expandToTokens({ values: arrayOf(rewards), responseOffsets: ro, out: kExpand }),
    },
    'whiten 4M': {
      run: async () => (await ctx.whiten(whitenIn)).dispose(),
      amount: 1 << 22,
      unit: 'G elem/s',
      bytes: (1 << 22) * 12,
      js: () => js.whiten(jw),
      jsAmount: 1 << 22,
      kernel: () =>
        dev.whiten({
          values: arrayOf(whitenIn),
          maskEps: 0,
          variance: 'sample',
          varianceEps: 'add',
          keepMean: false,
          out: kWhiten,
        }),
    },
    'THR 8 × 512 tokens, d 896, V* 2000': {
      run: async () =>
        disposeAll(
          Object.values(
            await ctx.tokenHiddenReward({
              hidden,
              probs,
              vocab,
              layout: thrCase.layout,
              correct: thrCase.correct,
            }),
          ),
        ),
      amount: thrFlops,
      unit: 'GFLOP/s',
      bytes: 0,
      js: () =>
        js.tokenHiddenReward({
          hidden: sh,
          probs: small.probs,
          vocab: sv,
          layout: small.layout,
          correct: small.correct,
        }),
      jsAmount: 2 * 500 * 896 * (256 + 512),
      jsReps: 1,
    },
    'thrReweight 1M tokens': {
      run: async () => (await ctx.thrReweight(rwCpu)).dispose(),
      amount: rwT,
      unit: 'G tok/s',
      bytes: rwT * 12,
      js: () => js.thrReweight(rwJs),
      jsAmount: rwT,
      kernel: () =>
        dev.thrReweight({
          tokenAdvantages: arrayOf(rwCpu.tokenAdvantages),
          thr: arrayOf(rwCpu.thr),
          tau: arrayOf(rwCpu.tau),
          responseOffsets: rwLayout.responseOffsets,
          groupOffsets: rwLayout.groupOffsets,
          correct: rwCorrect,
          degenerate: degenerate64,
          eta: eta64,
          mode: 'thr',
          p: 0.1,
          mask: true,
          out: kReweight,
        }),
    },
  };
  for (const p of policyRuns)
    ops[p.name] = {
      run: async () => disposeOutputs(await p.bench.run()),
      amount: p.T,
      unit: 'G tok/s',
      bytes: p.bench.bytes,
      js: async () => disposeOutputs(await p.jsBench.run()),
      jsAmount: p.jsT,
      ownRead: true,
    };
  for (const name of Object.keys(ops)) if (!chosen(name)) delete ops[name];
  // A buffer of each light op's byte count, for its own read probe.
  const ownProbe: Record<string, Uint8Array> = {};
  for (const [name, op] of Object.entries(ops))
    if (op.kernel || op.ownRead) ownProbe[name] = new Uint8Array(op.bytes).fill(1);

  const perRound: Record<string, number[]> = {};
  const push = (k: string, v: number) => {
    perRound[k] ??= [];
    perRound[k].push(v);
  };
  const ortSessions = ort.ort
    ? await Promise.all([1, T].map((t) => ortLogprobs(ort.ort!, t, x, targets, V)))
    : [];
  for (let round = 0; round < rounds; round++) {
    for (const [name, op] of Object.entries(ops)) {
      // The light ops take milliseconds: more reps for a steadier median on a shared machine.
      const r = op.kernel || op.ownRead ? 4 * reps : reps;
      push(`cpu|${name}`, await timeMs(r, op.run));
      if (op.kernel) push(`kernel|${name}`, await timeMs(r, op.kernel));
      if (ownProbe[name]) push(`own|${name}`, (await dev.readProbe(ownProbe[name])) * 1e3);
      push(`js|${name}`, await timeMs(op.jsReps ?? 3, op.js));
    }
    // The logits tensors' own arrays: the memory the ops read (uploads sit on 2 MiB pages, the host
    // arrays they were copied from on 4 KiB ones).
    push('probe|read f32', (await dev.readProbe(arrayOf(logits))) * 1e3);
    push('probe|read bf16', (await dev.readProbe(arrayOf(logitsBf16))) * 1e3);
    push('probe|fma', (thrFlops / (await dev.fmaProbe())) * 1e3); // ms the THR FLOPs take at peak
    for (const [k, s] of ortSessions.entries()) push(`ort|${k === 0 ? 1 : T}`, await timeMs(reps, s.run));
    if (torch.python) {
      const r = spawnSync(
        torch.python,
        [
          new URL('./peers/torch_logprobs.py', import.meta.url).pathname,
          String(N),
          String(V),
          String(T),
          String(reps),
        ],
        { encoding: 'utf8' },
      );
      if (r.status === 0) {
        const o = JSON.parse(r.stdout.trim().split('\n').pop()!) as { ms: number; torch: string };
        push('torch', o.ms);
        if (round === 0) notes.push(`PyTorch ${o.torch} (${torch.python}), ${T} threads`);
      } else if (round === 0) notes.push(`PyTorch failed: ${r.stderr.split('\n').slice(-3).join(' ')}`);
    }
  }
  for (const s of ortSessions) await s.close();
  for (const p of policyRuns) {
    p.bench.dispose();
    p.jsBench.dispose();
  }
  if (ort.version) notes.push(`ONNX Runtime ${ort.version} (onnxruntime-node), 1 and ${T} intra-op threads`);

  const lmhead = chosen('lmhead') ? await measureLmhead(ctx, js, dev, ort, T, rounds, notes) : undefined;

  // ------------------------------------------------------------------ rows and goals
  const common = commonOf();
  const rows: CpuBenchRow[] = [];
  const rateOf = (k: string, amount: number) => amount / med(perRound[k]) / 1e6;
  // Per round: an op's GB/s over a probe's (probe: ms per `probeBytes`), then the median.
  const ofProbe = (k: string, bytes: number, probe: string, probeBytes: number) =>
    med(perRound[k].map((ms, i) => bytes / ms / (probeBytes / perRound[probe][i])));
  /** One row from the per-round times under `key`; with `bytes`, its GB/s and the read probes' fractions. */
  const row = (
    benchmark: string,
    impl: string,
    threads: number,
    key: string,
    amount: number,
    unit: string,
    bytes = 0,
    own?: string,
  ) => {
    const r: CpuBenchRow = {
      ...common,
      benchmark,
      impl,
      threads,
      ms: med(perRound[key]),
      rate: rateOf(key, amount),
      unit,
    };
    if (bytes > 0) {
      r.gbs = rateOf(key, bytes);
      if (key !== own) r.ofReadProbe = ofProbe(key, bytes, 'probe|read f32', N * V * 4);
      if (own !== undefined && key !== own) r.ofOwnReadProbe = ofProbe(key, bytes, own, bytes);
    }
    rows.push(r);
  };
  for (const [name, op] of Object.entries(ops)) {
    const own = ownProbe[name] ? `own|${name}` : undefined;
    row(name, 'cpu', T, `cpu|${name}`, op.amount, op.unit, op.bytes, own);
    if (op.kernel) row(name, 'cpu, native job alone', T, `kernel|${name}`, op.amount, op.unit, op.bytes, own);
    if (own) row(name, "read probe (the op's bytes)", T, own, op.amount, op.unit, op.bytes, own);
    row(name, 'js (float64 reference)', 1, `js|${name}`, op.jsAmount, op.unit);
  }
  if (chosen(lp) || chosen('logprobs bf16')) {
    row(lp, 'read probe (same bytes)', T, 'probe|read f32', N * V, 'G elem/s');
    row('logprobs bf16 [256, 151936]', 'read probe (same bytes)', T, 'probe|read bf16', N * V, 'G elem/s');
  }
  const thrName = 'THR 8 × 512 tokens, d 896, V* 2000';
  if (ops[thrName]) row(thrName, 'f32 FMA peak probe', T, 'probe|fma', thrFlops, 'GFLOP/s');
  for (const t of [1, T]) if (perRound[`ort|${t}`]) row(lp, 'ONNX Runtime', t, `ort|${t}`, N * V, 'G elem/s');
  if (perRound.torch) row(lp, 'PyTorch', T, 'torch', N * V, 'G elem/s');

  // Ratios per round, then their median.
  const ratio = (a: string, b: string) => med(perRound[a].map((v, i) => perRound[b][i] / v));
  const goals: CpuGoal[] = [];
  const goal = (benchmark: string, measured: number, g: number, what: string) =>
    goals.push({ benchmark, measured, goal: g, what, met: measured >= g });
  const lpk = `cpu|${lp}`;
  const bf = 'logprobs bf16 [256, 151936]';
  const ent = 'logprobs f32 + entropy + Σp²';
  if (ops[lp]) {
    if (perRound[`ort|${T}`]) {
      goal(lp, ratio(lpk, `ort|${T}`), 2, `× ONNX Runtime on ${T} threads`);
      goal(lp, ratio(lpk, 'ort|1'), 2, '× ONNX Runtime on 1 thread');
    }
    if (perRound.torch) goal(lp, ratio(lpk, 'torch'), 7, `× PyTorch on ${T} threads`);
    goal(lp, ratio(lpk, 'probe|read f32'), 0.5, 'of the streaming read of the same bytes');
    if (ops[bf]) goal(bf, ratio(`cpu|${bf}`, lpk), 1.5, '× the f32 rate');
    if (ops[ent]) goal(ent, ratio(`cpu|${ent}`, lpk), 0.8, '× the plain forward');
  }
  for (const k of ['logprobsBackward f32, out of place', 'logprobsBackward f32, in place'])
    if (ops[k]) goal(k, rateOf(`cpu|${k}`, N * V), 1.5, 'G elements/s');
  if (ops[thrName])
    goal(thrName, ratio(`cpu|${thrName}`, 'probe|fma'), 0.5, `of the f32 FMA peak of ${T} threads`);
  if (ops[plName])
    goal(plName, ratio(`cpu|${plName}`, `own|${plName}`), 0.3, 'of a streaming read of its bytes');
  const adv = 'advantages 1M responses, groups of 8';
  if (ops[adv]) goal(adv, rateOf(`cpu|${adv}`, R) * 1e3, 300, 'M responses/s');
  // × the js reference: per round, the rates' ratio (the js reference runs on its own sizes).
  for (const [name, op] of Object.entries(ops))
    goal(
      name,
      med(perRound[`cpu|${name}`].map((ms, i) => op.amount / ms / (op.jsAmount / perRound[`js|${name}`][i]))),
      20,
      '× the js reference',
    );

  const lm = lmhead ? lmheadResults(lmhead, common, T, notes) : { rows: [], goals: [] };
  return finish([...rows, ...lm.rows], [...goals, ...lm.goals]);
}

function printResults(
  common: Pick<CpuBenchRow, 'device' | 'load'>,
  rows: CpuBenchRow[],
  goals: CpuGoal[],
  notes: string[],
): void {
  console.log(`native cpu backend vs peers; ${common.device}; node ${process.version}; load ${common.load}`);
  console.table(
    rows.map((r) => ({
      benchmark: r.benchmark,
      impl: r.impl,
      threads: r.threads,
      ms: Number.isNaN(r.ms) ? '' : r.ms.toFixed(2),
      rate: `${r.rate.toPrecision(3)} ${r.unit}`,
      'GB/s': r.gbs === undefined ? '' : r.gbs.toFixed(2),
      'of read': r.ofReadProbe === undefined ? '' : `${(100 * r.ofReadProbe).toFixed(0)}%`,
      'of own read': r.ofOwnReadProbe === undefined ? '' : `${(100 * r.ofOwnReadProbe).toFixed(0)}%`,
      'peak MB': r.peakMB === undefined ? '' : r.peakMB.toFixed(1),
    })),
  );
  console.table(
    goals.map((g) => ({
      benchmark: g.benchmark,
      measured: `${g.measured.toPrecision(3)} ${g.what}`,
      goal: `≥ ${g.goal}`,
      met: g.met ? 'yes' : 'NO',
    })),
  );
  for (const n of notes) console.log(`note: ${n}`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const arg = (n: string) => {
    const i = args.indexOf(n);
    return i >= 0 ? Number(args[i + 1]) : undefined;
  };
  const i = args.indexOf('--only');
  const only = i >= 0 ? args[i + 1].split(',') : undefined;
  const result = await runCpuBench({ rounds: arg('--rounds'), threads: arg('--threads'), only });
  const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : undefined;
  if (out !== undefined) writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
}
