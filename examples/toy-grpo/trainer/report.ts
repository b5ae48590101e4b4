/**
 * The demo's outputs: an SVG of three panels (mean reward, held-out greedy accuracy, held-out
 * pass@k) written by hand, a markdown summary and a JSON file with every curve.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ComparisonResult, movingAverage, type SummaryRow } from './compare.js';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];
const MA_WINDOW = 10;

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(2);
}

/** Up to ~5 round tick values covering [0, max]. */
function ticks(max: number): number[] {
  if (max <= 0) return [0];
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = 0; v <= max + 1e-9; v += step) out.push(Math.round(v * 1e6) / 1e6);
  return out;
}

interface Series {
  name: string;
  x: readonly number[];
  y: readonly number[];
}

interface Panel {
  title: string;
  series: Series[];
}

function panelSvg(p: Panel, left: number, top: number, w: number, h: number, xMax: number): string {
  const sx = (x: number) => left + (x / xMax) * w;
  const sy = (y: number) => top + h - Math.min(Math.max(y, 0), 1) * h;
  const parts: string[] = [];
  parts.push(
    `<text x="${left + w / 2}" y="${top - 12}" text-anchor="middle" font-weight="bold">${esc(p.title)}</text>`,
  );
  for (const y of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<line x1="${left}" y1="${sy(y)}" x2="${left + w}" y2="${sy(y)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${left - 6}" y="${sy(y) + 4}" text-anchor="end">${fmt(y)}</text>`);
  }
  for (const x of ticks(xMax)) {
    parts.push(`<line x1="${sx(x)}" y1="${top + h}" x2="${sx(x)}" y2="${top + h + 4}" stroke="#333"/>`);
    parts.push(`<text x="${sx(x)}" y="${top + h + 17}" text-anchor="middle">${fmt(x)}</text>`);
  }
  parts.push(`<rect x="${left}" y="${top}" width="${w}" height="${h}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${left + w / 2}" y="${top + h + 34}" text-anchor="middle">step</text>`);
  p.series.forEach((s, i) => {
    const pts = s.x.map((x, j) => `${sx(x).toFixed(1)},${sy(s.y[j]).toFixed(1)}`).join(' ');
    parts.push(
      `<polyline points="${pts}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="2"><title>${esc(s.name)}</title></polyline>`,
    );
  });
  return parts.join('\n');
}

/** The three-panel SVG of a comparison. */
export function comparisonSvg(result: ComparisonResult, subtitle: string): string {
  const { config } = result;
  const W = 1140;
  const H = 420;
  const pw = 300;
  const ph = 240;
  const panels: Panel[] = [
    {
      title: `Mean reward (train, ${MA_WINDOW}-step moving avg)`,
      series: result.methods.map((m) => ({
        name: m.method.name,
        x: m.steps,
        y: movingAverage(m.meanReward, MA_WINDOW),
      })),
    },
    {
      title: 'Greedy accuracy (held-out)',
      series: result.methods.map((m) => ({ name: m.method.name, x: m.evalSteps, y: m.greedyAccuracy })),
    },
    {
      title: `pass@${config.groupSize} (held-out)`,
      series: result.methods.map((m) => ({ name: m.method.name, x: m.evalSteps, y: m.passAtK })),
    },
  ];
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">Toy GRPO: plain GRPO vs THR reweighting (grpo-kernels)</text>`,
    `<text x="${W / 2}" y="44" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`,
  ];
  panels.forEach((p, i) => {
    out.push(panelSvg(p, 60 + i * (pw + 75), 90, pw, ph, config.steps));
  });
  // Legend.
  const ly = H - 30;
  result.methods.forEach((m, i) => {
    const x = 60 + i * 200;
    out.push(
      `<line x1="${x}" y1="${ly}" x2="${x + 30}" y2="${ly}" stroke="${COLORS[i % COLORS.length]}" stroke-width="3"/>`,
    );
    out.push(`<text x="${x + 38}" y="${ly + 4}">${esc(m.method.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

export const SUMMARY_COLUMNS = [
  'method',
  'final reward',
  'final greedy',
  'final pass@k',
  'mean greedy',
  'mean pass@k',
  'steps to reward 0.5',
  'final entropy',
  'final clip frac',
  'final KL',
  'seconds',
] as const;

/** One row of cells per method, in SUMMARY_COLUMNS order. */
export function summaryCells(rows: readonly SummaryRow[]): string[][] {
  return rows.map((r) => [
    r.method,
    r.finalReward.toFixed(3),
    pct(r.finalGreedy),
    pct(r.finalPassAtK),
    pct(r.meanGreedy),
    pct(r.meanPassAtK),
    r.stepsToHalfReward === null ? '—' : String(r.stepsToHalfReward),
    r.finalEntropy.toFixed(3),
    pct(r.finalClipFraction),
    r.finalKl.toFixed(4),
    r.seconds.toFixed(1),
  ]);
}

export function describeConfig(c: ComparisonResult['config']): string {
  const seeds = c.runs === 1 ? `seed ${c.seed}` : `seeds ${c.seed}..${c.seed + c.runs - 1} (mean)`;
  return `${c.steps} steps × ${c.promptsPerStep} prompts × ${c.groupSize} responses, Adam lr ${c.learningRate}, ${seeds}; K ∈ [${c.task.minDigits}, ${c.task.maxDigits}] digits`;
}

export function summaryMarkdown(
  result: ComparisonResult,
  context: { backend: string; device: string },
): string {
  const lines = [
    '# Toy GRPO: plain GRPO vs THR (p = ±0.1)',
    '',
    `Task: emit K digits whose sum equals the target (vocabulary 0-9 + EOS); linear softmax policy.`,
    `Run: ${describeConfig(result.config)}.`,
    `Backend: ${context.backend} (${context.device}); wall time ${result.seconds.toFixed(1)} s.`,
    `Evaluation every ${result.config.evalEvery} steps on ${result.heldOutNote}: greedy decoding, and pass@${result.config.groupSize} (${result.config.passAtKRepeats} groups of ${result.config.groupSize} samples per prompt).`,
    "Methods: GRPO advantages (grpo estimator) on every token; THR p: A' = 1[|THR| > tau]·(1 + p·sign THR)·A (docs/THR.md, mode 'thr').",
    '',
    `| ${SUMMARY_COLUMNS.join(' | ')} |`,
    `|${SUMMARY_COLUMNS.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...summaryCells(result.summary).map((cells) => `| ${cells.join(' | ')} |`),
    '',
    '"final" = last evaluation (reward: mean of the last tenth of steps); "mean" = average over all evaluations (area under the curve).',
    '',
  ];
  return lines.join('\n');
}

export interface WrittenReport {
  svg: string;
  markdown: string;
  json: string;
}

/** Writes curves.svg, summary.md and summary.json into `dir` (created if missing). */
export function writeReport(
  result: ComparisonResult,
  dir: string,
  context: { backend: string; device: string; version: string },
): WrittenReport {
  mkdirSync(dir, { recursive: true });
  const paths = {
    svg: join(dir, 'curves.svg'),
    markdown: join(dir, 'summary.md'),
    json: join(dir, 'summary.json'),
  };
  writeFileSync(
    paths.svg,
    comparisonSvg(result, `${describeConfig(result.config)} — backend ${context.backend}`),
  );
  writeFileSync(paths.markdown, summaryMarkdown(result, context));
  const json = {
    package: 'grpo-kernels',
    version: context.version,
    date: new Date().toISOString(),
    backend: context.backend,
    device: context.device,
    config: result.config,
    seconds: result.seconds,
    summary: result.summary,
    methods: result.methods.map((m) => ({
      method: m.method,
      steps: m.steps,
      meanReward: m.meanReward,
      accuracy: m.accuracy,
      entropy: m.entropy,
      activeTokens: m.activeTokens,
      clipFraction: m.clipFraction,
      kl: m.kl,
      evalSteps: m.evalSteps,
      greedyAccuracy: m.greedyAccuracy,
      passAtK: m.passAtK,
      seconds: m.seconds,
    })),
  };
  writeFileSync(paths.json, `${JSON.stringify(json, null, 2)}\n`);
  return paths;
}
