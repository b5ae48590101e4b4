/**
 * A linear softmax policy written with plain typed arrays: logits = W·h, W ∈ R^{V×d}, h the
 * task's feature vector. Backprop to W is the outer product of dLoss/dlogits with h; Adam steps.
 */
import { gaussian, mulberry32 } from './rng.js';

export class LinearPolicy {
  readonly vocab: number;
  readonly dim: number;
  /** Row-major [vocab, dim]. */
  readonly w: Float64Array;
  readonly #m: Float64Array;
  readonly #v: Float64Array;
  #t = 0;

  constructor(vocab: number, dim: number, seed: number, initScale = 0.01) {
    this.vocab = vocab;
    this.dim = dim;
    this.w = new Float64Array(vocab * dim);
    const rand = mulberry32(seed);
    for (let i = 0; i < this.w.length; i++) this.w[i] = initScale * gaussian(rand);
    this.#m = new Float64Array(this.w.length);
    this.#v = new Float64Array(this.w.length);
  }

  /** logits = W·h into `out` [vocab]. */
  logits(h: Float64Array, out: Float64Array): void {
    const { vocab, dim, w } = this;
    for (let v = 0; v < vocab; v++) {
      let s = 0;
      const row = v * dim;
      for (let j = 0; j < dim; j++) if (h[j] !== 0) s += w[row + j] * h[j];
      out[v] = s;
    }
  }

  /**
   * dLoss/dW = Σ_t gradLogits[t, :] ⊗ h_t. `gradLogits` is [T, vocab], `hidden` is [T, dim].
   */
  gradient(gradLogits: ArrayLike<number>, hidden: ArrayLike<number>, tokens: number): Float64Array {
    const { vocab, dim } = this;
    const g = new Float64Array(vocab * dim);
    for (let t = 0; t < tokens; t++) {
      for (let j = 0; j < dim; j++) {
        const h = hidden[t * dim + j];
        if (h === 0) continue;
        for (let v = 0; v < vocab; v++) g[v * dim + j] += gradLogits[t * vocab + v] * h;
      }
    }
    return g;
  }

  /** One Adam step (Kingma & Ba) on W with gradient `g`. */
  adamStep(g: Float64Array, lr: number, beta1 = 0.9, beta2 = 0.999, eps = 1e-8): void {
    this.#t++;
    const c1 = 1 - beta1 ** this.#t;
    const c2 = 1 - beta2 ** this.#t;
    for (let i = 0; i < g.length; i++) {
      this.#m[i] = beta1 * this.#m[i] + (1 - beta1) * g[i];
      this.#v[i] = beta2 * this.#v[i] + (1 - beta2) * g[i] * g[i];
      this.w[i] -= (lr * (this.#m[i] / c1)) / (Math.sqrt(this.#v[i] / c2) + eps);
    }
  }
}

/** Samples from softmax(logits) (temperature 1), or takes the argmax when `rand` is null. */
export function sampleToken(logits: Float64Array, rand: (() => number) | null): number {
  let best = 0;
  for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
  if (rand === null) return best;
  let z = 0;
  for (let v = 0; v < logits.length; v++) z += Math.exp(logits[v] - logits[best]);
  let u = rand() * z;
  for (let v = 0; v < logits.length; v++) {
    u -= Math.exp(logits[v] - logits[best]);
    if (u <= 0) return v;
  }
  return logits.length - 1;
}
