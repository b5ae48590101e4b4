/** Error codes of the contract (DESIGN.md, "Errors"). */
export type ErrorCode =
  | 'SHAPE'
  | 'DTYPE'
  | 'RANGE'
  | 'LAYOUT'
  | 'BACKEND_UNAVAILABLE'
  | 'DEVICE_LOST'
  | 'OUT_OF_MEMORY';

/**
 * The one error type the package throws for bad input and backend faults. `argument` names the
 * offending argument where there is one; the message says what was expected.
 */
export class GrpoKernelsError extends Error {
  readonly code: ErrorCode;
  readonly argument: string | undefined;

  constructor(code: ErrorCode, message: string, options: { argument?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GrpoKernelsError';
    this.code = code;
    this.argument = options.argument;
  }
}

/** Throws a GrpoKernelsError whose message starts with the argument's name. */
export function fail(code: ErrorCode, argument: string, expected: string): never {
  throw new GrpoKernelsError(code, `${argument}: ${expected}`, { argument });
}

/**
 * The RANGE errors of values only a kernel may see (targets on the device, all −Inf rows), worded
 * once: the host checks, the cpu backend and the GPU kernels' flags (native/cuda/logprobs.cu's
 * logprobs_flags_message) say the same thing.
 */
export function badTarget(row: number, value: number, vocab: number, ignoreIndex: number): never {
  fail(
    'RANGE',
    'targets',
    `expected values in [0, ${vocab}) or ignoreIndex (${ignoreIndex}), got targets[${row}] = ${value}`,
  );
}
export function allNegInfRow(row: number): never {
  fail(
    'RANGE',
    'logits',
    `row ${row} has every element −Inf: its softmax is undefined; mask the row with ignoreIndex instead`,
  );
}
