/// <reference types="@webgpu/types" />
/**
 * WGSL loading and the pipeline cache.
 *
 * Files live in `<package root>/shaders/` and are found from this module's URL (the same
 * relative path works from src/backends/webgpu/ and from dist/backends/webgpu/): read with
 * node:fs in Node, fetched in a browser.
 *
 * WGSL has no #include, so a module is CONCATENATED here, in this order:
 *   1. `enable f16;` / `enable subgroups;` when the variant needs them;
 *   2. the `base` section of shaders/common.wgsl (WG override, flat workgroup index, f16/bf16
 *      conversions);
 *   3. the variant's sections of common.wgsl (`//! section <name>` blocks): the input-matrix
 *      accessor `load_x` at @binding(1) (`x_f32`, `x_bf16`, `x_f16`, `x_f16_native`), the
 *      output-matrix writer `store_y` at @binding(2) (`y_f32`, `y_bf16`, `y_f16`), or both over
 *      one read_write X for in-place kernels (`xy_f32`, `xy_bf16`, `xy_f16`), the workgroup
 *      reductions (`reduce_tree` or `reduce_subgroup`), the online softmax state and a row's
 *      outputs from it (`online_state`), the 64 × 64 GEMM tile (`tile_gemm`), the response of a
 *      token (`response_of`), e^y − 1 − y without cancellation (`k3`);
 *   4. the family's own file (e.g. shaders/logprobs.wgsl).
 * Shapes never enter the text: they arrive in a uniform. Variants are a small key (sections +
 * enables + entry point + override constants), and each compiled pipeline is cached by that key.
 */
import type { FloatDType } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import type { GpuRuntime } from './runtime.js';

const SHADER_DIR = new URL('../../../shaders/', import.meta.url);

const textCache = new Map<string, Promise<string>>();

/** The text of shaders/<file> (cached per process). */
export function loadShaderText(file: string): Promise<string> {
  let p = textCache.get(file);
  if (!p) {
    const url = new URL(file, SHADER_DIR);
    p = (async () => {
      if (url.protocol === 'file:') {
        const fs = await import('node:fs/promises');
        return fs.readFile(url, 'utf8');
      }
      const res = await fetch(url);
      if (!res.ok) throw new Error(`fetch ${url.href}: HTTP ${res.status}`);
      return res.text();
    })().catch((e: unknown) => {
      textCache.delete(file);
      throw new GrpoKernelsError(
        'BACKEND_UNAVAILABLE',
        `webgpu: cannot load shader ${url.href}: ${(e as Error).message}`,
        { cause: e },
      );
    });
    textCache.set(file, p);
  }
  return p;
}

/** Splits a file into its `//! section <name>` blocks. */
export function splitSections(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let name: string | undefined;
  let lines: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\/\/! section (\w+)\s*$/.exec(line);
    if (m) {
      if (name !== undefined) out.set(name, lines.join('\n'));
      name = m[1];
      lines = [];
    } else if (name !== undefined) lines.push(line);
  }
  if (name !== undefined) out.set(name, lines.join('\n'));
  return out;
}

export type BindingKind = 'uniform' | 'read' | 'rw';

/** A module variant: which family file, which common sections, which enables. */
export interface ModuleKey {
  file: string;
  sections: readonly string[];
  f16?: boolean;
  subgroups?: boolean;
}

/** An entry point and its bindings (group 0), declared in TypeScript next to the op. */
export interface EntrySpec {
  entry: string;
  bindings: readonly (readonly [number, BindingKind])[];
}

/** The common.wgsl section that defines load_x for an input of `dtype`. */
export function xSection(dtype: FloatDType, f16Native: boolean): string {
  return dtype === 'f16' ? (f16Native ? 'x_f16_native' : 'x_f16') : `x_${dtype}`;
}

/** The common.wgsl section that defines store_y for an output of `dtype`. */
export function ySection(dtype: FloatDType): string {
  return `y_${dtype}`;
}

/** Largest power of two ≤ min(256, the device's invocation and size-x limits). */
export function defaultWorkgroupSize(rt: GpuRuntime): number {
  const cap = Math.min(256, rt.limits.maxComputeInvocationsPerWorkgroup, rt.limits.maxComputeWorkgroupSizeX);
  return 2 ** Math.floor(Math.log2(cap));
}

/** WebGPU's default maxStorageBuffersPerShaderStage: the most any kernel of ours may bind. */
export const PORTABLE_STORAGE_BUFFERS = 8;

/** Compiled modules and pipelines of one device, cached by variant key. */
export class PipelineCache {
  readonly #rt: GpuRuntime;
  readonly #modules = new Map<string, Promise<GPUShaderModule>>();
  readonly #pipelines = new Map<string, Promise<GPUComputePipeline>>();

  constructor(rt: GpuRuntime) {
    this.#rt = rt;
  }

  get size(): number {
    return this.#pipelines.size;
  }

  /** The WGSL text of a module variant (also used by tests). */
  static async source(key: ModuleKey): Promise<string> {
    const common = splitSections(await loadShaderText('common.wgsl'));
    const parts: string[] = [];
    if (key.f16) parts.push('enable f16;');
    if (key.subgroups) parts.push('enable subgroups;');
    for (const s of ['base', ...key.sections]) {
      const text = common.get(s);
      if (text === undefined) throw new Error(`common.wgsl has no section ${s}`);
      parts.push(`// ---- common.wgsl: ${s}`, text);
    }
    parts.push(`// ---- ${key.file}`, await loadShaderText(key.file));
    return parts.join('\n');
  }

  #module(key: ModuleKey): Promise<GPUShaderModule> {
    const id = JSON.stringify([key.file, key.sections, !!key.f16, !!key.subgroups]);
    let m = this.#modules.get(id);
    if (!m) {
      m = PipelineCache.source(key).then((code) =>
        this.#rt.device.createShaderModule({ code, label: `${key.file} [${key.sections.join(',')}]` }),
      );
      this.#modules.set(id, m);
    }
    return m;
  }

  /** The pipeline for a module variant, entry point and override constants. */
  get(key: ModuleKey, spec: EntrySpec, constants: Record<string, number> = {}): Promise<GPUComputePipeline> {
    const id = JSON.stringify([
      key.file,
      key.sections,
      !!key.f16,
      !!key.subgroups,
      spec.entry,
      Object.entries(constants).sort(),
    ]);
    let p = this.#pipelines.get(id);
    if (!p) {
      p = this.#create(key, spec, constants);
      p.catch(() => this.#pipelines.delete(id));
      this.#pipelines.set(id, p);
    }
    return this.#rt.guard(p);
  }

  async #create(
    key: ModuleKey,
    spec: EntrySpec,
    constants: Record<string, number>,
  ): Promise<GPUComputePipeline> {
    const device = this.#rt.device;
    // Every kernel must run on any WebGPU device, so it stays within the spec's default limit even
    // where this device allows more (Dawn on lavapipe does; Chromium's SwiftShader allows 10).
    const storage = spec.bindings.filter(([, kind]) => kind !== 'uniform').length;
    if (storage > PORTABLE_STORAGE_BUFFERS) {
      throw new GrpoKernelsError(
        'BACKEND_UNAVAILABLE',
        `webgpu: ${key.file}:${spec.entry} binds ${storage} storage buffers, over the ${PORTABLE_STORAGE_BUFFERS} every WebGPU device offers (a bug in this package)`,
      );
    }
    const module = await this.#module(key);
    const COMPUTE = 0x4;
    // Layout errors are validation errors: capture them here, or the device reports them against
    // whatever op runs next.
    device.pushErrorScope('validation');
    const layout = device.createBindGroupLayout({
      label: spec.entry,
      entries: spec.bindings.map(([binding, kind]) => ({
        binding,
        visibility: COMPUTE,
        buffer: { type: kind === 'uniform' ? 'uniform' : kind === 'read' ? 'read-only-storage' : 'storage' },
      })),
    });
    const layoutError = await device.popErrorScope();
    if (layoutError) {
      throw new GrpoKernelsError(
        'BACKEND_UNAVAILABLE',
        `webgpu: bind group layout of ${key.file}:${spec.entry} rejected: ${layoutError.message}`,
      );
    }
    try {
      return await device.createComputePipelineAsync({
        label: `${key.file}:${spec.entry}`,
        layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: spec.entry, constants },
      });
    } catch (e) {
      const info = await module.getCompilationInfo();
      const msgs = info.messages
        .filter((m) => m.type === 'error')
        .map((m) => `${m.lineNum}:${m.linePos} ${m.message}`)
        .join('; ');
      throw new GrpoKernelsError(
        'BACKEND_UNAVAILABLE',
        `webgpu: pipeline ${key.file}:${spec.entry} failed: ${(e as Error).message}${msgs ? ` (${msgs})` : ''}`,
        { cause: e },
      );
    }
  }
}
