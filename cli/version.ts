/**
 * The package's version, from its package.json, found by the package's own name (Node resolves
 * `grpo-kernels/package.json` to the enclosing package from cli/ and from dist/cli/ alike).
 */
import { createRequire } from 'node:module';

export function packageVersion(): string {
  try {
    const pkg = createRequire(import.meta.url)('grpo-kernels/package.json') as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
