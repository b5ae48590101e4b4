/** Which backends a command runs on, and how each one is opened (with the reason when it cannot be). */
import { AUTO_ORDER, type BackendName, type Context, createContext } from 'grpo-kernels';
import { CliError, oneLine } from './errors.js';

/** Every backend, in the order `auto` tries them (cuda, then webgpu, then cpu, then js). */
export const ALL_BACKENDS: readonly BackendName[] = AUTO_ORDER;

export type Opened = { name: BackendName; ctx: Context } | { name: BackendName; ctx: null; reason: string };

/**
 * Opens one backend; never throws (the reason is the error message of createContext). `cpu` that fell
 * back to `js` (no native addon) counts as unavailable, with the reason it recorded.
 */
export async function tryOpen(name: BackendName): Promise<Opened> {
  try {
    const ctx = await createContext({ backend: name });
    if (ctx.backend !== name) {
      const reason = ctx.skipped.map((s) => s.reason).join('; ');
      ctx.dispose();
      return { name, ctx: null, reason: oneLine(new Error(`${reason} (it falls back to ${ctx.backend})`)) };
    }
    return { name, ctx };
  } catch (e) {
    return { name, ctx: null, reason: oneLine(e) };
  }
}

/** Opens `choice` ('auto' or a name) or throws a one-line CliError saying why it could not. */
export async function openOrFail(choice: BackendName | 'auto'): Promise<Context> {
  try {
    return await createContext({ backend: choice });
  } catch (e) {
    throw new CliError(`backend ${choice} is unavailable: ${oneLine(e)}`);
  }
}

/**
 * Whether the device is a software rasterizer (lavapipe/llvmpipe, SwiftShader, WARP), as the
 * backend itself reports it (device.details.software): its timings are no speed claim.
 */
export function isSoftwareDriver(ctx: Context): boolean {
  return ctx.device.details.software === true;
}

export const SOFTWARE_NOTE = 'software driver — not a speed claim';
