/**
 * The CLI: commands run in-process with a captured Io (fast), plus the bin itself in a child
 * process (exit status and one-line errors as a user sees them).
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { advantagesCase } from '../bench/advantages.bench.js';
import { benchCases, OP_NAMES } from '../bench/index.js';
import { logprobsCase } from '../bench/logprobs.bench.js';
import { thrCase } from '../bench/thr.bench.js';
import { benchBackend, doesNotFit, opLabel, percentile } from '../cli/bench.js';
import { memoryIo } from '../cli/io.js';
import { main } from '../cli/main.js';
import { ProgressBar } from '../cli/progress.js';
import { type Context, createContext } from '../src/index.js';

const tmp = mkdtempSync(join(tmpdir(), 'grpo-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function run(...args: string[]) {
  const io = memoryIo();
  const code = await main(args, io);
  const stderr = io.stderr.join('');
  return {
    code,
    stdout: io.stdout.join('\n'),
    stderr,
    stderrLines: stderr.split('\n').filter((l) => l !== ''),
  };
}

/**
 * The bin as a user runs it: node with tsx's loader on cli/bin.ts. A time limit, so a CLI that hangs
 * (a synchronous loop no in-process test timeout could stop) fails the test instead of the run.
 */
function runBin(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'cli/bin.ts', ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return {
    code: r.status,
    signal: r.signal,
    stdout: r.stdout,
    stderrLines: r.stderr.split('\n').filter((l) => l !== ''),
  };
}

describe('info', () => {
  it('lists all four backends, with the reason for each unavailable one', async () => {
    const r = await run('info');
    expect(r.code).toBe(0);
    for (const name of ['js', 'cpu', 'webgpu', 'cuda']) {
      const line = r.stdout.split('\n').find((l) => l.startsWith(`${name} `));
      expect(line, `a line for ${name}`).toBeDefined();
      const m = /^\S+\s+(available|unavailable)\s+(.+)$/.exec(line!);
      expect(m, line).not.toBeNull();
      expect(m![2].trim().length).toBeGreaterThan(5); // a device name or a reason
    }
    expect(r.stdout).toMatch(/auto → js|auto → cpu|auto → webgpu|auto → cuda/);
  });

  it('--json gives the same facts as an object', async () => {
    const r = await run('info', '--json');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.backends.map((b: { backend: string }) => b.backend).sort()).toEqual([
      'cpu',
      'cuda',
      'js',
      'webgpu',
    ]);
    for (const b of doc.backends) {
      if (b.available) expect(typeof b.device).toBe('string');
      else expect(b.reason).toMatch(/\w/);
    }
    expect(doc.backends.find((b: { backend: string }) => b.backend === 'js').available).toBe(true);
    // `auto` is what createContext really picks (it passes over software adapters), with its reasons.
    const ctx = await createContext({ backend: 'auto' });
    expect(doc.auto).toBe(ctx.backend);
    expect(doc.autoSkipped).toEqual(ctx.skipped.map((s) => ({ ...s })));
    ctx.dispose();
  });
});

describe('bench', () => {
  it('--quick --backend cpu --json writes one row per op with timings and bandwidth', async () => {
    const file = join(tmp, 'bench.json');
    const r = await run('bench', '--quick', '--backend', 'cpu', '--json', file, '--no-progress');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/median ms/);
    const doc = JSON.parse(readFileSync(file, 'utf8'));
    expect(doc.package).toBe('grpo-kernels');
    expect(doc.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(new Set(doc.rows.map((row: { op: string }) => row.op))).toEqual(new Set(OP_NAMES));
    for (const row of doc.rows) {
      expect(row).toMatchObject({ backend: 'cpu', dtype: expect.any(String), version: doc.version });
      expect(typeof row.device).toBe('string');
      expect(Number.isNaN(Date.parse(row.date))).toBe(false);
      expect(Object.keys(row.sizes).length).toBeGreaterThan(0);
      expect(row.error).toBeUndefined();
      expect(row.reps).toBeGreaterThanOrEqual(3);
      expect(row.p10Ms).toBeGreaterThan(0);
      expect(row.p10Ms).toBeLessThanOrEqual(row.medianMs);
      expect(row.medianMs).toBeLessThanOrEqual(row.p90Ms);
      expect(row.gbps).toBeGreaterThan(0);
      expect(row.copyGbps).toBeGreaterThan(0);
      expect(row.fraction).toBeCloseTo(row.gbps / row.copyGbps, 9);
      expect(row.throughput).toBeGreaterThan(0);
      expect(row.throughputUnit).toMatch(/\/s$/);
    }
  });

  it('--op runs only the named ops', async () => {
    const file = join(tmp, 'adv.json');
    const r = await run('bench', '--quick', '--backend', 'cpu', '--op', 'advantages,whiten', '--json', file);
    expect(r.code).toBe(0);
    const ops = JSON.parse(readFileSync(file, 'utf8')).rows.map((row: { op: string }) => row.op);
    expect(ops).toEqual(['advantages', 'advantages', 'whiten']);
  });

  it('skips a case that does not fit, saying why', () => {
    const huge = benchCases('gpu').find((c) => c.op === 'logprobs' && c.sizes.V === 151936)!;
    const fake = { device: { name: 'fake', details: { maxBufferSize: 1 << 20 } } } as unknown as Context;
    expect(doesNotFit(huge, fake, 64 * 1024 ** 3)).toMatch(/maxBufferSize/);
    const smallDevice = { device: { name: 'fake', details: { totalMemory: '2 GiB' } } } as unknown as Context;
    const thr = benchCases('gpu').find((c) => c.op === 'tokenHiddenReward' && c.sizes.d === 3584)!;
    expect(doesNotFit(thr, smallDevice, 64 * 1024 ** 3)).toBeNull();
    expect(doesNotFit(huge, smallDevice, 100 * 1024 ** 2)).toMatch(/host memory/);
  });

  it('times the peers of a case beside the op and checks they agree (the reference tier)', async () => {
    const cases = [
      logprobsCase(3, 1000, 'f32', { peers: true }),
      thrCase(1, 4, 6, 8, 1000, { distinct: 12, peers: true }),
      advantagesCase(50, 'ragged', 'opo'),
    ];
    const ctx = await createContext({ backend: 'cpu' });
    const plan = { warmup: 0, minReps: 2, maxReps: 2, budgetMs: 0 };
    const bar = new ProgressBar(memoryIo(), cases.length, false);
    const rows = await benchBackend(ctx, cases, plan, bar, { done: 0, total: cases.length });
    ctx.dispose();
    expect(rows.map(opLabel)).toEqual([
      'logprobs',
      'logprobs: naive',
      'logprobs: read probe',
      'tokenHiddenReward',
      'tokenHiddenReward: pairwise',
      'tokenHiddenReward: pairwise 4-acc',
      'advantages (opo, groups of 1-16)',
    ]);
    for (const row of rows) {
      expect(row.error, opLabel(row)).toBeUndefined();
      expect(row.medianMs).toBeGreaterThan(0);
      if (row.peer === undefined) continue;
      expect(row.vsOp).toBeCloseTo(
        row.medianMs! / rows.find((r) => r.op === row.op && !r.peer)!.medianMs!,
        9,
      );
      // Every peer that computes a result agrees with the op (the cpu reference, f32 outputs).
      if (row.peer !== 'read probe') expect(row.maxRelDiff, opLabel(row)).toBeLessThan(1e-5);
    }
    expect(rows[3].sizes['V*']).toBe(12);
  });

  it('percentiles interpolate', () => {
    expect(percentile([1, 2, 3, 4, 5], 0.5)).toBe(3);
    expect(percentile([1, 2, 3, 4, 5], 0.1)).toBeCloseTo(1.4);
    expect(percentile([7], 0.9)).toBe(7);
  });
});

describe('demo', () => {
  it('--quick writes the plot and the summaries', async () => {
    const out = join(tmp, 'demo');
    const r = await run('demo', '--quick', '--steps', '6', '--out', out, '--no-progress');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const f of ['curves.svg', 'summary.md', 'summary.json']) {
      expect(existsSync(join(out, f)), f).toBe(true);
      expect(r.stdout).toContain(join(out, f));
    }
    const svg = readFileSync(join(out, 'curves.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/<polyline/g)?.length).toBe(9); // 3 panels × 3 methods
    const doc = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(doc.summary.map((s: { method: string }) => s.method)).toEqual([
      'GRPO',
      'THR p=+0.1',
      'THR p=-0.1',
    ]);
    expect(doc.methods[0].meanReward).toHaveLength(6);
    // The writability probe leaves nothing behind.
    expect(readdirSync(out).sort()).toEqual(['curves.svg', 'summary.json', 'summary.md']);
  });
});

/** Checked before any work: no backend opened, no output on stdout, one line naming the flag. */
describe('output locations are checked before the run', () => {
  const file = join(tmp, 'a-file');
  writeFileSync(file, 'keep');
  mkdirSync(join(tmp, 'a-dir'), { recursive: true });
  const cases: [string, string[], RegExp][] = [
    [
      'demo --out under a regular file',
      ['demo', '--quick', '--steps', '2', '--out', join(file, 'sub')],
      /^grpo-kernels: demo: --out '.+a-file\/sub' is not a writable directory: '.+a-file' is not a directory$/,
    ],
    [
      'demo --out naming a regular file',
      ['demo', '--quick', '--steps', '2', '--out', file],
      /^grpo-kernels: demo: --out '.+a-file' is not a writable directory: it is not a directory$/,
    ],
    [
      'bench --json in a missing directory',
      ['bench', '--quick', '--backend', 'cpu', '--op', 'whiten', '--json', join(tmp, 'missing', 'b.json')],
      /^grpo-kernels: bench: --json '.+missing\/b\.json' is not a writable file: its directory '.+missing' does not exist$/,
    ],
    [
      'bench --json naming a directory',
      ['bench', '--quick', '--backend', 'cpu', '--op', 'whiten', '--json', join(tmp, 'a-dir')],
      /^grpo-kernels: bench: --json '.+a-dir' is not a writable file: it is a directory$/,
    ],
  ];
  if (process.platform === 'linux') {
    cases.push([
      'bench --json in /proc',
      ['bench', '--quick', '--backend', 'cpu', '--op', 'whiten', '--json', '/proc/x.json'],
      /^grpo-kernels: bench: --json '\/proc\/x\.json' is not a writable file: cannot create a file in '\/proc' \(ENOENT/,
    ]);
  }
  for (const [what, args, message] of cases) {
    it(what, async () => {
      const r = await run(...args, '--no-progress');
      expect(r.stderrLines).toEqual([expect.stringMatching(message)]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
    });
  }

  it('the checks leave the files they probe with no trace', () => {
    expect(readFileSync(file, 'utf8')).toBe('keep');
    const probes = readdirSync(tmp, { recursive: true }).filter((f) => String(f).includes('.grpo-kernels-'));
    expect(probes).toEqual([]);
  });

  // Node's recursive mkdir loops forever on /proc's ENOENT: run the bin with a time limit.
  it.skipIf(process.platform !== 'linux')('demo --out /proc/x fails at once instead of hanging', () => {
    const r = runBin('demo', '--quick', '--steps', '2', '--out', '/proc/x', '--no-progress');
    expect(r.signal).toBeNull();
    expect(r.stderrLines).toEqual([
      expect.stringMatching(
        /^grpo-kernels: demo: --out '\/proc\/x' is not a writable directory: cannot create it \(ENOENT/,
      ),
    ]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
  });
});

describe('errors are one line on stderr and a non-zero exit', () => {
  const cases: [string, string[], RegExp][] = [
    ['bad flag', ['bench', '--frobnicate'], /bench: Unknown option '--frobnicate'/],
    [
      'unknown backend',
      ['bench', '--backend', 'tpu'],
      /--backend expects one of js, cpu, webgpu, cuda, auto, all/,
    ],
    ['unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
    ['bad number', ['demo', '--steps', '0'], /demo: --steps expects an integer from 1 to 1000000, got '0'$/],
    // parseArgs reads '-1' as a flag ("argument is ambiguous"); a negative number is a value out of range.
    [
      'negative number',
      ['demo', '--steps', '-1'],
      /demo: --steps expects an integer from 1 to 1000000, got '-1'$/,
    ],
    [
      'negative --runs',
      ['demo', '--runs', '-3'],
      /demo: --runs expects an integer from 1 to 10000, got '-3'$/,
    ],
    [
      'not an integer',
      ['demo', '--runs', '1.5'],
      /demo: --runs expects an integer from 1 to 10000, got '1.5'$/,
    ],
    ['too big', ['demo', '--steps', '99999999999999999999'], /--steps expects an integer from 1 to 1000000/],
    // The seed is a u32 (mulberry32 and deriveSeed take seed >>> 0): 1e20 would alias another seed.
    [
      'seed beyond u32',
      ['demo', '--seed', '99999999999999999999'],
      /demo: --seed expects an integer from 0 to 4294967295, got '99999999999999999999'$/,
    ],
    [
      'negative seed',
      ['demo', '--seed', '-5'],
      /demo: --seed expects an integer from 0 to 4294967295, got '-5'$/,
    ],
    [
      'seeds of the runs beyond u32',
      ['demo', '--seed', '4294967295', '--runs', '2'],
      /demo: --seed 4294967295 with 2 runs uses seeds up to 4294967296; the last seed must be at most 4294967295$/,
    ],
    [
      'a value that looks like a flag',
      ['demo', '--out', '-x'],
      /demo: --out expects a value, got '-x'.*--out=-x/,
    ],
    ['unknown op', ['bench', '--op', 'softmax'], /--op expects op names/],
    ['stray positional', ['info', 'extra'], /info: Unexpected argument 'extra'/],
  ];
  for (const [what, args, message] of cases) {
    it(what, async () => {
      const r = await run(...args);
      expect(r.code).toBe(2);
      expect(r.stderrLines).toHaveLength(1);
      expect(r.stderrLines[0]).toMatch(/^grpo-kernels: /);
      expect(r.stderrLines[0]).toMatch(message);
      expect(r.stdout).toBe('');
    });
  }

  it('a named backend that cannot start', async () => {
    let unavailable: string | undefined;
    for (const name of ['cuda', 'webgpu'] as const) {
      try {
        (await createContext({ backend: name })).dispose();
      } catch {
        unavailable = name;
        break;
      }
    }
    if (unavailable === undefined) {
      console.log('skipped: cuda and webgpu both start here, so no backend is unavailable');
      return;
    }
    const out = join(tmp, 'never-written', 'demo');
    const r = await run('demo', '--backend', unavailable, '--out', out);
    // The directories the --out check created are gone again.
    expect(existsSync(join(tmp, 'never-written'))).toBe(false);
    expect(r.code).toBe(1);
    expect(r.stderrLines).toHaveLength(1);
    expect(r.stderrLines[0]).toMatch(new RegExp(`^grpo-kernels: backend ${unavailable} is unavailable: .+`));
  });
});

describe('help', () => {
  for (const command of ['info', 'bench', 'demo']) {
    it(`${command} --help`, async () => {
      const r = await run(command, '--help');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: grpo-kernels ${command}`);
    });
  }
  it('top-level --help and --version', async () => {
    expect((await run('--help')).stdout).toMatch(/Commands:/);
    expect((await run('--version')).stdout).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('the bin (cli/bin.ts) in a child process', () => {
  it('info exits 0', () => {
    const r = runBin('info');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^cpu\s+available/m);
  });
  it('an unknown command exits 2 with one line', () => {
    const r = runBin('frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderrLines).toEqual([expect.stringMatching(/^grpo-kernels: unknown command 'frobnicate'/)]);
  });
});
