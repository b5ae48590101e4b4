/** Argument parsing on node:util parseArgs, with its errors turned into one-line usage errors. */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { usageError } from './errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** A value that starts with a dash followed by a digit or a point: a negative number, never one of our flags. */
const NEGATIVE_NUMBER = /^-[\d.]/;

/**
 * Joins a string flag and a following dash-led value into one `--name=value` token where parseArgs
 * would stop at "argument is ambiguous": a negative number becomes a value (so the flag's own check
 * says what range it expects); any other dash-led value is a usage error with the `--name=value` hint.
 */
function joinDashValues(command: string, args: string[], options: Options): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') {
      out.push(...args.slice(i));
      break;
    }
    const name = arg.startsWith('--')
      ? arg.slice(2)
      : /^-[^-]$/.test(arg)
        ? Object.keys(options).find((k) => options[k].short === arg[1])
        : undefined;
    const next = args[i + 1];
    if (name !== undefined && options[name]?.type === 'string' && next?.startsWith('-') && next !== '-') {
      if (!NEGATIVE_NUMBER.test(next)) {
        throw usageError(
          `${command}: --${name} expects a value, got '${next}' (a flag?); if the value starts with a dash, write --${name}=${next}`,
        );
      }
      out.push(`--${name}=${next}`);
      i++;
      continue;
    }
    out.push(arg);
  }
  return out;
}

/** Parses `args` strictly (unknown flags and positionals are errors). `--help`/`-h` is always accepted. */
export function parseFlags<O extends Options>(command: string, args: string[], options: O) {
  const all: Options = { ...options, help: { type: 'boolean', short: 'h' } };
  try {
    return parseArgs({
      args: joinDashValues(command, args, all),
      options: all,
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

/** The range an integer flag accepts, inclusive; stated in its error message and its --help. */
export interface IntRange {
  min: number;
  max: number;
}

/**
 * The one parser of integer flags: decimal digits only (no sign, exponent, fraction or spaces), within
 * `range`; anything else is a usage error naming the flag and the range. Undefined → `fallback`.
 */
export function intFlag(
  command: string,
  name: string,
  value: string | undefined,
  range: IntRange,
  fallback: number,
): number;
export function intFlag(
  command: string,
  name: string,
  value: string | undefined,
  range: IntRange,
  fallback?: undefined,
): number | undefined;
export function intFlag(
  command: string,
  name: string,
  value: string | undefined,
  range: IntRange,
  fallback?: number,
): number | undefined {
  if (value === undefined) return fallback;
  // Digits beyond 2^53 lose precision in Number(), but such a value is above every max we state.
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(n >= range.min && n <= range.max)) {
    throw usageError(
      `${command}: --${name} expects an integer from ${range.min} to ${range.max}, got '${value}'`,
    );
  }
  return n;
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
