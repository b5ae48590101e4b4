/**
 * The cpu and webgpu backends must be shippable to a browser by a bundler: nothing statically
 * reachable from the package entry or from the webgpu backend may import a Node-only module
 * (node:*) or a package. Node-only pieces (Dawn, fs, the native addon) load through dynamic
 * import() on the paths that need them.
 */
import { readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Static import/export specifiers of every module reachable from `entry` (type-only imports excluded). */
function staticGraph(entry: string): { modules: string[]; external: string[] } {
  const seen = new Set<string>();
  const external: string[] = [];
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^\s*(import|export)\s+(type\s+)?([^;]*?)\s+from\s+'([^']+)'/gms)) {
      if (m[2]) continue; // `import type` / `export type` vanish at compile time
      const spec = m[4];
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
      else external.push(`${relative(root, file)} → ${spec}`);
    }
    for (const m of text.matchAll(/^\s*import\s+'([^']+)'/gm))
      external.push(`${relative(root, file)} → ${m[1]}`);
  };
  visit(entry);
  return { modules: [...seen].map((f) => relative(root, f)), external };
}

describe('browser path', () => {
  for (const entry of ['src/index.ts', 'src/backends/webgpu/index.ts']) {
    it(`${entry} statically imports no Node-only module or package`, () => {
      const g = staticGraph(resolve(root, entry));
      expect(g.modules.length).toBeGreaterThan(3);
      expect(g.external).toEqual([]);
    });
  }
});
