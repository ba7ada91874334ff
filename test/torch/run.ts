/**
 * Run the PyTorch reference (test/torch/gpt2_ref.py) from a test. One `gpt2_ref.py --serve`
 * process per test process takes the jobs one request at a time (importing torch takes seconds
 * on a loaded machine; it is paid once); each job's results come back through a safetensors
 * file in a temporary folder. The job format is documented in test/torch/README.md;
 * {@link TorchJob} is its TypeScript shape.
 *
 * @example
 * ```ts
 * const r = await runTorch({ model_dir: dir, task: 'lm', batches: [{ input_ids: [[1, 2, 3]] }] });
 * r['logits.0']!.shape; // [1, 3, vocab_size], Float64Array data (float64 is the default dtype)
 * ```
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensorsFile, type StTensor } from './safetensors.js';

/** The interpreter with torch: WEBGPU_LORA_PYTHON, else Debian's /usr/bin/python3. */
export const PYTHON = process.env.WEBGPU_LORA_PYTHON || '/usr/bin/python3';
/** The reference script. */
export const GPT2_REF = fileURLToPath(new URL('./gpt2_ref.py', import.meta.url));

/** One batch: token ids [B, T]; labels [B, T] (lm; -100 is ignored; default input_ids) or [B] (seq_cls). */
export interface TorchBatch {
  input_ids: number[][];
  labels?: number[][] | number[];
  attention_mask?: number[][];
}

/** Which tensors train (see README.md, "trainable"). */
export type TorchTrainable = 'lora' | 'all' | 'head' | { freeze?: string[]; freeze_first_blocks?: number };

export type TorchOptimizer =
  | { type?: 'adamw'; lr: number; betas?: [number, number]; eps?: number; weight_decay?: number; no_decay?: string[] }
  | { type: 'sgd'; lr: number; momentum?: number; dampening?: number; weight_decay?: number; nesterov?: boolean; no_decay?: string[] };

/** A job for gpt2_ref.py; paths should be absolute. */
export interface TorchJob {
  model_dir: string;
  task?: 'lm' | 'seq_cls';
  dtype?: 'float64' | 'float32';
  adapter_dir?: string;
  lora?: { config: Record<string, unknown>; init_file: string };
  batches: TorchBatch[];
  mode?: 'forward' | 'grad' | 'train';
  trainable?: TorchTrainable;
  optimizer?: TorchOptimizer;
  steps?: number;
  record?: boolean;
  final_logits?: boolean;
  merge?: boolean;
  pooling?: 'last_non_pad' | 'first_pad';
  /** Set by {@link runTorch} when absent. */
  out?: string;
  save_adapter_dir?: string;
  save_model_dir?: string;
}

/** The out file's tensors by name (`logits.0`, `loss.3`, `grad.<name>`, `param.<name>`, ...). */
export type TorchResult = Record<string, StTensor>;

/** Thrown when a job fails; `stderr` holds the script's message (`gpt2_ref: job[1]: ...`) and warnings. */
export class TorchRefError extends Error {
  constructor(
    message: string,
    /** 2: a bad job or input file; 1: an unexpected failure (a traceback); null: the process died. */
    readonly status: number | null,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'TorchRefError';
  }
}

interface Answer {
  ok: boolean;
  status?: number;
  error?: string;
  warnings: string[];
}

/** The serving process: requests are answered in order, one line each. */
class Server {
  readonly child: ChildProcessWithoutNullStreams;
  private readonly waiting: { resolve: (a: Answer) => void; reject: (e: Error) => void }[] = [];
  private out = '';
  private err = '';
  dead = false;

  constructor() {
    this.child = spawn(PYTHON, [GPT2_REF, '--serve'], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => {
      this.out += chunk;
      for (let nl = this.out.indexOf('\n'); nl >= 0; nl = this.out.indexOf('\n')) {
        const line = this.out.slice(0, nl);
        this.out = this.out.slice(nl + 1);
        let answer: Answer;
        try {
          answer = JSON.parse(line) as Answer;
        } catch {
          // only answers go to stdout; anything else is a bug worth seeing
          answer = { ok: false, status: 1, error: `gpt2_ref.py --serve wrote a line that is not an answer: ${line.slice(0, 500)}`, warnings: [] };
        }
        this.waiting.shift()?.resolve(answer);
        if (!this.waiting.length) this.idle();
      }
    });
    this.child.stderr.on('data', (chunk: string) => {
      this.err = (this.err + chunk).slice(-20_000);
    });
    const die = (why: string) => {
      if (this.dead) return;
      this.dead = true;
      for (const w of this.waiting.splice(0)) w.reject(new TorchRefError(`gpt2_ref.py --serve (${PYTHON}) ${why}: ${this.err.trim()}`, null, this.err));
    };
    this.child.stdin.on('error', () => undefined); // a dead process: reported by 'exit' below
    this.child.on('error', (e) => die(`could not run: ${e.message}`));
    this.child.on('exit', (code, signal) => die(`exited (${code ?? signal})`));
    this.idle();
  }

  /** While nothing is pending the process must not keep Node alive. */
  private idle(): void {
    this.child.unref();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr]) (s as unknown as Socket).unref();
  }

  request(body: object): Promise<Answer> {
    if (this.dead) return Promise.reject(new TorchRefError(`gpt2_ref.py --serve is not running: ${this.err.trim()}`, null, this.err));
    this.child.ref();
    (this.child.stdout as unknown as Socket).ref();
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.child.stdin.write(JSON.stringify(body) + '\n');
    });
  }
}

let server: Server | null = null;
let queue: Promise<unknown> = Promise.resolve();

/**
 * Run several jobs in order (a later job may read a directory an earlier one saved) and return
 * each job's results. Rejects with a {@link TorchRefError} at the first job that fails.
 */
export function runTorchJobs(jobs: TorchJob[]): Promise<TorchResult[]> {
  const run = async () => {
    if (!server || server.dead) server = new Server();
    const dir = mkdtempSync(join(tmpdir(), 'gpt2-ref-'));
    try {
      const withOut = jobs.map((j, i) => ({ ...j, out: j.out ?? join(dir, `out${i}.safetensors`) }));
      const answer = await server.request({ jobs: withOut, base_dir: dir });
      const warnings = answer.warnings.map((w) => `gpt2_ref: warning: ${w}`).join('\n');
      if (!answer.ok) {
        const stderr = [answer.error ?? '', warnings].filter(Boolean).join('\n');
        throw new TorchRefError(`gpt2_ref.py failed (status ${answer.status}): ${stderr}`, answer.status ?? 1, stderr);
      }
      if (warnings) console.warn(warnings);
      return withOut.map((j) => readSafetensorsFile(j.out).tensors);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  // one request at a time: answers come back in order on one pipe
  const result = queue.then(run, run);
  queue = result.catch(() => undefined);
  return result;
}

/** Run one job and return its results. */
export async function runTorch(job: TorchJob): Promise<TorchResult> {
  return (await runTorchJobs([job]))[0]!;
}

/** End the serving process (it also ends by itself when this process exits). */
export async function closeTorch(): Promise<void> {
  await queue;
  const s = server;
  server = null;
  if (!s || s.dead) return;
  await new Promise<void>((resolve) => {
    s.child.once('exit', () => resolve());
    s.child.stdin.end();
  });
}
