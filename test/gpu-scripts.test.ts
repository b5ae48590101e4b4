/**
 * The GPU run's own checks, here without a GPU (scripts/gpu/run.sh, vitest-gate.mjs): a GPU minute
 * must not be spent finding out that the tests skipped, that the plan does not fit, or that no GPU
 * is there. The full rehearsal on the CUDA emulator is scripts/gpu/dry-run.sh (minutes, not here).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { rng } from './util/rng.js';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const GATE = join(ROOT, 'scripts/gpu/vitest-gate.mjs');
const RUN = join(ROOT, 'scripts/gpu/run.sh');

type Status = 'passed' | 'failed' | 'skipped' | 'todo';
/** A vitest JSON report (--reporter=json) with one file of the given tests. */
function report(tests: [string[], string, Status][], file = '/repo/test/cuda/ops.test.ts') {
  return {
    numTotalTests: tests.length,
    success: tests.every(([, , s]) => s !== 'failed'),
    testResults: [
      {
        name: file,
        status: tests.some(([, , s]) => s === 'failed') ? 'failed' : 'passed',
        message: '',
        assertionResults: tests.map(([ancestorTitles, title, status]) => ({
          ancestorTitles,
          title,
          fullName: [...ancestorTitles, title].join(' '),
          status,
          failureMessages: [],
        })),
      },
    ],
  };
}

const dir = mkdtempSync(join(tmpdir(), 'gpu-scripts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function gate(rep: unknown, args: string[] = [], cmd: string[] = []) {
  const json = join(dir, `r${n++}.json`);
  if (rep !== undefined) writeFileSync(json, JSON.stringify(rep));
  const r = spawnSync(
    process.execPath,
    [GATE, '--json', json, ...args, ...(cmd.length ? ['--', ...cmd] : [])],
    {
      encoding: 'utf8',
    },
  );
  return { status: r.status, out: r.stdout + r.stderr };
}

const PASS: [string[], string, Status] = [['cuda logprobs vs cpu'], '[16, 151936] f32 T=1', 'passed'];
// Titles as they are in test/cuda/load.test.ts and ops.test.ts (checked against the sources below).
const LOAD_SKIPS: [string[], string, Status][] = [
  [['native addon: build and load'], 'the CPU-only build loads and reports why CUDA is missing', 'skipped'],
  [['cuda backend without a usable GPU'], 'auto skips cuda and records why', 'skipped'],
];
const OOM: [string[], string, Status] = [
  ['cuda device errors'],
  'an allocation larger than the device is OUT_OF_MEMORY, and the context keeps working',
  'skipped',
];
const BIG: [string[], string, Status] = [
  ['cuda review: 64-bit offsets, in-place backward, error flags'],
  '[14200, 151936] bf16: forward and backward rows past 2^31 elements are within the tolerance',
  'skipped',
];

describe('vitest-gate: a GPU test that skipped fails the step', () => {
  it('passes when only the skips right on a GPU machine happened', () => {
    const r = gate(report([PASS, ...LOAD_SKIPS]));
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain('1 passed, 0 failed, 2 skipped (2 expected)');
  });

  it('fails, naming it, when a GPU test skipped although vitest passed', () => {
    const skipped: [string[], string, Status] = [['cuda THR vs cpu'], 'groups 3/5/2 d=64 bf16', 'skipped'];
    const r = gate(report([PASS, ...LOAD_SKIPS, skipped]), [], [process.execPath, '-e', 'process.exit(0)']);
    expect(r.status, r.out).toBe(1);
    expect(r.out).toContain(
      'FAIL: 1 skipped that must run here: test/cuda/ops.test.ts > cuda THR vs cpu > groups',
    );
  });

  it('every GPU test skipped (no device): fails', () => {
    const all = report([
      [['cuda logprobs vs cpu'], 'a', 'skipped'],
      [['cuda advantages vs cpu'], 'b', 'skipped'],
    ]);
    const r = gate(all);
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/no test passed; 2 skipped that must run here/);
  });

  it('the sanitizer cases skip only where --allow sanitizer says so', () => {
    expect(gate(report([PASS, OOM, BIG])).status).toBe(1);
    const r = gate(report([PASS, OOM, BIG]), ['--allow', 'sanitizer']);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain('2 skipped (2 expected)');
    // Several --allow flags add up.
    expect(gate(report([PASS, OOM]), ['--allow', 'emulator', '--allow', 'sanitizer']).status).toBe(0);
  });

  it('failed tests, a failed run, a missing or broken report: not ok, with the reason', () => {
    const failed = gate(report([PASS, [['x'], 'y', 'failed']]));
    expect(failed.status).toBe(1);
    expect(failed.out).toContain('1 failed');
    const crashed = gate(report([PASS]), [], [process.execPath, '-e', 'process.exit(3)']);
    expect(crashed.status).toBe(3);
    expect(crashed.out).toContain('FAIL: the run exited 3');
    const missing = gate(undefined);
    expect(missing.status).toBe(1);
    expect(missing.out).toContain('no vitest JSON report');
    const broken = report([]);
    broken.testResults[0].status = 'failed';
    const b = gate(broken);
    expect(b.status).toBe(1);
    expect(b.out).toContain('1 file(s) did not run: test/cuda/ops.test.ts');
  });

  it('writes its line to --note (run.sh puts it beside the step in steps.txt)', () => {
    const note = join(dir, 'note.txt');
    gate(report([PASS, ...LOAD_SKIPS]), ['--note', note]);
    expect(readFileSync(note, 'utf8')).toBe('1 passed, 0 failed, 2 skipped (2 expected)\n');
    expect(gate(report([PASS]), ['--allow', 'nonsense']).status).not.toBe(0);
  });

  it('the allowed skips still name tests that exist (a renamed test must not fail a GPU run)', () => {
    const sources = readdirSync(join(ROOT, 'test/cuda'))
      .filter((f) => f.endsWith('.test.ts'))
      .map((f) => readFileSync(join(ROOT, 'test/cuda', f), 'utf8'))
      .join('\n');
    for (const [anc, title] of [...LOAD_SKIPS, OOM, BIG]) {
      expect(sources).toContain(anc[0]);
      expect(sources).toContain(title.replace('[14200, 151936] ', ''));
    }
    expect(sources).toContain('GRPO_KERNELS_SANITIZER');
  });
});

function run(env: Record<string, string>, args: string[] = []) {
  const out = mkdtempSync(join(dir, 'run-'));
  const t0 = Date.now();
  const r = spawnSync('bash', [RUN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, OUT: out, ONLY: '', DEADLINE_S: '', DRY_RUN: '', ...env },
    timeout: 60_000,
  });
  return { status: r.status, out: r.stdout + r.stderr, dir: out, seconds: (Date.now() - t0) / 1000 };
}

describe('run.sh: the plan and the stop when no GPU is seen', () => {
  it('--plan: every step has an estimate, and their sum fits the 500 s deadline', () => {
    const r = run({}, ['--plan']);
    expect(r.status, r.out).toBe(0);
    const total = Number(/estimates total (\d+)s of 500s/.exec(r.out)?.[1]);
    const steps = [...r.out.matchAll(/^ {2}(\S+)\s+est\s+(\d+)s, box\s+(\d+)s/gm)];
    expect(steps.map((m) => m[1])).toContain('cuda-tests');
    const unconditional = steps.filter((m) => m[1] !== 'native');
    const setup = Number(/^ {2}setup\s+est\s+(\d+)s/m.exec(r.out)?.[1]);
    expect(total).toBe(setup + unconditional.reduce((s, m) => s + Number(m[2]), 0));
    for (const m of steps) expect(Number(m[2]), m[1]).toBeLessThanOrEqual(Number(m[3]));
    expect(r.out).not.toContain('WARNING');
  });

  it('--plan warns (exit 1) when the estimates exceed the deadline, and follows ONLY', () => {
    const over = run({ DEADLINE_S: '200' }, ['--plan']);
    expect(over.status).toBe(1);
    expect(over.out).toMatch(/WARNING: the estimates \(\d+s\) exceed the deadline \(200s\)/);
    const only = run({ DEADLINE_S: '200', ONLY: 'torch sass' }, ['--plan']);
    expect(only.status, only.out).toBe(0);
    // The total is setup's estimate and the two steps', and no other step is listed.
    const est = (name: string) => Number(new RegExp(`^  ${name} +est +(\\d+)s`, 'm').exec(only.out)?.[1]);
    const listed = [...only.out.matchAll(/^ {2}(\S+) +est /gm)].map((m) => m[1]);
    expect(listed).toEqual(['setup', 'native', 'torch', 'sass']); // (native: only if the addon fails)
    expect(only.out).toContain(`estimates total ${est('setup') + est('torch') + est('sass')}s of 200s`);
  });

  it('a step name in ONLY that is not a step, or a DEADLINE_S that is not a number, stops at once', () => {
    const typo = run({ ONLY: 'cuda-test' }, ['--plan']);
    expect(typo.status).toBe(1);
    expect(typo.out).toContain("ONLY names 'cuda-test', which is not a step");
    const r = run({ ONLY: 'torch cuda-test' });
    expect(r.status).toBe(2);
    expect(readFileSync(join(r.dir, 'steps.txt'), 'utf8')).toMatch(
      /^FATAL after \d+s: run.sh: ONLY names 'cuda-test'/m,
    );
    expect(run({ DEADLINE_S: '8m' }, ['--plan']).out).toContain('DEADLINE_S=8m is not a number');
  });

  it('no GPU: stops within seconds with a FATAL line in steps.txt, nothing unpacked or run', () => {
    // The stand-in nvidia-smi of the dry run, answering as nvidia-smi does when no GPU is visible.
    const PATH = `${join(ROOT, 'scripts/gpu/dry')}:${process.env.PATH}`;
    const r = run({ PATH, DRY_NO_GPU: '1' });
    expect(r.status, r.out).toBe(2);
    expect(r.seconds).toBeLessThan(10);
    const steps = readFileSync(join(r.dir, 'steps.txt'), 'utf8');
    expect(steps).toMatch(/^FATAL after \d+s: no GPU seen: nvidia-smi -L exited 6: No devices were found$/m);
    expect(steps).toMatch(/^== summary: STOPPED/m);
    expect(steps).not.toMatch(/^cuda-tests/m);
    expect(readdirSync(r.dir).sort()).toEqual(['logs.tar.xz', 'steps.txt']);
  });
});

describe('goals.mjs: every case runs (on the native cpu backend, at tiny sizes)', () => {
  it('prints one JSON line per case, each timed, with no error', () => {
    // The goal script goes through the public API like a user; an API change it missed must fail here,
    // not on the GPU (it once passed `correct` as a tensor after the API made it host flags).
    const r = spawnSync(
      process.execPath,
      [
        join(ROOT, 'scripts/gpu/goals.mjs'),
        '--backend',
        'cpu',
        ...['--rows', '64', '--vocab', '1000', '--reps', '1', '--adv-reps', '1'],
        ...['--thr-tokens', '40', '--thr-d', '48', '--thr-vocab', '24', '--groups', '50'],
        ...['--lm-rows', '7', '--lm-dim', '48', '--lm-vocab', '1000'],
      ],
      { encoding: 'utf8', timeout: 120_000 },
    );
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { backend: string; case: string; ms_median: number });
    expect(new Set(lines.map((l) => l.case))).toEqual(
      new Set([
        'copy',
        'logprobs',
        'logprobs+entropy',
        'logprobs+entropy+sumSquares',
        'logprobsBackward',
        'tokenHiddenReward',
        'advantages',
        'policyLoss',
        'linearLogprobs',
        'linearLogprobs+entropy',
        'linearLogprobsBackward',
      ]),
    );
    for (const l of lines) {
      expect(l.backend).toBe('cpu');
      expect(l.ms_median).toBeGreaterThan(0);
    }
  });
});

describe('summarize.mjs: what a GPU call brought back, in the decision tables', () => {
  it('LM-head and THR tile sets against auto, PyTorch and the goals; failed tests by file; --jsonl rows', () => {
    // A files_at folder as run.sh leaves it: steps.txt, device.txt, logs.tar.xz of the step logs.
    const r = rng(77);
    const out = mkdtempSync(join(dir, 'files-at-'));
    const logs = mkdtempSync(join(dir, 'logs-'));
    const [N, d, V] = [8192, 4096, 151936];
    const fwdFlops = 2 * N * d * V;
    const sets = ['', ' tma-wide', ' tma-chain'];
    const harness: Record<string, unknown>[] = [];
    const ms: Record<string, number> = {};
    for (const set of sets) {
      for (const [kind, flops] of [
        ['linearLogprobs', fwdFlops],
        ['linearLogprobs+entropy', fwdFlops],
        ['linearLogprobsBackward', 2 * fwdFlops],
      ] as const) {
        const t = 10 + 90 * r();
        ms[kind + set] = t;
        harness.push({
          case: kind + set,
          sizes: { N, d, V, dtype: 'bf16' },
          flops,
          ms_median: t,
          tflops: flops / (t * 1e9),
        });
      }
      for (const prec of ['f32', 'tf32']) {
        const t = 2 + 10 * r();
        ms[`thr/${prec}${set}`] = t;
        // The harness's FNV-1a of thr and tau: auto's and tma-wide's, compared below.
        const bits = `${prec}${set}`.replace(/\W/g, '');
        harness.push({ case: `tokenHiddenReward/${prec}${set}`, ms_median: t, bits });
      }
    }
    // Bits the tests hold equal: 'tma-rounded' has auto's, 'tma' not 'tma-wide''s (a defect to show).
    harness.push({ case: 'tokenHiddenReward/tf32 tma-rounded', ms_median: 9, bits: 'tf32' });
    harness.push({ case: 'tokenHiddenReward/tf32 tma', ms_median: 9, bits: 'c0ffee' });
    // THR's batch rows (run.sh's THR_BATCH): the same case names, sizes.groups > 1, after the goal rows.
    for (const set of sets)
      for (const prec of ['f32', 'tf32']) {
        const t = 20 + 10 * r();
        ms[`batch/${prec}${set}`] = t;
        harness.push({
          case: `tokenHiddenReward/${prec}${set}`,
          sizes: { groups: 32, T: 131072, 'V*': 1024, d: 3584, 'T+': 65536 },
          ms_median: t,
          tflops: 1e3 / t,
        });
      }
    harness.push({ case: 'logprobs', ms_median: 1.3, gbps: 3900, fraction: 0.93 });
    const torchTf32 = 2 + r();
    writeFileSync(
      join(logs, 'harness.log'),
      `[harness] progress on stderr\n${harness.map((h) => JSON.stringify(h)).join('\n')}\n`,
    );
    writeFileSync(
      join(logs, 'torch.log'),
      `${JSON.stringify({ op: 'thr_matrix_form_tf32', ms_median: torchTf32 })}\n`,
    );
    const failed: [string[], string, Status] = [
      ['cuda LM head'],
      'tma-chain has the bits of nothing',
      'failed',
    ];
    writeFileSync(
      join(logs, 'cuda-tests.json'),
      JSON.stringify({
        ...report([PASS, failed], '/repo/test/cuda/ops-lmhead-chain.test.ts'),
        numPassedTests: 1,
        numFailedTests: 1,
        numPendingTests: 0,
      }),
    );
    writeFileSync(join(logs, 'harness-paths.txt'), 'LM_PATHS=0,5\nTHR_PATHS=0\n');
    writeFileSync(join(out, 'steps.txt'), 'harness       ok      rc=0\n');
    writeFileSync(
      join(out, 'device.txt'),
      'date 2026-11-28T00:00:00Z; node v20\nNVIDIA H200, 580.159.04, 143771 MiB\n',
    );
    expect(spawnSync('tar', ['-cJf', join(out, 'logs.tar.xz'), '-C', logs, '.']).status).toBe(0);
    const jsonl = join(dir, 'rows.jsonl');
    const s = spawnSync(
      process.execPath,
      [join(ROOT, 'scripts/gpu/summarize.mjs'), out, '--commit', 'abc1234', '--call', '2', '--jsonl', jsonl],
      { encoding: 'utf8' },
    );
    expect(s.status, s.stderr).toBe(0);
    const row = (name: string) => s.stdout.split('\n').find((l) => l.startsWith(`| ${name} |`)) ?? '';
    const sig = (x: number) => Number(x.toPrecision(3)).toString();
    for (const set of sets) {
      const name = set.trim() || 'auto';
      const f = ms[`linearLogprobs${set}`];
      const b = ms[`linearLogprobsBackward${set}`];
      const cells = row(name)
        .split('|')
        .map((c) => c.trim());
      // forward, + entropy, backward, fwd + bwd TFLOP/s, × auto (forward, backward)
      expect(cells[2]).toBe(`${sig(f)} ms = ${sig(fwdFlops / (f * 1e9))}`);
      expect(cells[5]).toBe(sig((3 * fwdFlops) / ((f + b) * 1e9)));
      expect(cells[6]).toBe(`${sig(ms.linearLogprobs / f)}x`);
      expect(cells[7]).toBe(`${sig(ms.linearLogprobsBackward / b)}x`);
    }
    const thrRows = s.stdout.split('\n').filter((l) => l.startsWith('| tma-wide |'));
    expect(thrRows).toHaveLength(3); // the LM-head row above, THR's goal row, THR's batch row
    const thrCells = thrRows[1].split('|').map((c) => c.trim());
    expect(thrCells[4]).toBe(sig(ms['thr/tf32 tma-wide']));
    expect(thrCells[5]).toBe(sig(ms['thr/tf32 tma-wide'] / torchTf32));
    expect(s.stdout).toContain('THR on a batch: 32 groups, T 131072, |V*| 1024 each, d 3584, T+ 65536.');
    const batchCells = thrRows[2].split('|').map((c) => c.trim());
    expect(batchCells[4]).toBe(sig(ms['batch/tf32 tma-wide']));
    expect(batchCells[6]).toBe(`${sig(ms['batch/tf32'] / ms['batch/tf32 tma-wide'])}x`);
    expect(s.stdout).toMatch(/cuda-tests: 1 passed, 1 failed, 0 skipped/);
    expect(s.stdout).toMatch(
      /test\/cuda\/ops-lmhead-chain\.test\.ts: 1 failed\n.*tma-chain has the bits of nothing/,
    );
    expect(s.stdout).toMatch(/LM_PATHS=0,5; THR_PATHS=0/);
    expect(s.stdout).toContain("- one group, 'tf32': auto, tma-rounded: the same bits");
    expect(s.stdout).toContain(
      "- one group, 'tf32': tma, tma-wide: DIFFER (tma c0ffee, tma-wide tf32tmawide)",
    );
    const rows = readFileSync(jsonl, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rows).toHaveLength(harness.length + 1);
    for (const x of rows)
      expect([x.commit, x.call, x.device, x.driver_version]).toEqual([
        'abc1234',
        2,
        'NVIDIA H200',
        '580.159.04',
      ]);
  });
});

describe("the dry run's ncu stand-in: which launches -k matches and whether -c covers them", () => {
  // A program that launches as the emulator logs launches (GK_EMU_LAUNCH_LOG: one name a line).
  const launches = [
    'thr_m_kernel<float, 128>',
    'lm_fwd_kernel<bf16>',
    'thr_scores_tma_kernel<true>',
    'thr_round_kernel',
  ];
  const ncu = (...opts: string[]) =>
    spawnSync(
      join(ROOT, 'scripts/gpu/dry/ncu'),
      [...opts, 'bash', '-c', 'printf "%s\\n" "$@" >>"$GK_EMU_LAUNCH_LOG"', 'program', ...launches],
      { encoding: 'utf8' },
    );
  it('a cap above 1 that leaves a matched launch out fails, naming it; one that covers them passes', () => {
    const cut = ncu('-k', 'regex:thr_', '-c', '2');
    expect(cut.status, cut.stdout).toBe(3);
    expect(cut.stdout).toMatch(/3 launch\(es\) match 'thr_'/);
    expect(cut.stdout).toMatch(/would run unprofiled:\n=+ +1 thr_round_kernel\n?$/);
    const all = ncu('--target-processes', 'all', '-k', 'regex:thr_', '-c', '3');
    expect(all.status, all.stdout).toBe(0);
  });
  it("-c 1 takes one sample launch (ncu-sol): passes; the program's own failure is its exit status", () => {
    expect(ncu('-k', 'regex:thr_', '-c', '1').status).toBe(0);
    const failing = spawnSync(join(ROOT, 'scripts/gpu/dry/ncu'), ['-c', '5', 'bash', '-c', 'exit 7'], {
      encoding: 'utf8',
    });
    expect(failing.status).toBe(7);
  });
});

describe("ncu-report.mjs and summarize.mjs: ncu's launches under the cases they ran in", () => {
  // One launch as ncu's text report prints it: the header, then sections of metric rows.
  const block = (name: string, grid: number[], rows: [string, string, string][]) =>
    [
      `  ${name} (${grid.join(', ')})x(256, 1, 1), Context 1, Stream 13, Device 0, CC 9.0`,
      '    Section: GPU Speed Of Light Throughput',
      '    ----------------------- ----------- ------------',
      '    Metric Name             Metric Unit Metric Value',
      '    ----------------------- ----------- ------------',
      ...rows.map(([n, u, v]) => `    ${n.padEnd(32)}${u.padStart(15)} ${v.padStart(12)}`),
      '    ----------------------- ----------- ------------',
      '',
      '    OPT   This kernel grid is too small to fill the available resources on this device, resulting in 0.5',
      '          full waves across all SMs. Look at Launch Statistics for more details.',
      '',
    ].join('\n');
  // Cases as the harness runs them under ncu-tiles: each call's launches, then its JSON row.
  const r = rng(91);
  const cases = [
    { case: 'tokenHiddenReward/tf32', kernels: ['thr_m_kernel', 'thr_scores_wgmma_kernel'] },
    {
      case: 'tokenHiddenReward/tf32 tma-m',
      kernels: ['thr_round_kernel', 'thr_mt_kernel', 'thr_m_tma_kernel', 'thr_scores_tma_kernel'],
    },
    { case: 'tokenHiddenReward/tf32', groups: 32, kernels: ['thr_m_kernel', 'thr_scores_wgmma_kernel'] },
  ].map((c) => ({
    ...c,
    launches: c.kernels.map((k) => ({
      k,
      us: 100 + 9000 * r(),
      sm: 100 * r(),
      regs: 1 + Math.floor(254 * r()),
    })),
  }));
  const program: string[] = ['==PROF== Connected to process 4242 (/work/build/bench/harness)'];
  const reportBlocks: string[] = ['[4242] harness@127.0.0.1'];
  for (const c of cases) {
    program.push('[harness] thr: 1 group of 8 × 2048 tokens');
    for (const l of c.launches) {
      program.push(`==PROF== Profiling "${l.k}" - ${reportBlocks.length - 1}: 0%....50%....100% - 38 passes`);
      // Durations in microseconds (ncu's unit for short launches), thousands separators in the cycles.
      reportBlocks.push(
        block(
          `void gk::(anonymous namespace)::${l.k}<float, (gk::ThrPrecision)1, 128>(gk::GroupList, float *)`,
          [28, 32, 1],
          [
            ['Elapsed Cycles', 'cycle', '13,434,123'],
            ['Duration', 'us', l.us.toFixed(2)],
            ['Compute (SM) Throughput', '%', l.sm.toFixed(2)],
            ['Function Cache Configuration', '', 'CachePreferNone'],
            ['Registers Per Thread', 'register/thread', String(l.regs)],
          ],
        ),
      );
    }
    program.push(JSON.stringify({ case: c.case, sizes: c.groups ? { groups: c.groups } : { T: 16384 } }));
  }
  program.push('==PROF== Disconnected from process 4242');
  const log = [...program, ...reportBlocks].join('\n');

  it('parses every launch: name, grid, metrics with units, and the case it ran in', async () => {
    const { parseNcu, metricMs, metric } = await import('../scripts/gpu/ncu-report.mjs');
    const launches = parseNcu(log);
    const want = cases.flatMap((c) => c.launches.map((l) => ({ ...l, case: c.case })));
    expect(launches.map((l) => l.kernel)).toEqual(want.map((w) => w.k));
    launches.forEach((l, i) => {
      expect(l.case).toBe(want[i].case);
      expect(l.grid).toEqual([28, 32, 1]);
      expect(metricMs(l, 'Duration')).toBeCloseTo(Number(want[i].us.toFixed(2)) / 1000, 12);
      expect(metric(l, 'Elapsed Cycles')).toBe(13434123);
      expect(metric(l, 'Registers Per Thread')).toBe(want[i].regs);
      expect(l.metrics['Function Cache Configuration'].value).toBe('CachePreferNone');
    });
    // Without its ==PROF== lines (another print mode), no launch is given a case it may not have run in.
    const bare = parseNcu(reportBlocks.join('\n'));
    expect(bare).toHaveLength(want.length);
    expect(bare.every((l) => l.case === null)).toBe(true);
  });

  it('summarize.mjs prints them per case, with the sum of each case', () => {
    const out = mkdtempSync(join(dir, 'files-at-'));
    const logs = mkdtempSync(join(dir, 'logs-'));
    writeFileSync(join(logs, 'ncu-tiles.log'), log);
    writeFileSync(join(out, 'steps.txt'), 'ncu-tiles     ok      rc=0\n');
    expect(spawnSync('tar', ['-cJf', join(out, 'logs.tar.xz'), '-C', logs, '.']).status).toBe(0);
    const s = spawnSync(process.execPath, [join(ROOT, 'scripts/gpu/summarize.mjs'), out], {
      encoding: 'utf8',
    });
    expect(s.status, s.stderr).toBe(0);
    const lines = s.stdout.split('\n');
    const at = lines.findIndex((l) => l.startsWith('## ncu-tiles'));
    expect(at).toBeGreaterThan(-1);
    const rows = lines
      .slice(at + 3)
      .filter((l) => l.startsWith('|'))
      .map((l) => l.split('|').map((c) => c.trim()));
    const sig = (x: number) => Number(x.toPrecision(3)).toString();
    const expected: string[][] = [];
    for (const c of cases) {
      const label = c.groups ? `${c.case} (${c.groups} groups)` : c.case;
      for (const [i, l] of c.launches.entries()) {
        const ms = Number(l.us.toFixed(2)) / 1000;
        expected.push([i ? '' : label, l.k, '28×32×1', sig(ms), sig(Number(l.sm.toFixed(2)))]);
      }
      const sum = c.launches.reduce((t, l) => t + Number(l.us.toFixed(2)) / 1000, 0);
      expected.push(['', '(sum)', '', sig(sum), '']);
    }
    expect(rows.map((c) => c.slice(1, 6))).toEqual(expected);
  });
});
