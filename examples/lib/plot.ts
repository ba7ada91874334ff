/**
 * Line charts for the demo's results, as SVG (vega-lite → vega, rendered headless) and PNG
 * (resvg), so a chart can be committed, viewed in a browser, and opened as an image.
 *
 * Text in the PNG needs a font that resvg can find: the SVG names `FONT_FAMILY` (DejaVu Sans
 * first, as Debian and Ubuntu have it in `fonts-dejavu-core`, then the common fonts of macOS
 * and Windows) and resvg loads the system's fonts. Without any of them the PNG comes out with
 * lines but no words; `textRenders()` tells which case a machine is in.
 */
import { Resvg, type ResvgRenderOptions } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { ArgumentError } from '../../src/gpu/errors.js';

/** The fonts the chart asks for, first found wins (a CSS font-family list). */
export const FONT_FAMILY = 'DejaVu Sans, Liberation Sans, Helvetica, Arial, sans-serif';

const RESVG_FONTS: ResvgRenderOptions['font'] = {
  loadSystemFonts: true,
  defaultFontFamily: 'DejaVu Sans',
  sansSerifFamily: 'DejaVu Sans',
};

/**
 * Advance widths of ASCII 32…126 in DejaVu Sans and DejaVu Sans Bold, in thousandths of an em
 * (read from the fonts' hmtx tables). Vega lays out legends, titles and label spacing from
 * text widths; without a canvas in Node it guesses 0.8 em per character, almost half as wide
 * again as DejaVu's average, which leaves legends far wider than the plot. Helvetica and Arial
 * are narrower still, so these widths err on the roomy side there.
 */
const DEJAVU_WIDTHS = [318,401,460,838,636,950,780,275,390,390,500,838,318,361,318,337,636,636,636,636,636,636,636,636,636,636,337,337,838,838,838,531,1000,684,686,698,770,632,575,775,752,295,295,656,557,863,748,787,603,787,695,635,611,732,684,989,685,611,685,390,337,390,838,500,500,613,635,550,635,615,352,635,634,278,278,579,278,974,634,612,635,635,411,521,392,634,592,818,592,592,525,636,337,636,838];
const DEJAVU_BOLD_WIDTHS = [348,456,521,838,696,1002,872,306,457,457,523,838,380,415,380,365,696,696,696,696,696,696,696,696,696,696,400,400,838,838,838,580,1000,774,762,734,830,683,683,821,837,372,372,775,637,995,837,850,733,850,770,720,682,812,774,1103,771,724,725,457,365,457,838,500,500,675,716,593,716,678,435,716,712,343,343,665,343,1042,712,687,716,716,493,595,478,712,652,924,645,652,582,712,365,712,838];

/** Text width in pixels as DejaVu Sans sets it (other characters: 0.7 em). */
export function textWidth(text: string, fontSize: number, bold = false): number {
  const table = bold ? DEJAVU_BOLD_WIDTHS : DEJAVU_WIDTHS;
  let w = 0;
  for (const ch of text) {
    const c = ch.charCodeAt(0);
    w += c >= 32 && c < 127 ? table[c - 32]! : 700;
  }
  return (w * fontSize) / 1000;
}

// Vega's documented hook for text measurement without a canvas (vl-convert sets it too); the
// typings do not declare it. Only this module's charts use vega in this process.
(vega as unknown as { textMetrics: { width: (item: { fontSize?: number; fontWeight?: string | number }, text: unknown) => number } }).textMetrics.width = (item, text) => {
  const weight = item.fontWeight;
  const bold = weight === 'bold' || weight === 'bolder' || (typeof weight === 'number' && weight >= 600);
  return textWidth(text == null ? '' : String(text).trim(), item.fontSize ?? 11, bold);
};

/** One point of one line. */
export interface ChartRow {
  /** The line it belongs to (its colour and legend entry), e.g. `'full fine-tuning'`. */
  series: string;
  x: number;
  y: number;
  /**
   * The panel it is drawn in, e.g. `'out of distribution'`. Rows with panels are drawn as
   * small multiples side by side, each with its own y scale (losses on different sets sit at
   * different levels, and a shared scale would flatten each curve); either every row has a
   * panel or none has.
   */
  panel?: string;
}

/** What to draw. */
export interface LineChartOptions {
  rows: readonly ChartRow[];
  title: string;
  subtitle?: string;
  xTitle: string;
  yTitle: string;
  /** The legend's title (default: none). */
  seriesTitle?: string;
  /** Where the x axis has ticks (default: vega's choice), e.g. the α grid 0, 0.1, …, 1. */
  xTicks?: readonly number[];
  /** Plot area of one panel in CSS pixels (default 360 × 240). */
  width?: number;
  height?: number;
  /** PNG pixels per SVG pixel (default 2, so the image stays sharp when zoomed). */
  pngScale?: number;
}

/** A rendered chart. */
export interface Chart {
  svg: string;
  png: Uint8Array;
  /** The vega-lite spec it came from (to save beside the images, or open in the vega editor). */
  spec: TopLevelSpec;
}

/** First-seen order of the values of `key`: legends and panels follow the order rows come in. */
function order(rows: readonly ChartRow[], key: 'series' | 'panel'): string[] {
  return [...new Set(rows.map((r) => r[key]!))];
}

/** The vega-lite spec of a line chart (exported for tests and for saving beside the images). */
export function lineChartSpec(options: LineChartOptions): TopLevelSpec {
  const { rows } = options;
  if (rows.length === 0) throw new ArgumentError('renderLineChart: rows is empty, expected at least one { series, x, y }');
  rows.forEach((r, i) => {
    if (typeof r.series !== 'string' || !Number.isFinite(r.x) || !Number.isFinite(r.y)) {
      throw new ArgumentError(`renderLineChart: rows[${i}] = ${JSON.stringify(r)}, expected { series: string, x: finite number, y: finite number }`);
    }
  });
  const withPanel = rows.filter((r) => r.panel !== undefined).length;
  if (withPanel !== 0 && withPanel !== rows.length) {
    throw new ArgumentError(`renderLineChart: ${withPanel} of ${rows.length} rows have a panel, expected all or none`);
  }
  const width = options.width ?? 360;
  const height = options.height ?? 240;
  const x = {
    field: 'x',
    type: 'quantitative' as const,
    title: options.xTitle,
    ...(options.xTicks ? { axis: { values: [...options.xTicks] }, scale: { domain: [Math.min(...options.xTicks), Math.max(...options.xTicks)] } } : {}),
  };
  // As many legend columns as fit under the plots (the legend is at the bottom, left-aligned).
  const series = order(rows, 'series');
  const panels = withPanel ? order(rows, 'panel').length : 1;
  const entry = Math.max(...series.map((t) => textWidth(t, 12))) + 40; // symbol, padding, gap
  const columns = Math.max(1, Math.min(series.length, Math.floor((panels * (width + 60)) / entry)));
  const layer = {
    mark: { type: 'line' as const, point: { size: 30 }, strokeWidth: 2 },
    encoding: {
      x,
      y: { field: 'y', type: 'quantitative' as const, title: options.yTitle, scale: { zero: false } },
      color: {
        field: 'series',
        type: 'nominal' as const,
        title: options.seriesTitle ?? null,
        sort: series,
        legend: { orient: 'bottom' as const, direction: 'horizontal' as const, columns, labelLimit: 400, symbolType: 'stroke', symbolStrokeWidth: 3 },
      },
    },
    width,
    height,
  };
  const config = {
    font: FONT_FAMILY,
    background: 'white',
    title: { fontSize: 16, subtitleFontSize: 12, anchor: 'start' as const, offset: 12 },
    axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#e6e6e6' },
    legend: { labelFontSize: 12, titleFontSize: 12 },
    header: { labelFontSize: 13, titleFontSize: 13 },
    view: { stroke: '#bbbbbb' },
  };
  const title = { text: options.title, ...(options.subtitle ? { subtitle: options.subtitle } : {}) };
  const data = { values: rows.map((r) => ({ ...r })) };
  if (withPanel === 0) return { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', title, data, ...layer, config };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data,
    facet: { column: { field: 'panel', type: 'nominal', title: null, sort: order(rows, 'panel'), header: { labelFontWeight: 'bold' } } },
    spec: layer,
    resolve: { scale: { y: 'independent' } },
    config,
  } as TopLevelSpec;
}

/** An SVG rasterised with the chart's fonts, `scale` pixels per SVG pixel, on white. */
export function rasterizeSvg(svg: string, scale = 2): { width: number; height: number; rgba: Uint8Array; png: Uint8Array } {
  const image = new Resvg(svg, { font: RESVG_FONTS, fitTo: { mode: 'zoom', value: scale }, background: 'white' }).render();
  return { width: image.width, height: image.height, rgba: new Uint8Array(image.pixels), png: new Uint8Array(image.asPng()) };
}

/** An SVG to PNG with the chart's fonts; `scale` PNG pixels per SVG pixel. */
export function svgToPng(svg: string, scale = 2): Uint8Array {
  return rasterizeSvg(svg, scale).png;
}

/**
 * Renders a line chart to SVG and PNG (no browser, no GPU).
 *
 * @example
 * const rows = [0, 0.5, 1].flatMap((a) => [
 *   { series: 'full', panel: 'ID', x: a, y: 2 - a },
 *   { series: 'full', panel: 'OOD', x: a, y: 2 + a * (a - 0.6) },
 * ]);
 * const { svg, png } = await renderLineChart({ rows, title: 'WiSE-FT', xTitle: 'α', yTitle: 'loss' });
 */
export async function renderLineChart(options: LineChartOptions): Promise<Chart> {
  const spec = lineChartSpec(options);
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    const svg = await view.toSVG();
    return { svg, png: svgToPng(svg, options.pngScale ?? 2), spec };
  } finally {
    view.finalize();
  }
}

/**
 * Whether resvg draws text on this machine with the chart's fonts: renders a word and looks for
 * dark pixels. False means the PNGs will have no labels (install a font, e.g. Debian's
 * `fonts-dejavu-core`); the SVGs are unaffected, a browser picks its own fonts.
 */
export function textRenders(): boolean {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><text x="4" y="28" font-family="${FONT_FAMILY}" font-size="24" fill="black">Loss</text></svg>`;
  const { pixels } = new Resvg(svg, { font: RESVG_FONTS, background: 'white' }).render();
  let dark = 0;
  for (let i = 0; i < pixels.length; i += 4) if (pixels[i]! < 128) dark++;
  return dark > 20;
}
