/**
 * A progress bar on stderr. On a terminal it redraws one line in place; elsewhere (pipes, CI
 * logs) it stays silent so captured output is clean.
 */
import type { Io } from './io.js';

export class ProgressBar {
  readonly #io: Io;
  readonly #total: number;
  readonly #width = 24;
  #done = 0;
  #lastDraw = 0;
  #active: boolean;

  constructor(io: Io, total: number, enabled = true) {
    this.#io = io;
    this.#total = Math.max(total, 1);
    this.#active = enabled && io.errIsTTY;
  }

  /** Sets the count of finished units and the label of the current one, and redraws (≤ 10 Hz). */
  update(done: number, label: string, force = false): void {
    this.#done = done;
    if (!this.#active) return;
    const now = Date.now();
    if (!force && now - this.#lastDraw < 100 && done < this.#total) return;
    this.#lastDraw = now;
    const frac = Math.min(this.#done / this.#total, 1);
    const fill = Math.round(frac * this.#width);
    const bar = `${'█'.repeat(fill)}${'░'.repeat(this.#width - fill)}`;
    const cols = process.stderr.columns || 100;
    const text = `${bar} ${String(Math.round(frac * 100)).padStart(3)}% ${label}`.slice(0, cols - 1);
    this.#io.err(`\r\x1b[2K${text}`);
  }

  /** Clears the bar. */
  done(): void {
    if (this.#active) this.#io.err('\r\x1b[2K');
    this.#active = false;
  }
}
