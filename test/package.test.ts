/**
 * What the published package holds (`npm pack --dry-run`, which reads package.json's `files`): the
 * specifications the code cites, the built CLI and what it runs, and nothing test-only.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('../', import.meta.url);
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
  bin: Record<string, string>;
  files: string[];
};

/** The paths `npm pack` would ship (dist/ as test/build-setup.ts built it). */
function packed(): string[] {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const out = execFileSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return (JSON.parse(out) as { files: { path: string }[] }[])[0].files.map((f) => f.path);
}

describe('the published package', () => {
  const files = packed();

  it('ships the specifications every citation names (docs/THR.md, docs/ESTIMATORS.md)', () => {
    for (const doc of [
      'docs/THR.md',
      'docs/ESTIMATORS.md',
      'docs/PRESETS.md',
      'docs/DESIGN.md',
      'docs/cli.md',
    ])
      expect(files, doc).toContain(doc);
  });

  it('ships no test-only code: not the CUDA emulator, tools/, test/ or the emulator scripts', () => {
    const testOnly = files.filter((f) =>
      /^(tools|test|native\/emu)\/|^scripts\/(build-emu\.mjs|emu-memcheck\.sh|emu-coverage\.sh)$/.test(f),
    );
    expect(testOnly).toEqual([]);
  });

  it('ships the bin and what it runs: dist/ (cli, bench, examples/toy-grpo), shaders, the addon sources', () => {
    expect(pkg.bin['grpo-kernels']).toBe('./dist/cli/bin.js');
    expect(pkg.files).toContain('dist');
    for (const f of [
      'shaders/logprobs.wgsl',
      'native/addon.cc',
      'CMakeLists.txt',
      'examples/toy-grpo/main.ts',
    ])
      expect(files, f).toContain(f);
    // dist/ is built before the tests run (test/build-setup.ts).
    for (const f of [
      'dist/index.js',
      'dist/cli/bin.js',
      'dist/bench/index.js',
      'dist/examples/toy-grpo/trainer/index.js',
    ])
      expect(files, f).toContain(f);
  });

  it('ships only the scripts a user runs (the source build, the software Vulkan setup) and no install script', () => {
    expect(files.filter((f) => f.startsWith('scripts/')).sort()).toEqual([
      'scripts/build-native.mjs',
      'scripts/runtime-dir.d.mts',
      'scripts/runtime-dir.mjs',
      'scripts/setup-vulkan.sh',
    ]);
    const scripts = (
      JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: Record<string, string> }
    ).scripts;
    for (const hook of ['preinstall', 'install', 'postinstall']) expect(scripts[hook], hook).toBeUndefined();
    expect(pkg.files).toContain('prebuilds');
  });
});
