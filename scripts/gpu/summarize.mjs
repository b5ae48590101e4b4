#!/usr/bin/env node
// What one GPU call of scripts/gpu/run.sh brought back, in the tables its decisions need: the device
// tool's files_at folder (steps.txt, device.txt, logs.tar.xz) in, markdown out.
//
//   node scripts/gpu/summarize.mjs DIR [--call N] [--commit SHA] [--jsonl FILE]
//
// Prints: steps.txt; the device; per test step, the counts and every failing test by file; the
// harness's LM-head tile sets side by side (forward, + entropy, backward, forward + backward in
// TFLOP/s of useful work, each against `auto` and against issue 16's goals, PyTorch's materialised
// logits beside them); THR's tile sets in 'f32' and 'tf32' against PyTorch's matrix forms and issue
// 10's 1.5x; the memory-bound rows as fractions of the copy; the tile sets run.sh's harness step passed
// (harness-paths.txt); ncu's launches (ncu.log, ncu-tiles.log) under the cases they ran in. It decides
// nothing: `auto` moves (lm_tiles in lmhead.cu; use_scores_tma, rounded_scores, use_m_tma, wide_m in
// thr.cu, as docs/cuda.md's THR decision says) after the cuda tests pass on a faster set, by hand.
// --jsonl FILE appends the harness's, PyTorch's and goals.mjs's rows to FILE (bench/results/), each with
// device, driver_version (nvidia-smi's), source, commit and call (a row's own fields win).
import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { metric, metricMs, parseNcu } from './ncu-report.mjs';
import { allowedPatterns, summarize as judge } from './vitest-gate.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { call: { type: 'string', default: '1' }, commit: { type: 'string' }, jsonl: { type: 'string' } },
});
if (positionals.length !== 1) {
  console.error('usage: node scripts/gpu/summarize.mjs DIR [--call N] [--commit SHA] [--jsonl FILE]');
  process.exit(2);
}
const dir = positionals[0];
if (!existsSync(join(dir, 'steps.txt'))) {
  console.error(`summarize: ${dir} has no steps.txt (the folder the device tool brought back?)`);
  process.exit(2);
}

// The logs, unpacked into a scratch folder; files are found by name at any depth.
const logs = mkdtempSync(join(tmpdir(), 'gpu-logs-'));
if (existsSync(join(dir, 'logs.tar.xz'))) execFileSync('tar', ['-xJf', join(dir, 'logs.tar.xz'), '-C', logs]);
const files = new Map();
const walk = (d) => {
  for (const f of readdirSync(d)) {
    const p = join(d, f);
    if (statSync(p).isDirectory()) walk(p);
    else files.set(f, p);
  }
};
walk(logs);
const text = (name) => (files.has(name) ? readFileSync(files.get(name), 'utf8') : null);
const jsonLines = (name) =>
  (text(name) ?? '')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });

const out = [];
const say = (s = '') => out.push(s);
const f = (x, digits = 3) =>
  x == null || !Number.isFinite(x) ? '–' : Number(x.toPrecision(digits)).toString();
const table = (head, rows) => {
  say(`| ${head.join(' | ')} |`);
  say(`|${head.map(() => '---').join('|')}|`);
  for (const r of rows) say(`| ${r.join(' | ')} |`);
  say();
};

say('## steps.txt');
say('```');
say(readFileSync(join(dir, 'steps.txt'), 'utf8').trimEnd());
say('```');
const deviceTxt = existsSync(join(dir, 'device.txt'))
  ? readFileSync(join(dir, 'device.txt'), 'utf8')
  : text('device.txt');
const smi = (deviceTxt ?? '').split('\n').find((l) => l.includes(',') && !l.startsWith('date')) ?? '';
const [gpuName, driver] = smi.split(',').map((s) => s.trim());
if (deviceTxt) {
  say('## device');
  say('```');
  say(deviceTxt.trimEnd());
  say('```');
}

// Tests: vitest's JSON report per test step, judged as run.sh's gate judged it (vitest-gate.mjs, with
// the same allowed skips per step), then its failed tests by file.
say('## tests');
const dry = /DRY_RUN/.test(deviceTxt ?? '') ? ['emulator'] : [];
const allowed = {
  'cuda-tests': [],
  memcheck: ['sanitizer'],
  racecheck: ['sanitizer'],
  'racecheck-rest': ['sanitizer'],
  'webgpu-tests': ['webgpu'],
};
for (const [step, sets] of Object.entries(allowed)) {
  const raw = text(`${step}.json`);
  if (!raw) {
    say(`- ${step}: no JSON report`);
    continue;
  }
  let r;
  try {
    r = JSON.parse(raw);
  } catch {
    say(`- ${step}: unreadable JSON report (cut off?)`);
    continue;
  }
  say(`- ${step}: ${judge(r, allowedPatterns([...sets, ...dry])).line}`);
  for (const file of r.testResults ?? []) {
    const bad = (file.assertionResults ?? []).filter((a) => a.status === 'failed');
    if (bad.length === 0 && file.status !== 'failed') continue;
    say(
      `  - ${file.name.replace(/^.*\/test\//, 'test/')}: ${bad.length} failed${bad.length ? '' : ` (${file.message ?? 'file failed'})`}`,
    );
    for (const a of bad.slice(0, 12)) {
      const why = (a.failureMessages?.[0] ?? '').split('\n')[0].slice(0, 160);
      say(`    - ${a.fullName}: ${why}`);
    }
    if (bad.length > 12) say(`    - … ${bad.length - 12} more`);
  }
}
// The differential fuzzer on cuda (run.sh's fuzz step): its summary, and its failures with their reruns.
const fuzzLog = text('fuzz.log');
if (fuzzLog) {
  const lines = fuzzLog.split('\n');
  say(`- fuzz: ${lines.find((l) => l.startsWith('SUMMARY')) ?? 'no SUMMARY line (cut off?)'}`);
  const fails = lines.filter((l) => l.startsWith('FAIL'));
  for (const l of fails.slice(0, 10)) say(`  - ${l.slice(0, 400)}`);
  if (fails.length > 10) say(`  - … ${fails.length - 10} more`);
} else say('- fuzz: no log');
say();

const harness = jsonLines('harness.log');
const torch = jsonLines('torch.log');
const goals = jsonLines('goals-cuda.log');
// (THR's batch rows, sizes.groups > 1, have the goal rows' case names: they get a table of their own.)
const isBatch = (r) => (r.sizes?.groups ?? 1) > 1;
const byCase = new Map(harness.filter((r) => !isBatch(r)).map((r) => [r.case, r]));
const torchOp = (op) => torch.find((r) => r.op === op);

// The LM head: one row per tile set the harness timed.
const lmSets = [
  ...new Set(
    harness.filter((r) => r.case.startsWith('linearLogprobs')).map((r) => r.case.replace(/^\S+\s?/, '')),
  ),
];
if (lmSets.length) {
  say('## LM head (harness; TFLOP/s of useful work: 2·N·d·V forward, 4·N·d·V backward)');
  const sz =
    byCase.get('linearLogprobs')?.sizes ?? harness.find((r) => r.case.startsWith('linearLogprobs'))?.sizes;
  if (sz)
    say(
      `N ${sz.N}, d ${sz.d}, V ${sz.V}, ${sz.dtype}. Goals (issue 16): forward ≥ 500, forward + backward ≥ 400.`,
    );
  say();
  const row = (kind, set) => byCase.get(set ? `${kind} ${set}` : kind);
  const auto = { f: row('linearLogprobs', ''), b: row('linearLogprobsBackward', '') };
  const rows = lmSets.map((set) => {
    const fw = row('linearLogprobs', set);
    const fe = row('linearLogprobs+entropy', set);
    const bw = row('linearLogprobsBackward', set);
    const both = fw && bw ? (fw.flops + bw.flops) / ((fw.ms_median + bw.ms_median) * 1e9) : null;
    return [
      set || 'auto',
      fw ? `${f(fw.ms_median)} ms = ${f(fw.tflops)}` : '–',
      fe ? `${f(fe.ms_median)} ms = ${f(fe.tflops)}` : '–',
      bw ? `${f(bw.ms_median)} ms = ${f(bw.tflops)}` : '–',
      f(both),
      fw && auto.f ? `${f(auto.f.ms_median / fw.ms_median)}x` : '–',
      bw && auto.b ? `${f(auto.b.ms_median / bw.ms_median)}x` : '–',
    ];
  });
  const mf = torchOp('linearLogprobs_materialised');
  const mfb = torchOp('linearLogprobs_materialised_fwd_bwd');
  if (mf || mfb)
    rows.push([
      'PyTorch, materialised logits',
      mf ? `${f(mf.ms_median)} ms = ${f(mf.tflops)}` : '–',
      '',
      '',
      mfb ? `${f(mfb.tflops)} (${f(mfb.ms_median)} ms)` : '–',
      '',
      '',
    ]);
  table(
    ['tile set', 'forward', '+ entropy', 'backward', 'fwd + bwd TFLOP/s', 'fwd × auto', 'bwd × auto'],
    rows,
  );
}

// THR: one row per tile set, both precision modes, of the goal's one group and of a trainer's batch
// (run.sh's THR_BATCH: what `auto` must not lose on); extra(prec, row) fills each mode's second column.
const thrRows = harness.filter((r) => r.case.startsWith('tokenHiddenReward/'));
function thrTable(rows, heads, extra) {
  const get = (prec, set) => rows.find((r) => r.case === `tokenHiddenReward/${prec}${set ? ` ${set}` : ''}`);
  const sets = [...new Set(rows.map((r) => r.case.replace(/^\S+\s?/, '')))];
  table(
    ['tile set', "'f32' ms", heads[0], "'tf32' ms", heads[1], "'tf32' × auto"],
    sets.map((set) => {
      const [a, b, autoB] = [get('f32', set), get('tf32', set), get('tf32', '')];
      return [
        set || 'auto',
        f(a?.ms_median),
        a ? extra('f32', a) : '–',
        f(b?.ms_median),
        b ? extra('tf32', b) : '–',
        b && autoB ? `${f(autoB.ms_median / b.ms_median)}x` : '–',
      ];
    }),
  );
}
if (thrRows.some((r) => !isBatch(r))) {
  const torch = { f32: torchOp('thr_matrix_form_f32'), tf32: torchOp('thr_matrix_form_tf32') };
  say(
    "## THR (harness; goals, issue 10: 'f32' faster than PyTorch's f32 matrix form, 'tf32' within 1.5x of its TF32 one)",
  );
  say(
    `PyTorch: f32 ${f(torch.f32?.ms_median)} ms, TF32 ${f(torch.tf32?.ms_median)} ms (goal for 'tf32': ≤ ${f(torch.tf32 && 1.5 * torch.tf32.ms_median)} ms).`,
  );
  say();
  thrTable(
    thrRows.filter((r) => !isBatch(r)),
    ['× PyTorch f32', '÷ PyTorch TF32 (goal ≤ 1.5)'],
    (prec, r) =>
      !torch[prec]
        ? '–'
        : prec === 'f32'
          ? `${f(torch.f32.ms_median / r.ms_median)}x`
          : f(r.ms_median / torch.tf32.ms_median),
  );
}
const thrBatch = thrRows.filter(isBatch);
if (thrBatch.length) {
  const z = thrBatch[0].sizes;
  say(`THR on a batch: ${z.groups} groups, T ${z.T}, |V*| ${z['V*']} each, d ${z.d}, T+ ${z['T+']}.`);
  say();
  thrTable(thrBatch, ["'f32' TFLOP/s", "'tf32' TFLOP/s"], (_, r) => f(r.tflops));
}

// THR's bits (the harness's `bits`: FNV-1a of thr and tau): the tile sets the tests hold bit-equal on
// any device (ops-thr-tiles.test.ts; 'auto' and 'wgmma' on a 9.0 device with f32 hidden states), each
// set timed in its own process, compared at the harness's sizes. A class that differs is a tile set
// whose bits are not what the tests assert: no `auto` move rests on it until the tests say why.
const THR_BIT_CLASSES = {
  f32: [['', 'wgmma']],
  tf32: [
    ['', 'wgmma', 'tma-rounded', 'tma-wide-rounded'],
    ['tma', 'tma-wide'],
    ['tma-m', 'tma-wide-m', 'tma-wide-m-wide'],
  ],
};
const bitLines = [];
for (const [what, rows] of [
  ['one group', thrRows.filter((r) => !isBatch(r))],
  ['batch', thrRows.filter(isBatch)],
]) {
  for (const [prec, classes] of Object.entries(THR_BIT_CLASSES)) {
    for (const cls of classes) {
      const got = cls
        .map((set) => [
          set || 'auto',
          rows.find((r) => r.case === `tokenHiddenReward/${prec}${set ? ` ${set}` : ''}`),
        ])
        .filter(([, r]) => r?.bits);
      if (got.length < 2) continue;
      const same = got.every(([, r]) => r.bits === got[0][1].bits);
      bitLines.push(
        `${what}, '${prec}': ${got.map(([n]) => n).join(', ')}: ${same ? 'the same bits' : `DIFFER (${got.map(([n, r]) => `${n} ${r.bits}`).join(', ')})`}`,
      );
    }
  }
}
if (bitLines.length) {
  say("## THR's bits across tile sets (harness; classes the tests hold bit-equal)");
  for (const l of bitLines) say(`- ${l}`);
  say();
}

// The memory-bound rows: fraction of the copy of the same bytes.
const mem = harness.filter((r) => /^(logprobs|advantages)/.test(r.case));
if (mem.length) {
  say('## memory-bound rows (harness)');
  table(
    ['case', 'ms', 'GB/s', 'of copy'],
    mem.map((r) => [r.case, f(r.ms_median, 4), f(r.gbps, 4), r.fraction ? `${f(100 * r.fraction)}%` : '–']),
  );
}
const paths = text('harness-paths.txt');
if (paths) say(`Tile sets the harness step passed: ${paths.trim().split('\n').join('; ')}`);

// ncu's launches (scripts/gpu/ncu-report.mjs): the kernel times of the ncu step (its metrics) and the
// tile sets' speed-of-light figures (ncu-tiles), each launch under the harness or goals.mjs case it ran
// in, with the sum of a case's launches (the kernels the case's time is made of; base clocks).
function ncuTable(title, launches, cols) {
  if (!launches.length) return;
  say(title);
  const label = (l) => (l.case ? `${l.case}${isBatch(l) ? ` (${l.sizes.groups} groups)` : ''}` : '?');
  const groups = [];
  for (const l of launches)
    if (groups.length && groups.at(-1).label === label(l)) groups.at(-1).launches.push(l);
    else groups.push({ label: label(l), launches: [l] });
  const rows = groups.flatMap(({ label: name, launches: ls }) => [
    ...ls.map((l, i) => [
      i ? '' : name,
      l.kernel,
      l.grid.join('×'),
      f(l.ms),
      ...cols.map(([, get]) => f(get(l))),
    ]),
    ...(ls.length > 1
      ? [['', '(sum)', '', f(ls.reduce((t, l) => t + (l.ms ?? 0), 0)), ...cols.map(() => '')]]
      : []),
  ]);
  table(['case', 'kernel', 'grid', 'ms', ...cols.map(([h]) => h)], rows);
}
const ncuLog = text('ncu.log');
if (ncuLog) {
  const launches = parseNcu(ncuLog).map((l) => ({ ...l, ms: metricMs(l, 'gpu__time_duration.sum') }));
  ncuTable('## ncu: kernel times (goals.mjs through Node; base clocks)', launches, [
    ['DRAM % of peak', (l) => metric(l, 'dram__throughput.avg.pct_of_peak_sustained_elapsed')],
  ]);
}
const tiles = text('ncu-tiles.log');
if (tiles) {
  const launches = parseNcu(tiles).map((l) => ({ ...l, ms: metricMs(l, 'Duration') }));
  ncuTable("## ncu-tiles: the tile sets' launches (harness, one call each; base clocks)", launches, [
    ['SM %', (l) => metric(l, 'Compute (SM) Throughput')],
    ['memory %', (l) => metric(l, 'Memory Throughput')],
    ['L2 %', (l) => metric(l, 'L2 Cache Throughput')],
    ['DRAM %', (l) => metric(l, 'DRAM Throughput')],
    ['issue busy %', (l) => metric(l, 'Issue Slots Busy')],
    ['registers', (l) => metric(l, 'Registers Per Thread')],
    ['occupancy %', (l) => metric(l, 'Achieved Occupancy')],
  ]);
  if (!launches.length)
    say(`ncu-tiles: no launch found in ncu-tiles.log (${tiles.split('\n').length} lines): read it by hand.`);
}
console.log(out.join('\n'));

if (values.jsonl) {
  const date = (deviceTxt ?? '').match(/date (\S+)/)?.[1] ?? null;
  const common = {
    device: gpuName ?? null,
    driver_version: driver ?? null,
    date,
    commit: values.commit ?? null,
    call: Number(values.call),
  };
  const lines = [
    ...harness.map((r) => ({ ...common, source: 'bench/cuda/harness.cu', ...r })),
    ...torch.map((r) => ({ ...common, source: 'bench/cuda/torch_reference.py', ...r })),
    ...goals.map((r) => ({ ...common, source: 'scripts/gpu/goals.mjs', ...r })),
  ];
  appendFileSync(values.jsonl, lines.map((l) => JSON.stringify(l)).join('\n') + (lines.length ? '\n' : ''));
  console.error(`summarize: ${lines.length} rows appended to ${values.jsonl}`);
}
rmSync(logs, { recursive: true, force: true });
