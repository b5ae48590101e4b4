/** The CLI's dispatcher: `grpo-kernels <command> [flags]`. Commands take args and an Io, return an exit code. */
import { benchCommand } from './bench.js';
import { demoCommand } from './demo.js';
import { CliError, oneLine } from './errors.js';
import { infoCommand } from './info.js';
import { type Io, processIo } from './io.js';
import { packageVersion } from './version.js';

export const MAIN_HELP = `Usage: grpo-kernels <command> [options]

GPU kernels for the reward math of GRPO-family RL trainers (WebGPU, CUDA, CPU reference).

Commands:
  info    list the backends, their devices, and why an unavailable one cannot start
  bench   time every op at realistic sizes; GB/s and fraction of copy bandwidth
  demo    train a toy policy with GRPO vs THR (p = +/-0.1) and plot the curves (SVG)

Options:
  -h, --help     show this help (or a command's: grpo-kernels bench --help)
  -v, --version  print the package version

Docs: docs/cli.md`;

const COMMANDS: Record<string, (args: string[], io: Io) => Promise<number>> = {
  info: infoCommand,
  bench: benchCommand,
  demo: demoCommand,
};

/** Runs the CLI; returns the exit status. Errors become one line on stderr. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
      io.out(MAIN_HELP);
      return command === undefined ? 2 : 0;
    }
    if (command === '-v' || command === '--version') {
      io.out(packageVersion());
      return 0;
    }
    const run = COMMANDS[command];
    if (run === undefined) {
      throw new CliError(
        `unknown command '${command}' (expected one of ${Object.keys(COMMANDS).join(', ')}; see --help)`,
        2,
      );
    }
    return await run(rest, io);
  } catch (e) {
    io.err(`grpo-kernels: ${oneLine(e)}\n`);
    return e instanceof CliError ? e.exitCode : 1;
  }
}
