/** CPU references of torch.optim.AdamW and torch.optim.SGD update formulas, in f64. */
export interface RefGroup {
  p: Float64Array;
  lr: number;
  weightDecay: number;
  m: Float64Array;
  v: Float64Array;
  vmax: Float64Array;
}

export function refGroup(p: ArrayLike<number>, lr: number, weightDecay: number): RefGroup {
  const n = p.length;
  return { p: Float64Array.from(p), lr, weightDecay, m: new Float64Array(n), v: new Float64Array(n), vmax: new Float64Array(n) };
}

/** clip_grad_norm_ over all groups: the factor gradients are multiplied by. */
export function clipFactorRef(grads: ArrayLike<number>[], maxNorm: number | undefined): number {
  if (maxNorm === undefined) return 1;
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.min(1, maxNorm / (Math.sqrt(s) + 1e-6));
}

export function adamwRef(gr: RefGroup, g: ArrayLike<number>, t: number, o: { b1: number; b2: number; eps: number; amsgrad: boolean; clip: number }): void {
  for (let i = 0; i < gr.p.length; i++) {
    const gi = g[i]! * o.clip;
    gr.p[i]! *= 1 - gr.lr * gr.weightDecay;
    gr.m[i] = o.b1 * gr.m[i]! + (1 - o.b1) * gi;
    gr.v[i] = o.b2 * gr.v[i]! + (1 - o.b2) * gi * gi;
    let vhat = gr.v[i]!;
    if (o.amsgrad) vhat = gr.vmax[i] = Math.max(gr.vmax[i]!, gr.v[i]!);
    const mhat = gr.m[i]! / (1 - o.b1 ** t);
    gr.p[i]! -= (gr.lr * mhat) / (Math.sqrt(vhat / (1 - o.b2 ** t)) + o.eps);
  }
}

export function sgdRef(gr: RefGroup, g: ArrayLike<number>, t: number, o: { momentum: number; dampening: number; nesterov: boolean; clip: number }): void {
  for (let i = 0; i < gr.p.length; i++) {
    let d = g[i]! * o.clip + gr.weightDecay * gr.p[i]!;
    if (o.momentum) {
      gr.m[i] = t === 1 ? d : o.momentum * gr.m[i]! + (1 - o.dampening) * d;
      d = o.nesterov ? d + o.momentum * gr.m[i]! : gr.m[i]!;
    }
    gr.p[i]! -= gr.lr * d;
  }
}
