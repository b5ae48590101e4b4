/**
 * Row chunking for tensors larger than one storage binding (maxStorageBufferBindingSize,
 * 128 MiB by default). An op over rows [0, N) of row-major matrices runs once per chunk of rows;
 * each matrix is bound as a window that starts at the chunk's first row rounded DOWN to
 * minStorageBufferOffsetAlignment, and the kernel gets the element offset of that row inside
 * the window (`base`) in its uniform. So any row count works with any alignment, and results do
 * not depend on the chunking (each row is computed the same way whatever chunk it lands in).
 *
 * Chunks start at rows whose byte offset is a multiple of 4 in every matrix (the "granule"),
 * so kernels that write packed f16/bf16 words never share a word between two chunks.
 */
import { GrpoKernelsError } from '../../errors.js';
import type { GpuLimits } from './runtime.js';

/** A row-major matrix bound per chunk. */
export interface RowMatrix {
  /** Bytes per row (cols × bytes per element). */
  rowBytes: number;
  /** Bytes per element (4 for f32, 2 for f16/bf16). */
  elemBytes: number;
  /** The buffer's size in bytes (the window never runs past it). */
  bufferBytes: number;
}

export interface Window {
  offset: number;
  size: number;
  /** Element index, inside the window, of the chunk's first row's first element. */
  base: number;
}

/**
 * A binding window over elements [start, end) of a buffer of `elemBytes` elements: its offset is the
 * first element's byte offset rounded down to `align`, its size runs to the last element (rounded up
 * to 4 bytes, never past the buffer, at least 4), and `base` is the first element's index inside it.
 */
export function windowOf(
  start: number,
  end: number,
  elemBytes: number,
  bufferBytes: number,
  align: number,
): Window {
  const first = start * elemBytes;
  const offset = Math.floor(first / align) * align;
  const last = Math.min(bufferBytes, Math.ceil((end * elemBytes) / 4) * 4);
  return { offset, size: Math.max(4, last - offset), base: (first - offset) / elemBytes };
}

export interface Chunk {
  row0: number;
  rows: number;
  /** One window per RowMatrix, in the order given. */
  windows: Window[];
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/**
 * Splits rows [0, rows) into chunks whose windows fit one binding. A chunk holds a multiple of the
 * granule, the rows that make a whole number of 4-byte words (2 for an odd count of 2-byte elements),
 * so that every chunk starts on a word. `maxRows` (tests) caps the chunk size further, never below
 * the granule. Throws SHAPE when a granule of rows is too large for a binding (N = 0: one empty chunk).
 */
export function planRowChunks(
  rows: number,
  matrices: readonly RowMatrix[],
  limits: Pick<GpuLimits, 'maxStorageBufferBindingSize' | 'minStorageBufferOffsetAlignment'>,
  maxRows = Number.POSITIVE_INFINITY,
  what = 'logits',
): Chunk[] {
  const align = limits.minStorageBufferOffsetAlignment;
  const maxBinding = Math.floor(limits.maxStorageBufferBindingSize / 4) * 4;
  let granule = 1;
  for (const m of matrices) {
    const g = 4 / gcd(m.rowBytes % 4 === 0 ? 4 : m.rowBytes % 4, 4);
    granule = (granule * g) / gcd(granule, g);
  }
  // Worst case a window starts align − 4 bytes before its first row and ends ≤ 3 bytes after.
  let fit = rows;
  for (const m of matrices) {
    if (m.rowBytes === 0) continue;
    fit = Math.min(fit, Math.floor((maxBinding - align) / m.rowBytes));
  }
  if (fit < rows) fit = Math.floor(fit / granule) * granule;
  if (rows > 0 && fit < 1) {
    const big = Math.max(...matrices.map((m) => m.rowBytes));
    const most = Math.floor((maxBinding - align) / granule);
    throw new GrpoKernelsError(
      'SHAPE',
      `${what}: one row is ${big} bytes; this device binds at most ${maxBinding} bytes at once (maxStorageBufferBindingSize), so rows must be at most ${most} bytes${granule > 1 ? ` (a binding holds rows in groups of ${granule}, whole 4-byte words)` : ''}`,
      { argument: what },
    );
  }
  // The cap of the tests, in whole granules (a granule always fits: fit ≥ granule here).
  let perChunk = fit;
  if (maxRows < fit) perChunk = Math.max(granule, Math.floor(maxRows / granule) * granule);
  const chunks: Chunk[] = [];
  for (let row0 = 0; row0 < rows || (rows === 0 && chunks.length === 0); row0 += perChunk) {
    const n = Math.min(perChunk, rows - row0);
    const windows = matrices.map((m) => {
      const cols = m.rowBytes / m.elemBytes;
      return windowOf(row0 * cols, (row0 + n) * cols, m.elemBytes, m.bufferBytes, align);
    });
    chunks.push({ row0, rows: n, windows });
    if (rows === 0) break;
  }
  return chunks;
}
