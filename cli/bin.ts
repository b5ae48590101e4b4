#!/usr/bin/env node
/** The `grpo-kernels` bin: see cli/main.ts and docs/cli.md. */
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
