/** Plain-text tables with aligned columns. */

/** Formats a table; `align` per column ('l' or 'r', default 'l'). Returns lines. */
export function formatTable(
  header: readonly string[],
  rows: readonly string[][],
  align: string = '',
): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (align[i] === 'r' ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}
