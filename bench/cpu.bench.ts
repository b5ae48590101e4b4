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
 * implementation once more, so a burst of load hits them alike), and each ratio is the median of the
 * per-round ratios. The load average before and after is recorded with the rows.
 *
 *   npm run bench:cpu                # = tsx bench/run.ts cpu → bench/out/cpu.json
 *   npx tsx bench/cpu.bench.ts [--rounds 3] [--threads 2] [--only lmhead] [--out FILE.json]
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { loadNativeAddon } from '../src/backends/addon.js';
import type { NativeCpuDevice } from '../src/backends/cpu/native.js';
import { createContext, lmheadScratchBytes, type Tensor } from '../src/index.js';
import { makeThrCase, uniformGroup } from '../test/fixtures/thr.js';
import { loadOrt, ortLmhead, ortLogprobs } from './peers/onnx.js';

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
  opts: { rounds?: number; threads?: number; reps?: number; print?: boolean; only?: 'lmhead' } = {},
): Promise<{ rows: CpuBenchRow[]; goals: CpuGoal[]; notes: string[] }> {
  const rounds = opts.rounds ?? 3;
  const reps = opts.reps ?? 5;
  const print = opts.print ?? true;
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
  const ort = loadOrt();
  if (ort.reason) notes.push(`ONNX Runtime skipped: ${ort.reason}`);
  const torch = findTorchPython();
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
  if (opts.only === 'lmhead') {
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
  const g = randomF32(N, 2, 1);
  const R = 1 << 20;
  const rewards = ctx.tensor(randomF32(R, 3, 1));
  const thrCase = makeThrCase({
    seed: 1,
    groups: [uniformGroup(8, 512, 4)],
    dim: 896,
    vocabSize: V,
    exactVocab: 2000,
  });
  const thrFlops = 2 * 2000 * 896 * (2048 + 4096);
  const vocab = await ctx.restrictedVocab(thrCase.tokens, thrCase.layout);
  const hidden = ctx.tensor(thrCase.hidden as Float32Array, [thrCase.numTokens, 896]);
  const probs = ctx.tensor(thrCase.probs);
  const ro = Int32Array.from({ length: R + 1 }, (_, i) => i * 16);
  // gatherProbs on the same logits: one group of 16 responses × 16 tokens = the 256 rows, its tokens
  // spread over the vocabulary (|V*| ≈ 256: 64k probabilities).
  const gatherLayout = {
    responseOffsets: Int32Array.from({ length: 17 }, (_, i) => i * 16),
    groupOffsets: new Int32Array([0, 16]),
  };
  const gatherTokens = Int32Array.from({ length: N }, (_, i) => (i * 104729) % V);
  const gatherVocab = await ctx.restrictedVocab(gatherTokens, gatherLayout);
  const gatherAmount = N * gatherVocab.host.offsets[1];
  const whitenIn = ctx.tensor(randomF32(1 << 22, 4, 1));
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

  const disposeAll = (ts: (Tensor | undefined)[]) => {
    for (const t of ts) t?.dispose();
  };
  // bytes: the least the op must move (inputs read + outputs written), for GB/s and the fraction of the
  // streaming read's rate measured in the same round.
  const ops: Record<string, { run: () => Promise<unknown>; amount: number; unit: string; bytes: number }> = {
    'logprobs f32 [256, 151936]': {
      run: async () => disposeAll(Object.values(await ctx.logprobs(logits, targets))),
      amount: N * V,
      unit: 'G elem/s',
      bytes: N * V * 4,
    },
    'logprobs bf16 [256, 151936]': {
      run: async () => disposeAll(Object.values(await ctx.logprobs(logitsBf16, targets))),
      amount: N * V,
      unit: 'G elem/s',
      bytes: N * V * 2,
    },
    'logprobs f32 + entropy + Σp²': {
      run: async () =>
        disposeAll(Object.values(await ctx.logprobs(logits, targets, { entropy: true, sumSquares: true }))),
      amount: N * V,
      unit: 'G elem/s',
      bytes: N * V * 4,
    },
    'logprobsBackward f32, out of place': {
      run: async () => (await ctx.logprobsBackward(logits, targets, lse, g)).dispose(),
      amount: N * V,
      unit: 'G elem/s',
      bytes: 2 * N * V * 4,
    },
    'logprobsBackward f32, in place': {
      run: () => ctx.logprobsBackward(inPlace, targets, lse, g, { inPlace: true }),
      amount: N * V,
      unit: 'G elem/s',
      bytes: 2 * N * V * 4,
    },
    'gatherProbs 256 tokens × |V*| 256, V 151936': {
      run: async () =>
        (await ctx.gatherProbs(logits, lse, { layout: gatherLayout, vocab: gatherVocab })).dispose(),
      amount: gatherAmount,
      unit: 'G probs/s',
      bytes: gatherAmount * 8,
    },
    'advantages 1M responses, groups of 8': {
      run: async () => disposeAll(Object.values(await ctx.advantages(rewards, { groupSize: 8 }))),
      amount: R,
      unit: 'G resp/s',
      bytes: R * 8 + (R / 8) * 9,
    },
    'expandToTokens 1M × 16': {
      run: async () => (await ctx.expandToTokens(rewards, ro)).dispose(),
      amount: R * 16,
      unit: 'G tok/s',
      bytes: R * 8 + R * 16 * 4,
    },
    'whiten 4M': {
      run: async () => (await ctx.whiten(whitenIn)).dispose(),
      amount: 1 << 22,
      unit: 'G elem/s',
      bytes: (1 << 22) * 12,
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
    },
    'thrReweight 1M tokens': {
      run: async () => (await ctx.thrReweight(rwCpu)).dispose(),
      amount: rwT,
      unit: 'G tok/s',
      bytes: rwT * 16,
    },
  };

  const perRound: Record<string, number[]> = {};
  const push = (k: string, v: number) => {
    perRound[k] ??= [];
    perRound[k].push(v);
  };
  const ortSessions = ort.ort
    ? await Promise.all([1, T].map((t) => ortLogprobs(ort.ort!, t, x, targets, V)))
    : [];
  for (let round = 0; round < rounds; round++) {
    for (const [name, op] of Object.entries(ops)) push(`cpu|${name}`, await timeMs(reps, op.run));
    push('probe|read f32', (await dev.readProbe(x)) * 1e3);
    push('probe|read bf16', (await dev.readProbe(xb)) * 1e3);
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
  if (ort.version) notes.push(`ONNX Runtime ${ort.version} (onnxruntime-node), 1 and ${T} intra-op threads`);

  // The js reference, once per op, at sizes it finishes in seconds (rates are per unit of work).
  const jsRate: Record<string, number> = {};
  {
    const n8 = 8;
    const xs = js.tensor(x.subarray(0, n8 * V), [n8, V]);
    const ts = targets.subarray(0, n8);
    const { lse: l8 } = await js.logprobs(xs, ts);
    const xsb = js.tensor(xb.subarray(0, n8 * V), [n8, V], 'bf16');
    const jr = async (name: string, amount: number, f: () => Promise<unknown>) => {
      jsRate[name] = amount / (await timeMs(name.startsWith('THR') ? 1 : 3, f)) / 1e6;
    };
    await jr('logprobs f32 [256, 151936]', n8 * V, () => js.logprobs(xs, ts));
    await jr('logprobs bf16 [256, 151936]', n8 * V, () => js.logprobs(xsb, ts));
    await jr('logprobs f32 + entropy + Σp²', n8 * V, () =>
      js.logprobs(xs, ts, { entropy: true, sumSquares: true }),
    );
    await jr('logprobsBackward f32, out of place', n8 * V, () =>
      js.logprobsBackward(xs, ts, l8, g.subarray(0, n8)),
    );
    await jr('logprobsBackward f32, in place', n8 * V, () =>
      js.logprobsBackward(xs, ts, l8, g.subarray(0, n8), { inPlace: true }),
    );
    const jgx = js.tensor(x, [N, V]);
    const jgv = await js.restrictedVocab(gatherTokens, gatherLayout);
    const jgl = await lse.read();
    await jr('gatherProbs 256 tokens × |V*| 256, V 151936', gatherAmount, () =>
      js.gatherProbs(jgx, jgl, { layout: gatherLayout, vocab: jgv }),
    );
    const jr1 = js.tensor(await rewards.read());
    await jr('advantages 1M responses, groups of 8', R, () => js.advantages(jr1, { groupSize: 8 }));
    await jr('expandToTokens 1M × 16', R * 16, () => js.expandToTokens(jr1, ro));
    const jw = js.tensor(await whitenIn.read());
    await jr('whiten 4M', 1 << 22, () => js.whiten(jw));
    // 8 × 64 tokens, |V*| 500: the same kernel at a size float64 JavaScript finishes in seconds.
    const small = makeThrCase({
      seed: 2,
      groups: [uniformGroup(8, 64, 4)],
      dim: 896,
      vocabSize: V,
      exactVocab: 500,
    });
    const sv = await js.restrictedVocab(small.tokens, small.layout);
    const sh = js.tensor(small.hidden as Float32Array, [small.numTokens, 896]);
    await jr('THR 8 × 512 tokens, d 896, V* 2000', 2 * 500 * 896 * (256 + 512), () =>
      js.tokenHiddenReward({
        hidden: sh,
        probs: small.probs,
        vocab: sv,
        layout: small.layout,
        correct: small.correct,
      }),
    );
    const rwJs = reweightArgs(js);
    await jr('thrReweight 1M tokens', rwT, () => js.thrReweight(rwJs));
  }

  const lmhead = await measureLmhead(ctx, js, dev, ort, T, rounds, notes);

  // ------------------------------------------------------------------ rows and goals
  const common = commonOf();
  const rows: CpuBenchRow[] = [];
  const rateOf = (k: string, amount: number) => amount / med(perRound[k]) / 1e6;
  for (const [name, op] of Object.entries(ops)) {
    rows.push({
      ...common,
      benchmark: name,
      impl: 'cpu',
      threads: T,
      ms: med(perRound[`cpu|${name}`]),
      rate: rateOf(`cpu|${name}`, op.amount),
      unit: op.unit,
      ...(op.bytes > 0
        ? {
            gbs: rateOf(`cpu|${name}`, op.bytes),
            // Per round: this op's GB/s over the read probe's, then the median.
            ofReadProbe: med(
              perRound[`cpu|${name}`].map(
                (ms, i) => op.bytes / ms / ((N * V * 4) / perRound['probe|read f32'][i]),
              ),
            ),
          }
        : {}),
    });
    rows.push({
      ...common,
      benchmark: name,
      impl: 'js (float64 reference)',
      threads: 1,
      ms: Number.NaN,
      rate: jsRate[name],
      unit: op.unit,
    });
  }
  const lp = 'logprobs f32 [256, 151936]';
  rows.push({
    ...common,
    benchmark: lp,
    impl: 'read probe (same bytes)',
    threads: T,
    ms: med(perRound['probe|read f32']),
    rate: rateOf('probe|read f32', N * V),
    unit: 'G elem/s',
  });
  rows.push({
    ...common,
    benchmark: 'logprobs bf16 [256, 151936]',
    impl: 'read probe (same bytes)',
    threads: T,
    ms: med(perRound['probe|read bf16']),
    rate: rateOf('probe|read bf16', N * V),
    unit: 'G elem/s',
  });
  rows.push({
    ...common,
    benchmark: 'THR 8 × 512 tokens, d 896, V* 2000',
    impl: 'f32 FMA peak probe',
    threads: T,
    ms: med(perRound['probe|fma']),
    rate: rateOf('probe|fma', thrFlops),
    unit: 'GFLOP/s',
  });
  for (const t of [1, T])
    if (perRound[`ort|${t}`])
      rows.push({
        ...common,
        benchmark: lp,
        impl: 'ONNX Runtime',
        threads: t,
        ms: med(perRound[`ort|${t}`]),
        rate: rateOf(`ort|${t}`, N * V),
        unit: 'G elem/s',
      });
  if (perRound.torch)
    rows.push({
      ...common,
      benchmark: lp,
      impl: 'PyTorch',
      threads: T,
      ms: med(perRound.torch),
      rate: rateOf('torch', N * V),
      unit: 'G elem/s',
    });

  // Ratios per round, then their median.
  const ratio = (a: string, b: string) => med(perRound[a].map((v, i) => perRound[b][i] / v));
  const goals: CpuGoal[] = [];
  const goal = (benchmark: string, measured: number, g: number, what: string) =>
    goals.push({ benchmark, measured, goal: g, what, met: measured >= g });
  const lpk = `cpu|${lp}`;
  if (perRound[`ort|${T}`]) {
    goal(lp, ratio(lpk, `ort|${T}`), 2, `× ONNX Runtime on ${T} threads`);
    goal(lp, ratio(lpk, 'ort|1'), 2, '× ONNX Runtime on 1 thread');
  }
  if (perRound.torch) goal(lp, ratio(lpk, 'torch'), 7, `× PyTorch on ${T} threads`);
  goal(lp, ratio(lpk, 'probe|read f32'), 0.5, 'of the streaming read of the same bytes');
  goal('logprobs bf16 [256, 151936]', ratio(`cpu|logprobs bf16 [256, 151936]`, lpk), 1.5, '× the f32 rate');
  goal(
    'logprobs f32 + entropy + Σp²',
    ratio(`cpu|logprobs f32 + entropy + Σp²`, lpk),
    0.8,
    '× the plain forward',
  );
  for (const k of ['logprobsBackward f32, out of place', 'logprobsBackward f32, in place'])
    goal(k, rateOf(`cpu|${k}`, N * V), 1.5, 'G elements/s');
  goal(
    'THR 8 × 512 tokens, d 896, V* 2000',
    ratio('cpu|THR 8 × 512 tokens, d 896, V* 2000', 'probe|fma'),
    0.5,
    `of the f32 FMA peak of ${T} threads`,
  );
  goal(
    'advantages 1M responses, groups of 8',
    rateOf('cpu|advantages 1M responses, groups of 8', R) * 1e3,
    300,
    'M responses/s',
  );
  for (const [name, op] of Object.entries(ops))
    goal(name, rateOf(`cpu|${name}`, op.amount) / jsRate[name], 20, '× the js reference');

  const lm = lmheadResults(lmhead, common, T, notes);
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
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
  if (only !== undefined && only !== 'lmhead') throw new Error(`--only: expected 'lmhead', got '${only}'`);
  const result = await runCpuBench({ rounds: arg('--rounds'), threads: arg('--threads'), only });
  const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : undefined;
  if (out !== undefined) writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
}
