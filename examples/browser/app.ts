/**
 * The fine-tuning page (examples/browser/index.html): wires the controls to a `Session`
 * (session.ts), which does the GPU work. One action runs at a time; training yields to the event
 * loop between steps, so Stop and the page stay responsive.
 *
 * The page reads three things from its own origin, written by build.ts and served by serve.ts:
 * `page.json` (which checkpoint), `brown.json` (a few Brown genres' validation text) and
 * `checkpoint/{config.json, model.safetensors}`.
 *
 * `window.__webgpuLora` is a small hook for the browser test (test/browser/page.test.ts): the
 * losses, the probe logits, the adapter's tensors, and a promise for "nothing is running".
 */
import { createContext, type GpuContext } from '../../src/index.js';
import { LossChart } from './chart.js';
import { type AdapterSettings, PROBE_TEXT, Session, type TargetChoice, type TextSplit } from './session.js';

interface Genre {
  code: string;
  name: string;
  title: string;
  documents: string[];
  text: string;
}
interface BrownData {
  source: string;
  genres: Genre[];
}
interface PageInfo {
  checkpoint: { name: string; note: string | null };
}

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`page: no element #${id}`);
  return e as T;
};
const input = (id: string) => $<HTMLInputElement>(id);
const select = (id: string) => $<HTMLSelectElement>(id);

function setStatus(text: string, error = false): void {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('error', error);
}

/** `?steps=20&batch=4…` presets the controls of those ids (links that start with other settings; the test's small runs). */
function applyQuery(): void {
  const allowed = ['genre', 'rank', 'targets', 'lr', 'steps', 'batch', 'seq', 'prompt', 'sampleLen', 'temperature'];
  for (const [k, v] of new URLSearchParams(location.search)) {
    if (!allowed.includes(k)) continue;
    const e = document.getElementById(k) as HTMLInputElement | HTMLSelectElement | null;
    if (e) e.value = v;
  }
}

function num(id: string, min: number, max = Infinity, integer = true): number {
  const v = Number(input(id).value);
  if (!Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw new Error(`${id} = ${input(id).value}: expected ${integer ? 'an integer' : 'a number'} ${max === Infinity ? `>= ${min}` : `in [${min}, ${max}]`}`);
  }
  return v;
}

const fmt = (v: number | null | undefined, d = 3) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(d));
const fmtCount = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : String(n));

function b64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
const f32b64 = (a: Float32Array) => b64(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));

// ------------------------------------------------------------------ one action at a time

let queue: Promise<unknown> = Promise.resolve();
let busy = false;
let stopRequested = false;
let training = false;

/** Run GPU work after whatever is running (a Session is used by one thing at a time). */
function run<T>(fn: () => Promise<T> | T): Promise<T> {
  const p = queue.then(fn);
  queue = p.catch(() => {});
  return p;
}

/** A user action: buttons off while it runs, errors to the status line. */
async function action(label: string, fn: () => Promise<void>): Promise<void> {
  if (busy) return;
  busy = true;
  refreshButtons();
  try {
    await run(fn);
  } catch (e) {
    console.error(e);
    setStatus(`${label}: ${(e as Error).message}`, true);
  } finally {
    busy = false;
    refreshButtons();
  }
}

let session: Session | null = null;

function refreshButtons(): void {
  const idle = session !== null && !busy;
  for (const id of ['trainBtn', 'resetBtn', 'sampleBtn', 'downloadBtn']) $<HTMLButtonElement>(id).disabled = !idle;
  input('upload').disabled = !idle;
  input('alpha').disabled = session === null || (busy && !alphaRunning);
  $<HTMLButtonElement>('stopBtn').disabled = !training;
}

// ------------------------------------------------------------------ text

let brown: BrownData | null = null;
let split: TextSplit | null = null;

function onTextChanged(): void {
  if (!session) return;
  const text = $<HTMLTextAreaElement>('text').value;
  split = session.split(text);
  const unknown = session.vocab.countUnknown(split.train) + session.vocab.countUnknown(split.heldOut);
  $('textinfo').textContent =
    `${(split.train.length + split.heldOut.length).toLocaleString('en')} characters: the first 90 % (${split.train.length.toLocaleString('en')}) to train on, the last 10 % held out` +
    (unknown ? `; ${unknown} outside the model's alphabet (printable ASCII and newline)` : '');
}

function pickGenre(): void {
  const code = select('genre').value;
  const g = brown?.genres.find((x) => x.code === code);
  if (g) {
    $<HTMLTextAreaElement>('text').value = g.text;
    onTextChanged();
  }
}

// ------------------------------------------------------------------ samples, losses, WiSE-FT

/** The seed every column samples with (so they differ by their weights only); "Sample again" moves it on. */
let sampleSeed = 1;

function sampleOptions() {
  return { maxNewTokens: num('sampleLen', 1, 2000), temperature: num('temperature', 0, 10, false), seed: sampleSeed };
}

function showSample(id: string, prompt: string, text: string): void {
  const pre = $(id);
  const p = document.createElement('span');
  p.className = 'prompt';
  p.textContent = prompt;
  pre.replaceChildren(p, document.createTextNode(text));
}

const prompt = () => input('prompt').value || PROBE_TEXT;

async function heldOut(): Promise<number | null> {
  return split && session ? session.heldOutLoss(split, num('seq', 2)) : null;
}

/** What the "before" column shows: the base model's held-out loss of this text, a sample for these options. */
let beforeShown = { text: null as string | null, sample: null as string | null };

/** The base model's held-out loss and sample (the "before" column), where the text or the sample options changed. */
async function refreshBefore(): Promise<void> {
  const s = session!;
  const text = $<HTMLTextAreaElement>('text').value;
  if (beforeShown.text !== text) {
    setStatus('scoring the pre-trained model on the held-out text…');
    $('before-loss').textContent = `held-out loss ${fmt(await s.withBase(heldOut))} nats/char`;
    beforeShown.text = text;
  }
  const key = JSON.stringify([prompt(), sampleOptions()]);
  if (beforeShown.sample !== key) {
    setStatus('sampling from the pre-trained model…');
    showSample('before', prompt(), await s.withBase(() => s.sample(prompt(), sampleOptions())));
    beforeShown.sample = key;
  }
}

/** The adapter's held-out loss and sample (the "after" column). */
async function refreshAfter(): Promise<void> {
  const s = session!;
  s.toAdapterMode();
  setStatus('sampling with the adapter…');
  const l = await heldOut();
  $('after-loss').textContent = `held-out loss ${fmt(l)} nats/char`;
  $('s-val').textContent = fmt(l);
  showSample('after', prompt(), await s.sample(prompt(), sampleOptions()));
}

let alphaRunning = false;
let alphaWanted: number | null = null;

/** Interpolate to the slider's α, then sample and score (coalesces slider moves made meanwhile). */
async function refreshWise(): Promise<void> {
  const s = session!;
  alphaWanted = Number(input('alpha').value);
  while (alphaWanted !== null) {
    const a = alphaWanted;
    alphaWanted = null;
    setStatus(`WiSE-FT at α = ${a.toFixed(2)}: interpolating, sampling…`);
    s.setAlpha(a);
    const l = await heldOut();
    $('wise-loss').textContent = `held-out loss ${fmt(l)} nats/char at α = ${a.toFixed(2)}`;
    showSample('wise', prompt(), await s.sample(prompt(), sampleOptions()));
    lastAlpha = a;
  }
}
let lastAlpha: number | null = null;

function onAlphaInput(): void {
  const a = Number(input('alpha').value);
  $('alphaLabel').textContent = `α = ${a.toFixed(2)}`;
}

async function onAlphaChange(): Promise<void> {
  if (!session) return;
  if (alphaRunning) {
    alphaWanted = Number(input('alpha').value);
    return;
  }
  alphaRunning = true;
  try {
    await action('WiSE-FT', async () => {
      await refreshWise();
      setStatus(`WiSE-FT: α = ${lastAlpha!.toFixed(2)}. Drag the slider to move between the pre-trained (0) and the fine-tuned (1) weights.`);
    });
  } finally {
    alphaRunning = false;
    refreshButtons();
  }
}

// ------------------------------------------------------------------ training

let chart: LossChart;

function adapterSettings(): AdapterSettings {
  return { rank: num('rank', 1, 256), targets: select('targets').value as TargetChoice, seed: 0 };
}

function showAdapterInfo(): void {
  const s = session!;
  const c = s.peft.peftConfig.get(s.peft.activeAdapter)!;
  const { trainable, base } = s.counts();
  const steps = s.adapterSteps === null ? 'loaded from a file' : `${s.adapterSteps} steps`;
  const w = adapterSettings();
  const pending = s.adapterSteps !== 0 && (w.rank !== s.adapterSettings.rank || w.targets !== s.adapterSettings.targets) ? ' (new rank / layers apply with "New adapter")' : '';
  $('adapterinfo').textContent = `adapter: r = ${c.r}, α = ${c.lora_alpha}, ${JSON.stringify(c.target_modules)}; ${fmtCount(trainable)} trainable (${((100 * trainable) / base).toFixed(2)} % of ${fmtCount(base)}); ${steps}${pending}`;
}

async function trainRun(): Promise<void> {
  const s = session!;
  if (!split) onTextChanged();
  // Rank and layers apply to a fresh adapter; a trained (or loaded) one trains on as it is ("New adapter" starts over).
  const wanted = adapterSettings();
  const cur = s.adapterSettings;
  if (s.adapterSteps === 0 && (wanted.rank !== cur.rank || wanted.targets !== cur.targets)) s.resetAdapter(wanted);
  const steps = num('steps', 1);
  const settings = { steps, batch: num('batch', 1, 512), seqLen: num('seq', 2, s.maxSeqLen), lr: num('lr', 0, 10, false), seed: 1, heldOutEvery: Math.max(1, Math.round(steps / 10)) };
  await refreshBefore();
  showAdapterInfo();
  setStatus('training… (the first steps compile the kernels)');
  stopRequested = false;
  training = true;
  refreshButtons();
  let done = 0;
  try {
    done = await s.train(
      split!,
      settings,
      (p) => {
        chart.push(p.losses, p.heldOut);
        if (p.heldOut !== undefined) $('s-val').textContent = fmt(p.heldOut);
        const last = chart.values.slice(-10);
        $('s-step').textContent = `${s.adapterSteps ?? p.step}`;
        $('s-loss').textContent = fmt(last.reduce((a, b) => a + b, 0) / last.length);
        if (p.step > 0) {
          $('s-sps').textContent = fmt(p.stepsPerSecond, 2);
          $('s-tps').textContent = Math.round(p.tokensPerSecond).toLocaleString('en');
        }
        setStatus(p.step ? `training: step ${p.step} of ${settings.steps}` : 'training… (the first steps compile the kernels)');
        showAdapterInfo();
      },
      () => stopRequested,
    );
  } finally {
    training = false;
    refreshButtons();
  }
  showAdapterInfo();
  await refreshAfter();
  await refreshWise();
  setStatus(`${stopRequested ? 'stopped' : 'trained'} after ${done} steps. Move the α slider to interpolate; download the adapter below.`);
}

// ------------------------------------------------------------------ files

async function download(): Promise<void> {
  const s = session!;
  setStatus('packing the adapter…');
  const zip = await s.adapterZip();
  const url = URL.createObjectURL(new Blob([zip as Uint8Array<ArrayBuffer>], { type: 'application/zip' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = `${s.checkpointName}-lora.zip`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  $('fileinfo').textContent = `saved ${a.download} (${(zip.length / 1024).toFixed(1)} KiB)`;
  setStatus('adapter downloaded');
}

async function upload(file: File): Promise<void> {
  const s = session!;
  setStatus(`loading ${file.name}…`);
  const info = s.loadAdapterZip(new Uint8Array(await file.arrayBuffer()), file.name);
  chart.clear();
  $('s-step').textContent = '–';
  $('fileinfo').textContent = `loaded ${file.name}: r = ${info.rank}, targets ${info.targets}`;
  showAdapterInfo();
  await refreshAfter();
  await refreshWise();
  setStatus(`loaded ${file.name}; train on, sample, or move the slider`);
}

// ------------------------------------------------------------------ start

function showNoGpu(why: string): void {
  $('nogpu').hidden = false;
  $('nogpu-why').textContent = why;
  $('device').hidden = true;
  setStatus('WebGPU is not available in this browser: the page cannot train here.', true);
}

function tag(name: string, on: boolean, detail = ''): string {
  return `<span class="tag ${on ? 'on' : 'off'}">${name}${on ? ' ✓' : ' ✗'}${detail}</span>`;
}

function showDevice(ctx: GpuContext, s: Session, info: PageInfo): void {
  const c = ctx.caps;
  const a = c.adapter;
  const name = a.description || [a.vendor, a.architecture, a.device].filter(Boolean).join(' ') || 'unnamed adapter';
  const m = s.config;
  const escape = (t: string) => t.replace(/[&<>"]/g, (ch) => `&#${ch.charCodeAt(0)};`);
  $('device').innerHTML =
    `<span><b>GPU</b> ${escape(name)}${c.software ? ' <span class="tag off">software adapter</span>' : ''}</span>` +
    `<span><b>features in use</b> ${tag('f16', c.f16)} ${tag('subgroups', c.subgroups, c.subgroups ? ` ${c.subgroupMinSize}–${c.subgroupMaxSize}` : '')} ${tag('timestamps', c.timestampQuery)}</span>` +
    `<span><b>model</b> ${escape(info.checkpoint.name)}: GPT-2, ${m.n_layer} layer${m.n_layer === 1 ? '' : 's'}, ${m.n_embd} wide, ${m.n_head} heads, ${m.n_positions} characters of context, ${fmtCount(s.counts().base)} parameters</span>` +
    (info.checkpoint.note ? `<span class="error">${escape(info.checkpoint.note)}</span>` : '');
}

async function fetchJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`fetch ${url}: HTTP ${r.status}`);
  return (await r.json()) as T;
}

async function main(): Promise<void> {
  applyQuery();
  if (!input('prompt').value) input('prompt').value = PROBE_TEXT;
  chart = new LossChart($('chart'));
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) {
    showNoGpu('This browser has no navigator.gpu (WebGPU is missing or switched off).');
    hook.ready = true;
    hook.webgpu = false;
    return;
  }
  let ctx: GpuContext;
  try {
    ctx = await createContext({ gpu });
  } catch (e) {
    showNoGpu(`navigator.gpu is there, but no WebGPU device could be made: ${(e as Error).message}`);
    hook.ready = true;
    hook.webgpu = false;
    return;
  }
  hook.webgpu = true;
  setStatus('loading the checkpoint and the texts…');
  const [info, data] = await Promise.all([fetchJson<PageInfo>('page.json'), fetchJson<BrownData>('brown.json')]);
  brown = data;
  for (const g of data.genres) {
    const o = document.createElement('option');
    o.value = g.code;
    o.textContent = `${g.title} (${g.documents.length} documents, ${Math.round(g.text.length / 1000)}k characters)`;
    select('genre').appendChild(o);
  }
  const custom = document.createElement('option');
  custom.value = '';
  custom.textContent = 'your own text (paste it below)';
  select('genre').appendChild(custom);
  const wantGenre = new URLSearchParams(location.search).get('genre');
  select('genre').value = wantGenre ?? data.genres[0]?.code ?? '';
  const s = await run(() => Session.load(ctx, 'checkpoint/', adapterSettings(), info.checkpoint.name));
  session = s;
  hook.session = s;
  showDevice(ctx, s, info);
  $('zipdir').textContent = `${s.checkpointName}-lora`;
  pickGenre();
  showAdapterInfo();
  select('genre').addEventListener('change', pickGenre);
  $<HTMLTextAreaElement>('text').addEventListener('input', () => {
    select('genre').value = '';
    onTextChanged();
  });
  $('trainBtn').addEventListener('click', () => void action('training', trainRun));
  for (const id of ['rank', 'targets']) select(id).addEventListener('change', showAdapterInfo);
  $('stopBtn').addEventListener('click', () => {
    stopRequested = true;
    setStatus('stopping after this step…');
  });
  $('resetBtn').addEventListener('click', () =>
    void action('new adapter', async () => {
      s.resetAdapter(adapterSettings());
      chart.clear();
      $('s-step').textContent = '0';
      showAdapterInfo();
      await refreshAfter();
      await refreshWise();
      setStatus('a new adapter (B = 0: the model is the pre-trained one until it trains)');
    }),
  );
  $('sampleBtn').addEventListener('click', () =>
    void action('sampling', async () => {
      sampleSeed++;
      await refreshBefore();
      await refreshAfter();
      await refreshWise();
      setStatus('sampled');
    }),
  );
  input('alpha').addEventListener('input', onAlphaInput);
  input('alpha').addEventListener('change', () => void onAlphaChange());
  $('downloadBtn').addEventListener('click', () => void action('download', download));
  input('upload').addEventListener('change', () => {
    const f = input('upload').files?.[0];
    if (f) void action('upload', () => upload(f)).then(() => (input('upload').value = ''));
  });
  hook.ready = true;
  await action('sampling', async () => {
    await refreshBefore();
    $('after').textContent = '(train the adapter to see its sample)';
    $('wise').textContent = '(train first, then move the slider)';
    setStatus('ready: pick a genre or paste text, then Train');
  });
}

/** The test hook (see the file comment). */
const hook = {
  ready: false,
  webgpu: null as boolean | null,
  error: null as string | null,
  session: null as Session | null,
  /** Resolves when no action is running or queued. */
  async idle(): Promise<void> {
    for (;;) {
      const q = queue;
      await q;
      await new Promise((r) => setTimeout(r, 0));
      if (q === queue && !busy) return;
    }
  },
  losses: (): number[] => [...chart.values],
  state: () => session!.state,
  baseProbe: (): string => f32b64(session!.baseProbe),
  probe: (): Promise<string> => run(() => session!.probe()).then(f32b64),
  /** The probe logits with the adapter on and θ_pre (whatever the slider shows); the weights are restored after. */
  adapterProbe: (): Promise<string> =>
    run(async () => {
      const s = session!;
      const { mode, alpha } = s.state;
      s.toAdapterMode();
      const p = await s.probe();
      if (mode === 'wise') s.setAlpha(alpha);
      return p;
    }).then(f32b64),
  adapterTensors: (): Promise<Record<string, { shape: number[]; data: string }>> =>
    run(() => session!.adapterTensors()).then((m) => Object.fromEntries([...m].map(([k, v]) => [k, { shape: v.shape, data: f32b64(v.data) }]))),
};
(window as unknown as { __webgpuLora: typeof hook }).__webgpuLora = hook;

main().catch((e) => {
  console.error(e);
  hook.error = (e as Error).message;
  hook.ready = true;
  setStatus(`could not start: ${(e as Error).message}`, true);
});
