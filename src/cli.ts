#!/usr/bin/env node
/** The `grpo-kernels` bin: see src/cli/main.ts and docs/cli.md. */
import { main } from './cli/main.js';

process.exitCode = await main(process.argv.slice(2));
