import { describe, expect, it } from 'vitest';
import { formatBytes, formatCount, formatNumber, formatPercent, formatSeconds, markdownTable } from '../../examples/lib/table.js';

describe('number formats', () => {
  it('counts with thousands separators', () => {
    expect(formatCount(0)).toBe('0');
    expect(formatCount(999)).toBe('999');
    expect(formatCount(1000)).toBe('1,000');
    expect(formatCount(1234567)).toBe('1,234,567');
    expect(formatCount(-1234567)).toBe('-1,234,567');
    expect(formatCount(12345.6)).toBe('12,346');
    expect(formatCount(Number.NaN)).toBe('NaN');
  });

  it('percentages, keeping small shares visible', () => {
    expect(formatPercent(0.1234)).toBe('12.3%');
    expect(formatPercent(1)).toBe('100.0%');
    expect(formatPercent(0.5, 0)).toBe('50%');
    expect(formatPercent(0)).toBe('0.0%');
    expect(formatPercent(0.000123)).toBe('0.012%');
    expect(formatPercent(0.0042)).toBe('0.42%');
    expect(formatPercent(0.00999)).toBe('1.0%');
  });

  it('bytes in binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1024)).toBe('1.00 KiB');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(15.25 * 1024 * 1024)).toBe('15.3 MiB');
    expect(formatBytes(300 * 1024 * 1024)).toBe('300 MiB');
    expect(formatBytes(1024 * 1024 - 1)).toBe('1.00 MiB');
    expect(formatBytes(3 * 1024 ** 3)).toBe('3.00 GiB');
    expect(() => formatBytes(-1)).toThrow(/n = -1/);
  });

  it('durations and plain numbers', () => {
    expect(formatSeconds(0.0123)).toBe('12.3 ms');
    expect(formatSeconds(4.567)).toBe('4.57 s');
    expect(formatSeconds(135)).toBe('2 min 15 s');
    expect(formatSeconds(7300)).toBe('2 h 1 min');
    expect(formatNumber(1.23456)).toBe('1.235');
    expect(formatNumber(1.23456, 1)).toBe('1.2');
    expect(formatNumber(20000)).toBe('20,000');
  });
});

describe('markdownTable', () => {
  it('pads and aligns columns', () => {
    const t = markdownTable(['method', { header: 'trainable', align: 'right' }], [
      ['full', formatCount(2_400_000)],
      ['LoRA r=8', formatCount(49_152)],
    ]);
    expect(t).toBe(
      '| method   | trainable |\n' +
      '| :------- | --------: |\n' +
      '| full     | 2,400,000 |\n' +
      '| LoRA r=8 |    49,152 |\n',
    );
  });

  it('right-aligns number columns, formats numbers, escapes pipes and line breaks', () => {
    const t = markdownTable(['name', 'loss', { header: 'α', align: 'center' }], [
      ['a|b', 1.23456, 'x'],
      ['two\nlines', 12, null],
    ]);
    expect(t.split('\n')).toEqual([
      '| name         |  loss |  α  |',
      '| :----------- | ----: | :-: |',
      '| a\\|b         | 1.235 |  x  |',
      '| two<br>lines |    12 |     |',
      '',
    ]);
  });

  it('rejects rows of the wrong width', () => {
    expect(() => markdownTable(['a', 'b'], [['x']])).toThrow(/rows\[0\] has 1 cells, expected 2/);
    expect(() => markdownTable([], [])).toThrow(/columns is empty/);
    expect(markdownTable(['only'], [])).toBe('| only |\n| :--- |\n');
  });
});
