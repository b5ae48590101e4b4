/// <reference types="@webgpu/types" />
/**
 * Getting a GPUDevice: `navigator.gpu` in a browser, Dawn's `webgpu` package in Node. The Node
 * path is reached only through dynamic imports, so a bundler can ship this file to a browser.
 *
 * Node specifics:
 * - The object Dawn's `create()` returns must stay referenced for the life of the process (it
 *   crashes if collected while a device lives): `instances` below holds every one we made.
 * - Software Vulkan: when neither VK_ICD_FILENAMES nor VK_DRIVER_FILES is set and
 *   scripts/setup-vulkan.sh has written `<package root>/.cache/vulkan/lvp_icd.json`, we point
 *   VK_ICD_FILENAMES at it, before the first instance when the system has no Vulkan ICD at all,
 *   else only after the system's drivers gave no adapter (a real GPU wins).
 */
import { GrpoKernelsError } from '../../errors.js';

/** Dawn instances (and the browser's GPU), kept alive for the whole process. */
const instances: GPU[] = [];

/** Limits we ask the adapter for at their maximum (DESIGN.md, "Limits to design for"). */
const MAX_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxUniformBufferBindingSize',
] as const;

/** Features used when offered: f16 loads, subgroup reductions, timed copies for copyProbe. */
const WANTED_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query'] as const;

const ICD_DIRS = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string';
}

/** The project's software-Vulkan ICD, when scripts/setup-vulkan.sh made one and no env var is set. */
async function cachedIcd(): Promise<{ path: string; systemHasIcd: boolean } | undefined> {
  if (process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES) return undefined;
  const fs = await import('node:fs/promises');
  const { fileURLToPath } = await import('node:url');
  const path = fileURLToPath(new URL('../../../.cache/vulkan/lvp_icd.json', import.meta.url));
  try {
    await fs.access(path);
  } catch {
    return undefined;
  }
  let systemHasIcd = false;
  for (const dir of ICD_DIRS) {
    try {
      if ((await fs.readdir(dir)).some((f) => f.endsWith('.json'))) systemHasIcd = true;
    } catch {}
  }
  return { path, systemHasIcd };
}

async function dawnInstance(): Promise<GPU> {
  let mod: { create(options: string[]): GPU };
  try {
    mod = (await import('webgpu')) as unknown as { create(options: string[]): GPU };
  } catch (e) {
    throw new GrpoKernelsError(
      'BACKEND_UNAVAILABLE',
      `webgpu: the optional npm package 'webgpu' (Dawn) could not be loaded: ${(e as Error).message}`,
      { cause: e },
    );
  }
  const gpu = mod.create([]);
  instances.push(gpu);
  return gpu;
}

async function nodeAdapter(options: GPURequestAdapterOptions): Promise<GPUAdapter | null> {
  // Mesa's software Vulkan prints "error: XDG_RUNTIME_DIR is invalid or not set" on stderr when the
  // shell has none (su, sudo, cron, CI): point it at a private 0700 directory, only then
  // (scripts/runtime-dir.mjs, which .ci/run and the tests' setup use too).
  const { ensureRuntimeDir } = await import('../../../scripts/runtime-dir.mjs');
  ensureRuntimeDir(process.env);
  const icd = await cachedIcd();
  if (icd && !icd.systemHasIcd) process.env.VK_ICD_FILENAMES = icd.path;
  let adapter = await (await dawnInstance()).requestAdapter(options);
  if (!adapter && icd?.systemHasIcd) {
    // The system's drivers gave nothing: try the project's lavapipe (a new instance re-reads the env).
    process.env.VK_ICD_FILENAMES = icd.path;
    adapter = await (await dawnInstance()).requestAdapter(options);
  }
  return adapter;
}

function noAdapterReason(): string {
  if (!isNode()) return 'no WebGPU adapter (navigator.gpu.requestAdapter() returned null)';
  const icd = process.env.VK_ICD_FILENAMES ?? process.env.VK_DRIVER_FILES;
  return icd
    ? `no WebGPU adapter (Dawn found no usable Vulkan driver with VK_ICD_FILENAMES=${icd}; run scripts/setup-vulkan.sh)`
    : 'no WebGPU adapter (Dawn found no Vulkan driver; run scripts/setup-vulkan.sh or set VK_ICD_FILENAMES)';
}

export interface AcquiredDevice {
  device: GPUDevice;
  /** Undefined when the caller supplied the device. */
  adapter: GPUAdapter | undefined;
  /** Whether we created the device (and so destroy it on dispose). */
  owned: boolean;
}

/** A high-performance adapter from navigator.gpu (browser) or Dawn (Node); BACKEND_UNAVAILABLE if none. */
export async function requestAdapter(): Promise<GPUAdapter> {
  const options: GPURequestAdapterOptions = { powerPreference: 'high-performance' };
  let adapter: GPUAdapter | null;
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) {
    instances.push(nav.gpu);
    adapter = await nav.gpu.requestAdapter(options);
  } else if (isNode()) {
    adapter = await nodeAdapter(options);
  } else {
    throw new GrpoKernelsError('BACKEND_UNAVAILABLE', 'webgpu: navigator.gpu is not available here');
  }
  if (!adapter) throw new GrpoKernelsError('BACKEND_UNAVAILABLE', `webgpu: ${noAdapterReason()}`);
  return adapter;
}

/** Requests an adapter and a device with the adapter's maximum limits and our wanted features. */
export async function acquireDevice(callerDevice?: unknown): Promise<AcquiredDevice> {
  if (callerDevice !== undefined) {
    const d = callerDevice as Partial<GPUDevice>;
    if (typeof d !== 'object' || d === null || typeof d.createBuffer !== 'function' || !d.queue) {
      throw new GrpoKernelsError('BACKEND_UNAVAILABLE', 'device: expected a GPUDevice', {
        argument: 'device',
      });
    }
    return { device: callerDevice as GPUDevice, adapter: undefined, owned: false };
  }
  const adapter = await requestAdapter();

  const requiredLimits: Record<string, number> = {};
  const limits = adapter.limits as unknown as Record<string, number>;
  for (const k of MAX_LIMITS) if (typeof limits[k] === 'number') requiredLimits[k] = limits[k];
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  try {
    const device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'grpo-kernels' });
    return { device, adapter, owned: true };
  } catch (e) {
    throw new GrpoKernelsError(
      'BACKEND_UNAVAILABLE',
      `webgpu: requestDevice failed: ${(e as Error).message}`,
      { cause: e },
    );
  }
}
