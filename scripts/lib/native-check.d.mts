/** Types of scripts/lib/native-check.mjs (see there). */
export function fatbinEntries(path: string): Record<string, number>;
export function dynamicNeeds(path: string): { needed: string[]; glibc: string; glibcxx: boolean };
export function compareVersions(a: string, b: string): number;
