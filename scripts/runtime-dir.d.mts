/** Types of scripts/runtime-dir.mjs (see there). */
export function isValidRuntimeDir(dir: string | undefined, options?: { follow?: boolean }): boolean;
export function privateRuntimeDir(): string;
export function ensureRuntimeDir(env?: Record<string, string | undefined>): {
  dir: string | undefined;
  changed: boolean;
  was?: string;
};
