/**
 * Markdown tables for the demo's results, and the number formats they use. The output is
 * GitHub-flavoured markdown with padded columns, so it reads as a table in a terminal too.
 * Formats do not depend on the locale (`1,234,567` everywhere), so committed results do not
 * change with the machine that made them.
 */
import { ArgumentError } from '../../src/gpu/errors.js';

/** Column alignment. */
export type Align = 'left' | 'right' | 'center';

/** A column: its header, and optionally its alignment. */
export interface Column {
  header: string;
  /** Default: right if every cell of the column is a number, else left. */
  align?: Align;
}

/** A cell: text as is; a number through `formatNumber`; null or undefined as an empty cell. */
export type Cell = string | number | null | undefined;

/** `n` with thousands separators: `1234567` → `'1,234,567'` (rounded to an integer). */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const s = Math.round(Math.abs(n)).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return Math.round(n) < 0 ? `-${s}` : s;
}

/**
 * A fraction as a percentage: `0.1234` → `'12.3%'` with `digits` decimals (default 1); a
 * non-zero fraction below one percent keeps two significant digits instead (`0.000123` →
 * `'0.012%'`), so a small LoRA's trainable share does not print as 0.0%.
 */
export function formatPercent(fraction: number, digits = 1): string {
  if (!Number.isFinite(fraction)) return String(fraction);
  const pct = fraction * 100;
  const small = Number(pct.toPrecision(2));
  if (pct !== 0 && Math.abs(small) < 1) return `${small}%`;
  return `${pct.toFixed(digits)}%`;
}

/**
 * Bytes in binary units: `512` → `'512 B'`, `1536` → `'1.50 KiB'`, `15_990_000` → `'15.2 MiB'`;
 * three significant digits from KiB up.
 */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) throw new ArgumentError(`formatBytes: n = ${n}, expected a finite number >= 0`);
  if (n < 1024) return `${Math.round(n)} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  // Move up a unit when the value would print as 1024 or more (also after rounding: 1023.9 KiB -> 1.00 MiB).
  while (u < units.length - 1 && Number(v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) >= 1024) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

/** Seconds, readably: `0.0123` → `'12.3 ms'`, `4.56` → `'4.56 s'`, `135` → `'2 min 15 s'`, `7300` → `'2 h 1 min'`. */
export function formatSeconds(s: number): string {
  if (!Number.isFinite(s) || s < 0) throw new ArgumentError(`formatSeconds: s = ${s}, expected a finite number >= 0`);
  if (s < 1) return `${Number((s * 1000).toPrecision(3))} ms`;
  if (s < 60) return `${Number(s.toPrecision(3))} s`;
  const whole = Math.round(s);
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${whole % 60} s`;
  return `${Math.floor(whole / 3600)} h ${Math.floor((whole % 3600) / 60)} min`;
}

/** An integer via `formatCount`, any other number with `digits` decimals (default 3). */
export function formatNumber(x: number, digits = 3): string {
  return Number.isInteger(x) ? formatCount(x) : x.toFixed(digits);
}

/** A cell as table text: `|` escaped, line breaks as `<br>` (markdown cells are one line). */
function cellText(c: Cell): string {
  if (c === null || c === undefined) return '';
  const s = typeof c === 'number' ? formatNumber(c) : c;
  return s.replace(/\|/g, '\\|').replace(/\r?\n/g, '<br>');
}

/** Characters as a terminal shows them (code points, not UTF-16 units: `α` is one). */
function displayLength(s: string): number {
  return [...s].length;
}

function pad(s: string, width: number, align: Align): string {
  const gap = width - displayLength(s);
  if (gap <= 0) return s;
  if (align === 'right') return ' '.repeat(gap) + s;
  if (align === 'center') return ' '.repeat(Math.floor(gap / 2)) + s + ' '.repeat(gap - Math.floor(gap / 2));
  return s + ' '.repeat(gap);
}

/**
 * A markdown table. Every row must have one cell per column.
 *
 * @example
 * markdownTable(['method', { header: 'trainable', align: 'right' }], [
 *   ['full', formatCount(2_400_000)],
 *   ['LoRA r=8', formatCount(49_152)],
 * ]);
 * // | method   | trainable |
 * // | :------- | --------: |
 * // | full     | 2,400,000 |
 * // | LoRA r=8 |    49,152 |
 */
export function markdownTable(columns: readonly (string | Column)[], rows: readonly (readonly Cell[])[]): string {
  if (columns.length === 0) throw new ArgumentError('markdownTable: columns is empty, expected at least one');
  const cols = columns.map((c) => (typeof c === 'string' ? { header: c } : c));
  rows.forEach((r, i) => {
    if (r.length !== cols.length) throw new ArgumentError(`markdownTable: rows[${i}] has ${r.length} cells, expected ${cols.length} (one per column)`);
  });
  const align = cols.map((c, j): Align => c.align ?? (rows.length > 0 && rows.every((r) => typeof r[j] === 'number') ? 'right' : 'left'));
  const body = rows.map((r) => r.map(cellText));
  const headers = cols.map((c) => cellText(c.header));
  const width = cols.map((_, j) => Math.max(3, displayLength(headers[j]!), ...body.map((r) => displayLength(r[j]!))));
  const rule = width.map((w, j) => {
    const a = align[j];
    if (a === 'right') return '-'.repeat(w - 1) + ':';
    if (a === 'center') return ':' + '-'.repeat(w - 2) + ':';
    return ':' + '-'.repeat(w - 1);
  });
  const line = (cells: readonly string[]): string => `| ${cells.map((c, j) => pad(c, width[j]!, align[j]!)).join(' | ')} |`;
  return [line(headers), line(rule), ...body.map(line)].join('\n') + '\n';
}
