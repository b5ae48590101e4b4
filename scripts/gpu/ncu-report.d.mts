// Types of scripts/gpu/ncu-report.mjs (for the tests).
export interface NcuMetric {
  unit: string;
  value: number | string;
}
export interface NcuLaunch {
  kernel: string;
  grid: [number, number, number];
  block: [number, number, number];
  metrics: Record<string, NcuMetric>;
  /** The harness's or goals.mjs's case the launch ran in, or null where the log does not tell. */
  case: string | null;
  sizes: Record<string, unknown> | null;
}
export function kernelName(demangled: string): string;
export function parseNcu(text: string): NcuLaunch[];
export function metricMs(launch: NcuLaunch, name: string): number | null;
export function metric(launch: NcuLaunch, name: string): number | null;
