/**
 * The live loss chart: an inline SVG with the loss of every step (thin) and a trailing mean
 * (thick; over a fifth of the steps so far, at most 20), redrawn as losses arrive. No chart
 * library: a few hundred points are a polyline.
 */
const NS = 'http://www.w3.org/2000/svg';

function el<K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string | number>, parent?: Element): SVGElementTagNameMap[K] {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  parent?.appendChild(e);
  return e;
}

/** 1, 2 or 5 times a power of ten, about (max − min) / n. */
function niceStep(min: number, max: number, n: number): number {
  const raw = Math.max((max - min) / n, 1e-9);
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
}

/** Mean of each value and the `w − 1` before it (fewer at the start). */
export function trailingMean(xs: readonly number[], w: number): number[] {
  const out: number[] = [];
  let sum = 0;
  xs.forEach((v, i) => {
    sum += v;
    if (i >= w) sum -= xs[i - w]!;
    out.push(sum / Math.min(i + 1, w));
  });
  return out;
}

export class LossChart {
  private readonly svg: SVGSVGElement;
  private readonly width = 560;
  private readonly height = 220;
  private readonly pad = { left: 44, right: 12, top: 12, bottom: 28 };
  private losses: number[] = [];
  /** Held-out losses with the number of steps they were scored after (0: before the first). */
  private heldOut: { step: number; loss: number }[] = [];

  constructor(host: HTMLElement) {
    this.svg = el('svg', { viewBox: `0 0 ${this.width} ${this.height}`, role: 'img', 'aria-label': 'training loss per step' });
    this.svg.classList.add('chart');
    host.appendChild(this.svg);
    this.draw();
  }

  clear(): void {
    this.losses = [];
    this.heldOut = [];
    this.draw();
  }

  /** The next steps' batch losses, and the held-out loss after the last of them, if scored. */
  push(losses: readonly number[], heldOut?: number): void {
    this.losses.push(...losses);
    if (heldOut !== undefined) this.heldOut.push({ step: this.losses.length, loss: heldOut });
    this.draw();
  }

  get values(): readonly number[] {
    return this.losses;
  }

  private draw(): void {
    const { svg, width: W, height: H, pad } = this;
    svg.replaceChildren();
    const x0 = pad.left;
    const x1 = W - pad.right;
    const y0 = H - pad.bottom;
    const y1 = pad.top;
    const n = this.losses.length;
    const finite = [...this.losses, ...this.heldOut.map((h) => h.loss)].filter(Number.isFinite);
    let lo = finite.length ? Math.min(...finite) : 0;
    let hi = finite.length ? Math.max(...finite) : 1;
    if (hi - lo < 1e-6) {
      lo -= 0.5;
      hi += 0.5;
    }
    const step = niceStep(lo, hi, 4);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    // x is the number of steps done: a batch loss at the step it was made in (1…n), held-out points after theirs (0…n).
    const last = Math.max(n, 1);
    const px = (s: number) => x0 + ((x1 - x0) * s) / last;
    const py = (v: number) => y0 - ((y0 - y1) * ((Number.isFinite(v) ? v : hi) - lo)) / (hi - lo);
    const axis = el('g', { class: 'axis' }, svg);
    for (let v = lo; v <= hi + step / 2; v += step) {
      el('line', { x1: x0, x2: x1, y1: py(v), y2: py(v), class: 'grid' }, axis);
      const t = el('text', { x: x0 - 6, y: py(v) + 4, 'text-anchor': 'end' }, axis);
      t.textContent = v.toFixed(step < 0.1 ? 2 : 1);
    }
    const xstep = Math.max(1, niceStep(0, last, 5));
    for (let s = 0; s <= last; s += xstep) {
      const t = el('text', { x: px(s), y: y0 + 18, 'text-anchor': 'middle' }, axis);
      t.textContent = String(s);
    }
    const label = el('text', { x: x1, y: y1 + 10, 'text-anchor': 'end', class: 'label' }, axis);
    label.textContent = n ? `nats/char · batch loss, its mean, ● held-out` : 'loss per step (nats/char): train to see it';
    if (!n && !this.heldOut.length) return;
    const pts = (vals: readonly number[]) => vals.map((v, i) => `${px(i + 1).toFixed(1)},${py(v).toFixed(1)}`).join(' ');
    el('polyline', { points: pts(this.losses), class: 'raw' }, svg);
    el('polyline', { points: pts(trailingMean(this.losses, Math.max(1, Math.min(20, Math.floor(n / 5))))), class: 'smooth' }, svg);
    if (this.heldOut.length) {
      el('polyline', { points: this.heldOut.map((h) => `${px(h.step).toFixed(1)},${py(h.loss).toFixed(1)}`).join(' '), class: 'heldout' }, svg);
      for (const h of this.heldOut) el('circle', { cx: px(h.step), cy: py(h.loss), r: 3, class: 'heldout' }, svg);
    }
  }
}
