/**
 * A CLI failure: printed as ONE line on stderr ("grpo-kernels: <message>") with a non-zero exit
 * status: 2 for usage errors (bad flag, unknown command or backend name), 1 for runtime failures.
 */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export const usageError = (message: string): CliError => new CliError(message, 2);

/** The first line of an error's message, for one-line reports. */
export function oneLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0].trim();
}
