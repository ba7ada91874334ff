/**
 * A training progress bar: cli-progress's bar with ETA, loss and speed where the output is a
 * terminal; plain lines every few percent where it is not (a CI log, a file), because a
 * redrawn bar there is a wall of control characters.
 *
 * The bar goes to stderr by default, so the demo's results on stdout stay clean when piped
 * (`npm run demo > results.md` still shows the bar); pass `stream` to choose.
 */
import cliProgress from 'cli-progress';
import { ArgumentError } from '../../src/gpu/errors.js';
import { formatSeconds } from './table.js';

/** The part of a stream a progress display needs (a `process.stdout` / `stderr`, or a test double). */
export interface ProgressStream {
  write(chunk: string): boolean;
  /** True for a terminal: then the bar is drawn and redrawn in place. */
  isTTY?: boolean;
  columns?: number;
}

/** Options of `createProgress`. */
export interface ProgressOptions {
  /** What is running, e.g. `'LoRA r=8'`. */
  label: string;
  /** Number of steps. */
  total: number;
  /** Where to write (default `process.stderr`). */
  stream?: ProgressStream;
  /** Not a terminal: print a line each time this many percent more are done (default 25; 0 = only at the end). */
  everyPercent?: number;
  /** What a step is called in the output (default `'steps'`). */
  unit?: string;
  /** Clock in ms (default `performance.now`), for tests. */
  now?: () => number;
}

/** Values shown beside the bar. */
export interface ProgressPayload {
  /** The latest training loss. */
  loss?: number;
  /** Any short extra text, e.g. `'lr 3e-4'`. */
  note?: string;
}

/** A running progress display. */
export interface Progress {
  /** Sets the number of steps done (0 … total) and the values shown. */
  update(done: number, payload?: ProgressPayload): void;
  /** One more step done. */
  increment(payload?: ProgressPayload): void;
  /** Steps per second since the start. */
  readonly rate: number;
  /** Ends the display (draws the last state; prints the summary line when not a terminal). Idempotent. */
  stop(): void;
}

/**
 * Starts a progress display.
 *
 * @example
 * const bar = createProgress({ label: 'full fine-tuning', total: 200 });
 * for (let s = 0; s < 200; s++) bar.increment({ loss: trainStep() });
 * bar.stop();
 */
export function createProgress(options: ProgressOptions): Progress {
  const { label, total } = options;
  if (!Number.isInteger(total) || total < 1) throw new ArgumentError(`createProgress: total = ${total}, expected an integer >= 1`);
  const every = options.everyPercent ?? 25;
  if (!(every >= 0 && every <= 100)) throw new ArgumentError(`createProgress: everyPercent = ${every}, expected a number in [0, 100]`);
  const stream = options.stream ?? process.stderr;
  const unit = options.unit ?? 'steps';
  const now = options.now ?? (() => performance.now());
  const start = now();
  let done = 0;
  let last: ProgressPayload = {};
  let stopped = false;
  const elapsedS = (): number => (now() - start) / 1000;
  const rate = (): number => {
    const s = elapsedS();
    return s > 0 ? done / s : 0;
  };
  const lossText = (): string => (last.loss === undefined ? '-' : last.loss.toFixed(4));
  const rateText = (): string => rate().toFixed(rate() >= 100 ? 0 : rate() >= 10 ? 1 : 2);

  let bar: cliProgress.SingleBar | null = null;
  if (stream.isTTY) {
    bar = new cliProgress.SingleBar(
      {
        stream: stream as NodeJS.WritableStream,
        format: `${label} |{bar}| {percentage}% | {value}/{total} ${unit} | ETA {eta_formatted} | loss {loss} | {rate} ${unit}/s{note}`,
        hideCursor: true,
        etaBuffer: 50,
        fps: 10,
        barsize: 30,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { loss: '-', rate: '0', note: '' });
  }
  const payload = () => ({ loss: lossText(), rate: rateText(), note: last.note ? ` | ${last.note}` : '' });

  let nextLine = every > 0 ? every : Infinity; // the next percentage that prints a line
  const line = (head: string, elapsed: boolean): void => {
    const note = last.note ? `, ${last.note}` : '';
    const time = elapsed ? `, ${formatSeconds(elapsedS())} elapsed` : '';
    stream.write(`${label}: ${head}, loss ${lossText()}, ${rateText()} ${unit}/s${time}${note}\n`);
  };

  const update = (value: number, p?: ProgressPayload): void => {
    if (stopped) return;
    if (!Number.isFinite(value) || value < 0 || value > total) throw new ArgumentError(`progress.update: done = ${value}, expected a number in [0, total = ${total}]`);
    done = value;
    if (p) last = { ...last, ...p };
    if (bar) {
      bar.update(done, payload());
      return;
    }
    const pct = (100 * done) / total;
    if (pct >= nextLine && done < total) {
      line(`${Math.floor(pct)}% (${done}/${total} ${unit})`, true);
      while (nextLine <= pct) nextLine += every;
    }
  };

  return {
    update,
    increment: (p) => update(Math.min(total, done + 1), p),
    get rate() {
      return rate();
    },
    stop() {
      if (stopped) return;
      stopped = true;
      if (bar) {
        bar.update(done, payload());
        bar.stop();
      } else {
        line(`${done === total ? 'done' : 'stopped'}, ${done}/${total} ${unit} in ${formatSeconds(elapsedS())}`, false);
      }
    },
  };
}
