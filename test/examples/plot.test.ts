import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lineChartSpec, rasterizeSvg, renderLineChart, textRenders, textWidth, type ChartRow } from '../../examples/lib/plot.js';

const alphas = Array.from({ length: 11 }, (_, i) => i / 10);
const panels = ['in distribution', 'out of distribution', 'pre-training genres'];
const methods = ['full fine-tuning', 'LoRA r=8, merged'];
// Made-up curves shaped like a WiSE-FT sweep.
const rows: ChartRow[] = methods.flatMap((series, m) =>
  panels.flatMap((panel, p) => alphas.map((x) => ({ series, panel, x, y: 1.8 + 0.1 * p - 0.3 * x * (1 - m / 3) + (p > 0 ? 0.4 * x * x : 0) }))),
);

/** PNG width and height from the IHDR chunk (bytes 16-23). */
function pngSize(png: Uint8Array): [number, number] {
  const v = new DataView(png.buffer, png.byteOffset, png.byteLength);
  return [v.getUint32(16), v.getUint32(20)];
}

describe('renderLineChart', () => {
  it('renders an SVG with every series and panel, and a PNG of it', async () => {
    const chart = await renderLineChart({
      rows,
      title: 'WiSE-FT: loss along the interpolation',
      subtitle: 'made-up numbers',
      xTitle: 'α (0 = pre-trained, 1 = fine-tuned)',
      yTitle: 'loss (nats / char)',
      seriesTitle: 'method',
      xTicks: alphas,
    });
    for (const s of [...methods, ...panels, 'WiSE-FT: loss along the interpolation', 'loss (nats / char)', 'method']) expect(chart.svg).toContain(s);
    expect(chart.svg).toContain('α (0 = pre-trained, 1 = fine-tuned)');
    // One line per (method, panel): 2 × 3, each through 11 points (M + 10 L).
    const lines = chart.svg.match(/aria-roledescription="line mark" d="[^"]*"/g) ?? [];
    expect(lines).toHaveLength(6);
    for (const l of lines) expect(l.match(/L/g)).toHaveLength(10);
    expect([...chart.png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const [w, h] = pngSize(chart.png);
    const svgW = Number(/<svg[^>]*\bwidth="(\d+(?:\.\d+)?)"/.exec(chart.svg)![1]);
    const svgH = Number(/<svg[^>]*\bheight="(\d+(?:\.\d+)?)"/.exec(chart.svg)![1]);
    expect(w).toBe(Math.round(svgW * 2));
    expect(h).toBe(Math.round(svgH * 2));
    expect(svgW).toBeGreaterThan(3 * 360); // three 360-px panels side by side
    expect(svgW).toBeLessThan(3 * 360 + 400);
    expect(chart.png.length).toBeGreaterThan(20_000);
    const dir = process.env.EXAMPLES_PLOT_DIR;
    if (dir) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'wise-ft-example.svg'), chart.svg);
      writeFileSync(join(dir, 'wise-ft-example.png'), chart.png);
    }
  });

  it('draws the text in the PNG (a font is found)', async () => {
    expect(textRenders(), 'resvg found none of the chart fonts: install one, e.g. Debian fonts-dejavu-core').toBe(true);
    const chart = await renderLineChart({ rows: rows.filter((r) => r.panel === panels[0]).map(({ panel: _, ...r }) => r), title: 'Title text here', xTitle: 'x', yTitle: 'y' });
    const { width, rgba } = rasterizeSvg(chart.svg, 1);
    // The title's band (top 22 px, left 200 px) holds nothing but the title.
    let dark = 0;
    for (let y = 0; y < 22; y++) for (let x = 0; x < 200; x++) if (rgba[(y * width + x) * 4]! < 100) dark++;
    expect(dark).toBeGreaterThan(100);
  });

  it('draws a single panel without facets, and checks its rows', () => {
    const spec = lineChartSpec({ rows: [{ series: 'a', x: 0, y: 1 }], title: 't', xTitle: 'x', yTitle: 'y' }) as { facet?: unknown; mark?: unknown };
    expect(spec.facet).toBeUndefined();
    expect(spec.mark).toBeDefined();
    expect(() => lineChartSpec({ rows: [], title: 't', xTitle: 'x', yTitle: 'y' })).toThrow(/rows is empty/);
    expect(() => lineChartSpec({ rows: [{ series: 'a', x: 0, y: Number.NaN }], title: 't', xTitle: 'x', yTitle: 'y' })).toThrow(/rows\[0\]/);
    expect(() => lineChartSpec({ rows: [{ series: 'a', x: 0, y: 1, panel: 'p' }, { series: 'a', x: 1, y: 1 }], title: 't', xTitle: 'x', yTitle: 'y' })).toThrow(/1 of 2 rows have a panel/);
  });

  it('measures text as DejaVu Sans sets it', () => {
    // DejaVu Sans advances: 'i' 278, 'W' 989, space 318 thousandths of an em.
    expect(textWidth('i', 10)).toBeCloseTo(2.78, 10);
    expect(textWidth('W i', 10)).toBeCloseTo(9.89 + 3.18 + 2.78, 10);
    expect(textWidth('W', 10, true)).toBeCloseTo(11.03, 10);
  });
});
