#!/usr/bin/env node
// A vitest run that fails when a test that must run on the GPU machine skipped (scripts/gpu/run.sh).
// The cuda tests skip, each with its reason printed, when the cuda backend does not start (no GPU, no
// CUDA in the addon, a sanitizer that refuses the device): vitest then exits 0 and the step would
// read "ok" with nothing tested. This runs the command, reads vitest's JSON report, and decides.
//
//   node scripts/gpu/vitest-gate.mjs --json FILE [--allow SET[,SET]]... [--note FILE] [-- CMD ARGS...]
//
// CMD (a vitest run writing FILE: --reporter=json --outputFile.json=FILE) runs with this process's
// stdio; without CMD only FILE is judged. Prints one summary line (also written to --note, default
// $STEP_NOTE, which run.sh puts beside the step's line in steps.txt). Exit status:
//   CMD's own when it failed (a failed test, a file that did not load); else
//   1 when the report is missing or unreadable, no test passed, or a test skipped that no allowed
//     set names (the first few are listed);
//   0 otherwise.
// Allowed sets (ALLOWED below): skips that are right on the machine in question. `gpu` (always on):
// the load tests of the CPU-only build and of a machine without a GPU. `sanitizer`: the cases that
// GRPO_KERNELS_SANITIZER=1 skips. `webgpu`: the "adapter required" placeholders. `emulator`: what the
// CUDA emulator skips (DRY_RUN=1 of run.sh).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/** Test names (ancestor titles and title joined by ' > ') that may skip, by set. */
export const ALLOWED = {
  // test/cuda/load.test.ts on a GPU machine: the CPU-only build is not carried, and the no-GPU error
  // paths do not apply.
  gpu: [
    /CPU-only build/,
    /^cuda backend without a usable GPU > /,
    // test/cases: a case a backend cannot run says so in its name, with the reason (runner.ts).
    /\(not on (cuda|webgpu): /,
    // Tests of the emulator's fault injection, named "(… emulator)" or "… (emulator) > …" (skipIf(!EMULATED)).
    /[(;] ?emulator\)( > |$)/,
  ],
  // test/cuda/ops.test.ts under compute-sanitizer (GRPO_KERNELS_SANITIZER=1, test/cuda/helpers.ts).
  sanitizer: [/is OUT_OF_MEMORY, and the context keeps working/, /rows past 2\^31 elements/],
  // test/webgpu: the placeholders that run only where no adapter is found.
  webgpu: [/a WebGPU adapter is present/],
  // The CUDA emulator (dry run): the 9 GB case, and the tests of build/Release when it is not built.
  emulator: [
    /rows past 2\^31 elements/,
    /^native addon: build and load > (the CUDA build|loading the addon)/,
  ],
};

/**
 * Judges a vitest JSON report (the jest-compatible shape of `--reporter=json`).
 * @param {any} report
 * @param {RegExp[]} allow names that may skip
 */
export function summarize(report, allow) {
  const tests = [];
  const brokenFiles = [];
  for (const file of report?.testResults ?? []) {
    const rel = String(file.name ?? '').replace(/^.*?\/(test\/)/, '$1');
    if (file.status === 'failed' && (file.assertionResults ?? []).length === 0) brokenFiles.push(rel);
    for (const a of file.assertionResults ?? []) {
      const name = [...(a.ancestorTitles ?? []), a.title].join(' > ');
      tests.push({ file: rel, name, status: a.status });
    }
  }
  const count = (s) => tests.filter((t) => s.includes(t.status)).length;
  const passed = count(['passed']);
  const failed = count(['failed']);
  const skippedTests = tests.filter((t) => ['skipped', 'pending', 'todo', 'disabled'].includes(t.status));
  const unexpected = skippedTests.filter((t) => !allow.some((re) => re.test(t.name)));
  const reasons = [];
  if (failed > 0) reasons.push(`${failed} failed`);
  if (brokenFiles.length > 0)
    reasons.push(`${brokenFiles.length} file(s) did not run: ${brokenFiles.join(', ')}`);
  if (passed === 0) reasons.push('no test passed');
  if (unexpected.length > 0) {
    const names = unexpected.slice(0, 3).map((t) => `${t.file} > ${t.name}`);
    const more = unexpected.length > 3 ? ` (+${unexpected.length - 3} more)` : '';
    reasons.push(`${unexpected.length} skipped that must run here: ${names.join('; ')}${more}`);
  }
  const ok = reasons.length === 0;
  const expectedSkips = skippedTests.length - unexpected.length;
  const line =
    `${passed} passed, ${failed} failed, ${skippedTests.length} skipped` +
    (skippedTests.length > 0 ? ` (${expectedSkips} expected)` : '') +
    (ok ? '' : ` -- FAIL: ${reasons.join('; ')}`);
  return { ok, passed, failed, skipped: skippedTests.length, unexpected, brokenFiles, line };
}

/** The allowed name patterns of the named sets ('gpu' always included). */
export function allowedPatterns(sets) {
  const names = new Set(['gpu', ...sets]);
  const out = [];
  for (const n of names) {
    if (!(n in ALLOWED))
      throw new Error(`vitest-gate: unknown allowed set "${n}" (${Object.keys(ALLOWED).join(', ')})`);
    out.push(...ALLOWED[n]);
  }
  return out;
}

function main(argv) {
  const dash = argv.indexOf('--');
  const own = dash >= 0 ? argv.slice(0, dash) : argv;
  const cmd = dash >= 0 ? argv.slice(dash + 1) : [];
  const opt = (name) => {
    const i = own.lastIndexOf(`--${name}`);
    return i >= 0 ? own[i + 1] : undefined;
  };
  const json = opt('json');
  if (json === undefined) {
    console.error('usage: vitest-gate.mjs --json FILE [--allow SET[,SET]] [--note FILE] [-- CMD ARGS...]');
    return 2;
  }
  const sets = own.flatMap((a, i) => (own[i - 1] === '--allow' ? a.split(',') : [])).filter((s) => s !== '');
  const note = opt('note') ?? process.env.STEP_NOTE;
  const allow = allowedPatterns(sets);

  let rc = 0;
  if (cmd.length > 0) {
    const r = spawnSync(cmd[0], cmd.slice(1), { stdio: 'inherit' });
    rc = r.status ?? (r.signal ? 128 : 1);
    if (r.error) console.error(`vitest-gate: ${cmd[0]}: ${r.error.message}`);
  }
  let line;
  let verdict;
  if (!existsSync(json)) {
    line = `no vitest JSON report at ${json}`;
    verdict = 1;
  } else {
    try {
      const s = summarize(JSON.parse(readFileSync(json, 'utf8')), allow);
      line = s.line;
      verdict = s.ok ? 0 : 1;
    } catch (e) {
      line = `unreadable vitest JSON report ${json}: ${e instanceof Error ? e.message : String(e)}`;
      verdict = 1;
    }
  }
  if (rc !== 0 && !line.includes('FAIL')) line += ` -- FAIL: the run exited ${rc}`;
  console.log(`[vitest-gate] ${line}`);
  if (note) writeFileSync(note, `${line}\n`);
  return rc !== 0 ? rc : verdict;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exit(main(process.argv.slice(2)));
}
