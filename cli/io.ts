/** Where the CLI writes: injectable so tests can capture output without a child process. */
export interface Io {
  /** One line of results on stdout (no trailing newline). */
  out(line: string): void;
  /** Raw text on stderr (progress bars, errors: include the newline). */
  err(text: string): void;
  /** Whether stderr is a terminal (progress bars redraw in place only there). */
  errIsTTY: boolean;
}

export const processIo: Io = {
  out: (line) => {
    process.stdout.write(`${line}\n`);
  },
  err: (text) => {
    process.stderr.write(text);
  },
  errIsTTY: Boolean(process.stderr.isTTY),
};

/** Captures output in arrays (tests). */
export function memoryIo(): Io & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    out: (line) => {
      stdout.push(line);
    },
    err: (text) => {
      stderr.push(text);
    },
    errIsTTY: false,
  };
}
