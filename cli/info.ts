/** `grpo-kernels info`: every backend, whether it starts, its device, or the exact reason it does not. */
import { arch, platform } from 'node:os';
import { parseFlags } from './args.js';
import {
  ALL_BACKENDS,
  isSoftwareDriver,
  type Opened,
  openOrFail,
  SOFTWARE_NOTE,
  tryOpen,
} from './backends.js';
import type { Io } from './io.js';
import { packageVersion } from './version.js';

export const INFO_HELP = `Usage: grpo-kernels info [--json]

Lists every backend (js, cpu, webgpu, cuda): whether it is available, its device (name, memory,
limits) and, for an unavailable one, the exact reason (createContext's error message).

Options:
  --json      print the same facts as one JSON object on stdout
  -h, --help  show this help`;

interface BackendInfo {
  backend: string;
  available: boolean;
  device?: string;
  details?: Record<string, string | number | boolean>;
  softwareDriver?: boolean;
  reason?: string;
}

function describe(o: Opened): BackendInfo {
  if (o.ctx === null) return { backend: o.name, available: false, reason: o.reason };
  return {
    backend: o.name,
    available: true,
    device: o.ctx.device.name,
    details: { ...o.ctx.device.details },
    softwareDriver: isSoftwareDriver(o.ctx),
  };
}

export async function infoCommand(args: string[], io: Io): Promise<number> {
  const flags = parseFlags('info', args, { json: { type: 'boolean' } });
  if (flags.help) {
    io.out(INFO_HELP);
    return 0;
  }
  const infos: BackendInfo[] = [];
  // Display order: js, cpu, webgpu, cuda; `auto` picks the first available of cuda, webgpu, cpu, js.
  for (const name of [...ALL_BACKENDS].reverse()) {
    const opened = await tryOpen(name);
    infos.push(describe(opened));
    opened.ctx?.dispose();
  }
  // What `auto` really picks, and why it passed over the others (it skips software adapters).
  const autoCtx = await openOrFail('auto').catch(() => null);
  const auto = autoCtx?.backend ?? null;
  const autoSkipped = autoCtx?.skipped.map((s) => ({ ...s })) ?? [];
  autoCtx?.dispose();
  const header = {
    package: 'grpo-kernels',
    version: packageVersion(),
    node: process.version,
    platform: `${platform()} ${arch()}`,
  };
  if (flags.json) {
    io.out(JSON.stringify({ ...header, auto, autoSkipped, backends: infos }, null, 2));
    return 0;
  }
  io.out(`grpo-kernels ${header.version} · node ${header.node} · ${header.platform}`);
  io.out('');
  const w = Math.max(...infos.map((i) => i.backend.length));
  for (const i of infos) {
    const name = i.backend.padEnd(w);
    if (!i.available) {
      io.out(`${name}  unavailable  ${i.reason}`);
      continue;
    }
    io.out(`${name}  available    ${i.device}${i.softwareDriver ? ` (${SOFTWARE_NOTE})` : ''}`);
    for (const [k, v] of Object.entries(i.details ?? {})) io.out(`${' '.repeat(w)}    ${k}: ${String(v)}`);
  }
  io.out('');
  io.out(auto === null ? 'auto: no backend available' : `auto → ${auto} (tries ${ALL_BACKENDS.join(', ')})`);
  for (const s of autoSkipped) io.out(`  skipped ${s.backend}: ${s.reason}`);
  return 0;
}
