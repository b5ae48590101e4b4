/**
 * Global setup of the vitest project "unit" (vitest.config.ts): builds dist/ (npm run build's two tsc
 * projects: the library, then the CLI, benchmarks and toy example) once, before any test file runs,
 * when it is missing or older than its sources. The tests that need the built package (the browser
 * test, the published-package test, the CLI's bin) then find it whole, instead of racing to build it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

export default function setup(): void {
  const entry = join(root, 'dist/cli/bin.js');
  const sources = Math.max(...['src', 'cli', 'bench', 'examples/toy-grpo'].map((d) => newest(join(root, d))));
  // The newest output, not the entry's: tsc leaves an output it would write unchanged with its old time.
  if (existsSync(entry) && existsSync(join(root, 'dist/index.js')) && newest(join(root, 'dist')) >= sources)
    return;
  const tsc = join(root, 'node_modules/typescript/bin/tsc');
  for (const project of ['tsconfig.build.json', 'tsconfig.build-cli.json'])
    execFileSync(process.execPath, [tsc, '-p', project], { cwd: root, stdio: 'inherit' });
}
