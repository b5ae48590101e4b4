/** Argument parsing on node:util parseArgs, with its errors turned into one-line usage errors. */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { usageError } from './errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses `args` strictly (unknown flags and positionals are errors). `--help`/`-h` is always accepted. */
export function parseFlags<O extends Options>(command: string, args: string[], options: O) {
  try {
    return parseArgs({
      args,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }).values as { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string } & { help?: boolean };
  } catch (e) {
    const code = (e as { code?: string }).code;
    const msg = e instanceof Error ? e.message : String(e);
    // parseArgs explains how to pass '-'-prefixed positionals after a first sentence; keep the first.
    const first = msg.split(/\. (?=To specify)/)[0].replace(/\.$/, '');
    if (code?.startsWith('ERR_PARSE_ARGS')) throw usageError(`${command}: ${first} (see --help)`);
    throw e;
  }
}

/** A positive integer flag value. */
export function intFlag(command: string, name: string, value: string | undefined, fallback: number): number;
export function intFlag(
  command: string,
  name: string,
  value: string | undefined,
  fallback: undefined,
): number | undefined;
export function intFlag(
  command: string,
  name: string,
  value: string | undefined,
  fallback: number | undefined,
): number | undefined {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw usageError(`${command}: --${name} expects a positive integer, got '${value}'`);
  }
  return Number(value);
}

/** A flag restricted to a fixed set of values. */
export function enumFlag<T extends string>(
  command: string,
  name: string,
  value: string | undefined,
  allowed: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) {
    throw usageError(`${command}: --${name} expects one of ${allowed.join(', ')}, got '${value}'`);
  }
  return value as T;
}
