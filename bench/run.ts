/**
 * `npm run bench:reference`: the reference tier of the benchmarks (bench/index.ts) on the js
 * backend, the float64 reference against its peers (naive formulations of the same math: logprobs
 * materialised then gathered, THR's pairwise double sum), timed by the same engine as
 * `grpo-kernels bench` (cli/bench.ts). For the cases that ask for it, the peak memory growth of one
 * call of the op and of each peer is measured in a fresh process each, so neither variant's
 * allocations show in the other's figure. Run from source with tsx:
 *
 *   npm run bench:reference                              # every reference case
 *   npm run bench:reference -- logprobs tokenHiddenReward  # the cases of some ops
 *
 * `npm run bench:cpu` (= tsx bench/run.ts cpu): the native cpu backend against ONNX Runtime, PyTorch
 * and the streaming read instead (issue 13's figures; bench/cpu.bench.ts), rows in bench/out/cpu.json;
 * `npm run bench:cpu -- --only whiten,thrReweight --rounds 5` runs some of its benchmarks.
 *
 * Rows are written as JSON to bench/out/reference.json (git-ignored); bench/RESULTS.md holds the
 * published figures. The package's own multi-backend benchmark is `npm run bench` (the CLI).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createContext } from 'grpo-kernels';
import { type BenchRow, benchBackend, benchTable, opLabel, timingPlan } from '../cli/bench.js';
import { processIo } from '../cli/io.js';
import { ProgressBar } from '../cli/progress.js';
import { formatTable } from '../cli/table.js';
import { packageVersion } from '../cli/version.js';
import { runCpuBench } from './cpu.bench.js';
import { type BenchCase, benchCases, type OpName } from './index.js';

const MiB = 1024 * 1024;

/**
 * Peak RSS of this process in bytes. Linux: VmHWM from /proc/self/status, which belongs to this
 * process's own address space; getrusage's maxrss would be wrong in a child, since Linux carries
 * it over from the parent across fork and exec. Elsewhere: maxRSS.
 */
function peakRss(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}

/**
 * In a fresh process: set the case up, then one call of the op (`which` = 'op') or of a peer.
 * Prints the growth and the names of the peers that compute a result (the ones worth measuring).
 */
async function peakMemoryChild(index: number, which: string): Promise<void> {
  const ctx = await createContext({ backend: 'js' });
  const prepared = await benchCases('reference')[index].setup(ctx);
  const before = peakRss();
  if (which === 'op') {
    const outputs = await prepared.run();
    await outputs[0].read();
  } else {
    const peer = prepared.peers?.find((p) => p.name === which);
    if (!peer) throw new Error(`no peer '${which}'`);
    peer.run();
  }
  const extraBytes = peakRss() - before;
  const peers = (prepared.peers ?? []).filter((p) => p.agree).map((p) => p.name);
  process.stdout.write(`${JSON.stringify({ extraBytes, peers })}\n`);
}

interface PeakMemoryRow {
  op: string;
  sizes: Record<string, number>;
  /** 'op' or the peer's name. */
  which: string;
  /** Peak RSS growth during one call, in a fresh process, MiB. */
  extraPeakMiB: number;
}

function measurePeakMemory(
  index: number,
  c: BenchCase,
  which: string,
): { row: PeakMemoryRow; peers: string[] } {
  const r = spawnSync(
    process.execPath,
    // execArgv carries the TypeScript loader (tsx) this file runs under.
    [...process.execArgv, fileURLToPath(import.meta.url), '--peak-memory', String(index), which],
    { encoding: 'utf8', maxBuffer: 1 << 20 },
  );
  if (r.status !== 0) throw new Error(`peak-memory child (${opLabel(c)}, ${which}) failed: ${r.stderr}`);
  const { extraBytes, peers } = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
    extraBytes: number;
    peers: string[];
  };
  return {
    row: { op: opLabel(c), sizes: c.sizes, which, extraPeakMiB: Math.max(0, extraBytes) / MiB },
    peers,
  };
}

/**
 * `bench/run.ts cpu [--only SUBSTRING,…] [--rounds N] [--threads N]`: the native cpu backend's suite
 * (bench/cpu.bench.ts), rows in bench/out/cpu.json; --only keeps the benchmarks whose name contains one
 * of the substrings (`--only advantages,whiten`).
 */
async function cpuSuite(args: string[]): Promise<number> {
  const arg = (n: string) => {
    const i = args.indexOf(n);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const num = (n: string) => (arg(n) === undefined ? undefined : Number(arg(n)));
  const result = await runCpuBench({
    only: arg('--only')?.split(','),
    rounds: num('--rounds'),
    threads: num('--threads'),
  });
  mkdirSync(new URL('./out/', import.meta.url), { recursive: true });
  writeFileSync(new URL('./out/cpu.json', import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
  return 0;
}

async function main(asked: string[]): Promise<number> {
  if (asked[0] === 'cpu') return cpuSuite(asked.slice(1));
  const all = benchCases('reference');
  const ops = [...new Set(all.map((c) => c.op))];
  const unknown = asked.filter((a) => !(ops as string[]).includes(a));
  if (unknown.length > 0) {
    console.error(`unknown op(s): ${unknown.join(', ')}; the reference tier has ${ops.join(', ')}`);
    return 2;
  }
  const chosen = all
    .map((c, index) => ({ c, index }))
    .filter(({ c }) => asked.length === 0 || asked.includes(c.op as OpName));

  // The children first, while this process is still small.
  const peakMemory: PeakMemoryRow[] = [];
  for (const { c, index } of chosen.filter(({ c }) => c.peakMemory)) {
    const op = measurePeakMemory(index, c, 'op');
    peakMemory.push(op.row);
    for (const which of op.peers) peakMemory.push(measurePeakMemory(index, c, which).row);
  }

  const ctx = await createContext({ backend: 'js' });
  const cases = chosen.map(({ c }) => c);
  const bar = new ProgressBar(processIo, cases.length, true);
  let rows: BenchRow[];
  try {
    rows = await benchBackend(ctx, cases, timingPlan('js', false), bar, { done: 0, total: cases.length });
  } finally {
    bar.done();
    ctx.dispose();
  }

  console.log(`js reference against its peers; ${rows[0]?.device ?? ''}; node ${process.version}`);
  for (const line of benchTable(rows)) console.log(line);
  const peerRows = rows.filter((r) => r.peer !== undefined);
  if (peerRows.length > 0) {
    console.log('');
    const cells = peerRows.map((r) => [
      `${r.op}${r.variant ? ` (${r.variant})` : ''}`,
      Object.entries(r.sizes)
        .map(([k, v]) => `${k}=${v}`)
        .join(' '),
      r.peer!,
      r.vsOp === undefined ? '—' : `${r.vsOp.toFixed(2)}x`,
      r.maxRelDiff === undefined ? '—' : r.maxRelDiff.toExponential(2),
      r.extrapolated ? 'scaled from a subsample' : '',
    ]);
    const header = ['op', 'sizes', 'peer', 'op faster by', 'max |peer−op| / max |op|', 'note'];
    for (const line of formatTable(header, cells, 'lllrrl')) console.log(line);
  }
  if (peakMemory.length > 0) {
    console.log('');
    const cells = peakMemory.map((m) => [
      m.op,
      Object.entries(m.sizes)
        .map(([k, v]) => `${k}=${v}`)
        .join(' '),
      m.which,
      m.extraPeakMiB.toFixed(1),
    ]);
    for (const line of formatTable(['op', 'sizes', 'run', 'peak RSS growth MiB'], cells, 'lllr'))
      console.log(line);
  }
  for (const r of rows.filter((row) => row.error !== undefined))
    console.error(`${opLabel(r)} failed: ${r.error}`);

  mkdirSync(new URL('./out/', import.meta.url), { recursive: true });
  const out = new URL('./out/reference.json', import.meta.url);
  const doc = {
    package: 'grpo-kernels',
    version: packageVersion(),
    date: new Date().toISOString(),
    node: process.version,
    rows,
    peakMemory,
  };
  writeFileSync(out, `${JSON.stringify(doc, null, 2)}\n`);
  console.log(`\nwrote ${rows.length} rows to ${fileURLToPath(out)}`);
  return rows.some((r) => r.error !== undefined) ? 1 : 0;
}

const args = process.argv.slice(2);
if (args[0] === '--peak-memory') await peakMemoryChild(Number(args[1]), args[2]);
else process.exitCode = await main(args);
