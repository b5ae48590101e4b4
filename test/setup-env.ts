/**
 * Runs in every test worker before its test files (vitest.config.ts, setupFiles): the environment the
 * software Vulkan driver needs, set here rather than assumed from the caller's shell. Child processes
 * the tests start (the examples, the CLI's bin) inherit it.
 * - XDG_RUNTIME_DIR: without a valid one, Mesa's lavapipe (its device-select layer, through libwayland)
 *   prints "error: XDG_RUNTIME_DIR is invalid or not set" on stderr, which the examples' tests
 *   rightly refuse (scripts/runtime-dir.mjs says when and why).
 */
import { ensureRuntimeDir } from '../scripts/runtime-dir.mjs';

ensureRuntimeDir(process.env);
