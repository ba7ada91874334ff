import { describe, expect, it } from 'vitest';
import { createProgress, type ProgressStream } from '../../examples/lib/progress.js';

function stream(isTTY: boolean): ProgressStream & { text: string } {
  return {
    isTTY,
    columns: 160,
    text: '',
    write(chunk: string) {
      this.text += chunk;
      return true;
    },
  };
}

describe('progress', () => {
  it('prints a line every 25% and a summary when not a terminal', () => {
    const out = stream(false);
    let t = 0;
    const bar = createProgress({ label: 'full', total: 200, stream: out, now: () => t });
    for (let s = 1; s <= 200; s++) {
      t += 50; // 20 steps/s
      bar.update(s, { loss: 3 - s / 100 });
    }
    expect(bar.rate).toBeCloseTo(20, 10);
    bar.stop();
    bar.stop();
    expect(out.text.split('\n')).toEqual([
      'full: 25% (50/200 steps), loss 2.5000, 20.0 steps/s, 2.5 s elapsed',
      'full: 50% (100/200 steps), loss 2.0000, 20.0 steps/s, 5 s elapsed',
      'full: 75% (150/200 steps), loss 1.5000, 20.0 steps/s, 7.5 s elapsed',
      'full: done, 200/200 steps in 10 s, loss 1.0000, 20.0 steps/s',
      '',
    ]);
  });

  it('prints once per threshold even when a jump crosses several, and only the summary with everyPercent 0', () => {
    const out = stream(false);
    const bar = createProgress({ label: 'x', total: 10, stream: out, now: () => 0, everyPercent: 10, unit: 'batches' });
    bar.update(5, { note: 'lr 1e-3' });
    bar.update(6);
    bar.stop();
    expect(out.text.split('\n')).toEqual([
      'x: 50% (5/10 batches), loss -, 0.00 batches/s, 0 ms elapsed, lr 1e-3',
      'x: 60% (6/10 batches), loss -, 0.00 batches/s, 0 ms elapsed, lr 1e-3',
      'x: stopped, 6/10 batches in 0 ms, loss -, 0.00 batches/s, lr 1e-3',
      '',
    ]);
    const quiet = stream(false);
    const q = createProgress({ label: 'q', total: 4, stream: quiet, everyPercent: 0 });
    for (let i = 0; i < 4; i++) q.increment({ loss: 1 });
    q.stop();
    expect(quiet.text.trim().split('\n')).toHaveLength(1);
    expect(quiet.text).toMatch(/^q: done, 4\/4 steps in .*, loss 1\.0000, /);
  });

  it('draws a bar with ETA, loss and speed on a terminal', () => {
    const out = stream(true);
    let t = 0;
    const bar = createProgress({ label: 'LoRA', total: 100, stream: out, now: () => t });
    for (let s = 1; s <= 100; s++) {
      t += 10;
      bar.increment({ loss: 1.23456 });
    }
    bar.stop();
    expect(out.text).toMatch(/LoRA \|.*\| 100% \| 100\/100 steps \| ETA .* \| loss 1\.2346 \| 100 steps\/s/);
    expect(out.text).not.toMatch(/elapsed/); // the plain-line mode did not run
  });

  it('rejects bad arguments', () => {
    expect(() => createProgress({ label: 'x', total: 0, stream: stream(false) })).toThrow(/total = 0/);
    expect(() => createProgress({ label: 'x', total: 5, stream: stream(false), everyPercent: 150 })).toThrow(/everyPercent = 150/);
    const bar = createProgress({ label: 'x', total: 5, stream: stream(false) });
    expect(() => bar.update(6)).toThrow(/done = 6, expected a number in \[0, total = 5\]/);
  });
});
