/**
 * THR's host planning, done once per op in the API from host metadata (the layout, the `correct`
 * flags, the degenerate flags) and handed to every backend as typed data (ThrPlan, ReweightPlan):
 * which groups are degenerate, the correct tokens of each live group with their anchor weights, and
 * NTHR's eta per group. Backends upload or read these arrays; none re-derives them (the native addon's
 * cpu and cuda launchers take them as typed arrays, the weights rounded once to f32, and check them
 * against the layout), and nothing here reads device memory.
 */
import type { ReweightPlan, ThrPlan, Weighting } from '../backends/backend.js';
import type { ResolvedLayout } from '../layout.js';

/**
 * docs/THR.md item 6: a group is degenerate when it has no correct response, no incorrect response, or
 * no token in its correct responses.
 */
export function degenerateGroups(layout: ResolvedLayout, correct: Uint8Array): Uint8Array {
  const { numGroups: G, groupOffsets: go, responseOffsets: ro } = layout;
  const out = new Uint8Array(G);
  for (let g = 0; g < G; g++) {
    let nCorrect = 0;
    let nIncorrect = 0;
    let correctTokens = 0;
    for (let r = go[g]; r < go[g + 1]; r++) {
      if (correct[r]) {
        nCorrect++;
        correctTokens += ro[r + 1] - ro[r];
      } else nIncorrect++;
    }
    out[g] = nCorrect === 0 || nIncorrect === 0 || correctTokens === 0 ? 1 : 0;
  }
  return out;
}

/**
 * The correct tokens u of every live (non-degenerate) group and their weights w_u (docs/THR.md item 1):
 * group by group, response by response, token by token, the order in which every backend sums M_g.
 * Weights are f64 (1/|y_r| or 1): the js reference uses them as they are, f32 kernels round each once.
 */
export function thrPlan(
  layout: ResolvedLayout,
  correct: Uint8Array,
  degenerate: Uint8Array,
  weighting: Weighting,
): ThrPlan {
  const { numGroups: G, groupOffsets: go, responseOffsets: ro } = layout;
  const correctStart = new Int32Array(G + 1);
  let n = 0;
  for (let g = 0; g < G; g++) {
    correctStart[g] = n;
    if (degenerate[g]) continue;
    for (let r = go[g]; r < go[g + 1]; r++) if (correct[r]) n += ro[r + 1] - ro[r];
  }
  correctStart[G] = n;
  const correctTokens = new Int32Array(n);
  const correctWeights = new Float64Array(n);
  n = 0;
  for (let g = 0; g < G; g++) {
    if (degenerate[g]) continue;
    for (let r = go[g]; r < go[g + 1]; r++) {
      if (!correct[r]) continue;
      const w = weighting === 'length' ? 1 / (ro[r + 1] - ro[r]) : 1;
      for (let t = ro[r]; t < ro[r + 1]; t++) {
        correctTokens[n] = t;
        correctWeights[n++] = w;
      }
    }
  }
  return { degenerate, correctStart, correctTokens, correctWeights };
}

/**
 * thrReweight's plan: the degenerate groups and NTHR's eta_g, the fixed `eta` or 2·|0.5 − rho_g|
 * with rho_g = #correct / #responses of group g (f64).
 */
export function reweightPlan(
  layout: ResolvedLayout,
  correct: Uint8Array,
  eta: number | 'auto',
): ReweightPlan {
  const { numGroups: G, groupOffsets: go } = layout;
  const etas = new Float64Array(G);
  for (let g = 0; g < G; g++) {
    if (eta !== 'auto') {
      etas[g] = eta;
      continue;
    }
    let nCorrect = 0;
    for (let r = go[g]; r < go[g + 1]; r++) nCorrect += correct[r];
    etas[g] = 2 * Math.abs(0.5 - nCorrect / (go[g + 1] - go[g]));
  }
  return { degenerate: degenerateGroups(layout, correct), eta: etas };
}
