/**
 * The restricted vocabulary V*_g of docs/THR.md, as host metadata: built on the host from host tokens,
 * validated on the host, uploaded once. Like a Layout, a RestrictedVocab carries its host arrays,
 * so gatherProbs and tokenHiddenReward plan their launches and check every index without reading
 * device memory back (docs/DESIGN.md, "Host metadata, device values").
 */
import type { ResolvedVocab, RestrictedVocab, VocabHost } from '../backends/backend.js';
import { fail } from '../errors.js';
import { type ResolvedLayout, validateOffsets } from '../layout.js';
import { Tensor } from '../tensor.js';
import { ownedView, type Take, type TensorLike } from './validate.js';

/**
 * What the ops accept as `vocab`: restrictedVocab()'s result, or the three host arrays (tests and
 * callers who build V* themselves).
 */
export type VocabLike =
  | RestrictedVocab
  | {
      offsets: TensorLike<'i32'>;
      columns: TensorLike<'i32'>;
      tokenColumn: TensorLike<'i32'>;
      host?: VocabHost;
    };

/**
 * V*_g = sorted unique token ids of group g; tokenColumn[t] = index of y_t in V*_g.
 * Cost: a sort per group, O(T_g log T_g), and a binary search per token. Integer only: exact.
 * tokens: ids ≥ 0 (checked here), [Ttotal].
 */
export function buildRestrictedVocab(tokens: Int32Array, layout: ResolvedLayout): VocabHost {
  const { numGroups: G, numTokens: T, groupTokenOffsets: gto } = layout;
  for (let i = 0; i < T; i++) {
    if (tokens[i] < 0) fail('RANGE', 'tokens', `expected token ids ≥ 0, got ${tokens[i]} at [${i}]`);
  }
  const offsets = new Int32Array(G + 1);
  const tokenColumn = new Int32Array(T);
  // Pass 1: each group's tokens sorted and compacted to their unique values in place; the unique
  // run of group g starts at gto[g] in `sorted` and has K_g elements.
  const sorted = tokens.slice(0, T);
  const counts = new Int32Array(G);
  let total = 0;
  for (let g = 0; g < G; g++) {
    const seg = sorted.subarray(gto[g], gto[g + 1]);
    seg.sort();
    let k = 0;
    for (let i = 0; i < seg.length; i++) if (k === 0 || seg[i] !== seg[k - 1]) seg[k++] = seg[i];
    counts[g] = k;
    total += k;
  }
  // Pass 2: pack the unique runs and look each token up in its group's run.
  const columns = new Int32Array(total);
  for (let g = 0; g < G; g++) {
    const base = offsets[g];
    const k = counts[g];
    offsets[g + 1] = base + k;
    columns.set(sorted.subarray(gto[g], gto[g] + k), base);
    for (let t = gto[g]; t < gto[g + 1]; t++) {
      const y = tokens[t];
      let lo = 0;
      let hi = k - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (columns[base + mid] < y) lo = mid + 1;
        else hi = mid;
      }
      tokenColumn[t] = lo;
    }
  }
  return { offsets, columns, tokenColumn };
}

/** The host copy of one of vocab's arrays: from `vocab.host`, or the field itself when it is one. */
function hostOf(v: { host?: Partial<VocabHost> }, field: keyof VocabHost, value: unknown): Int32Array {
  if (value instanceof Int32Array) return value; // what is uploaded is what is checked
  const h = v.host?.[field];
  if (h instanceof Int32Array) return h;
  fail(
    'DTYPE',
    `vocab.${field}`,
    value instanceof Tensor
      ? 'expected its host copy (vocab.host, as restrictedVocab() returns it) or an Int32Array: a device tensor alone would have to be read back to plan the launch'
      : `expected an Int32Array or a Tensor with vocab.host, got ${value === null ? 'null' : typeof value}`,
  );
}

/**
 * Checks `vocab` against the layout (and the logits' width, when given) on its host arrays, and
 * returns the device tensors with the host offsets. Int32Array fields are uploaded through `take`
 * (withInputs disposes them).
 */
export function resolveVocab(
  take: Take,
  value: unknown,
  layout: ResolvedLayout,
  vocabSize: number | undefined,
): ResolvedVocab {
  if (typeof value !== 'object' || value === null) {
    fail(
      'DTYPE',
      'vocab',
      'expected a RestrictedVocab { offsets, columns, tokenColumn } from restrictedVocab()',
    );
  }
  const v = value as {
    offsets?: unknown;
    columns?: unknown;
    tokenColumn?: unknown;
    host?: Partial<VocabHost>;
  };
  const { numGroups: G, numTokens: T, groupTokenOffsets: gto } = layout;
  const offsets = hostOf(v, 'offsets', v.offsets);
  const columns = hostOf(v, 'columns', v.columns);
  const tokenColumn = hostOf(v, 'tokenColumn', v.tokenColumn);
  if (offsets.length !== G + 1) {
    fail(
      'LAYOUT',
      'vocab.offsets',
      `expected ${G + 1} offsets (one more than the layout's ${G} groups), got ${offsets.length}`,
    );
  }
  validateOffsets('vocab.offsets', offsets, columns.length);
  if (vocabSize !== undefined) {
    for (let k = 0; k < columns.length; k++) {
      const c = columns[k];
      if (c < 0 || c >= vocabSize)
        fail('RANGE', 'vocab.columns', `expected column ids in [0, ${vocabSize}), got columns[${k}] = ${c}`);
    }
  }
  if (tokenColumn.length !== T)
    fail('SHAPE', 'vocab.tokenColumn', `expected shape [${T}], got [${tokenColumn.length}]`);
  // Every token's column must lie in its group's V*: the kernels index M and probs with it.
  for (let g = 0; g < G; g++) {
    const k = offsets[g + 1] - offsets[g];
    for (let t = gto[g]; t < gto[g + 1]; t++) {
      const c = tokenColumn[t];
      if (c < 0 || c >= k)
        fail('RANGE', 'vocab.tokenColumn', `expected [${t}] in [0, ${k}) (group ${g}'s |V*|), got ${c}`);
    }
  }
  return {
    offsets: take('vocab.offsets', v.offsets, ['i32'], [G + 1]),
    columns: take('vocab.columns', v.columns, ['i32'], [columns.length]),
    tokenColumn: take('vocab.tokenColumn', v.tokenColumn, ['i32'], [T]),
    hostOffsets: ownedView(offsets), // (a SharedArrayBuffer's is copied: the addon takes no shared memory)
  };
}

/**
 * Where each group's [T_g, K_g] block of packed probabilities starts: Σ_{h<g} T_h·K_h, [G+1], in
 * f64 (exact up to 2^53). gatherProbs writes this packing and tokenHiddenReward reads it.
 */
export function probsOffsets(layout: ResolvedLayout, vocabOffsets: Int32Array): Float64Array {
  const { numGroups: G, groupTokenOffsets: gto } = layout;
  const out = new Float64Array(G + 1);
  for (let g = 0; g < G; g++)
    out[g + 1] = out[g] + (gto[g + 1] - gto[g]) * (vocabOffsets[g + 1] - vocabOffsets[g]);
  return out;
}
