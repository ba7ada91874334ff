/**
 * `npm run page`: build the fine-tuning page (build.ts) and serve it from a small local static
 * server, printing the URL. `servePage` is also what the browser test starts.
 *
 * The server knows a fixed list of files (the build's output and the checkpoint's two files)
 * and answers 404 to anything else, so no request can reach another path on the disk. It listens
 * on 127.0.0.1 by default: WebGPU needs a secure context, which localhost is (another host needs
 * HTTPS).
 *
 *   npm run page                              # examples/checkpoints/brown-gpt2, or a fallback model
 *   npm run page -- --checkpoint <dir> --port 8080
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { buildPage } from './build.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.safetensors': 'application/octet-stream',
};

export interface ServeOptions {
  /** The build's output folder. */
  dir: string;
  checkpointDir: string;
  host?: string;
  /** 0: any free port. */
  port?: number;
}

export interface PageServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Serve the page's files (and the checkpoint under /checkpoint/) until `close()`. */
export async function servePage(o: ServeOptions): Promise<PageServer> {
  const routes = new Map<string, string>();
  for (const f of ['index.html', 'app.js', 'app.js.map', 'brown.json', 'page.json']) routes.set(`/${f}`, join(o.dir, f));
  routes.set('/', join(o.dir, 'index.html'));
  for (const f of ['config.json', 'model.safetensors']) routes.set(`/checkpoint/${f}`, join(o.checkpointDir, f));
  const server = createServer((req, res) => {
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      // A request target that is not a URL path (`//[`, say): refused, and the server goes on.
      res.writeHead(400, { 'content-type': 'text/plain' }).end('bad request');
      return;
    }
    const file = routes.get(path);
    if (!file || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(file ? 405 : 404, { 'content-type': 'text/plain' }).end(file ? 'method not allowed' : 'not found');
      return;
    }
    stat(file).then(
      (st) => {
        const ext = file.slice(file.lastIndexOf('.'));
        res.writeHead(200, { 'content-type': TYPES[ext] ?? 'application/octet-stream', 'content-length': st.size, 'cache-control': 'no-store' });
        if (req.method === 'HEAD') res.end();
        else createReadStream(file).on('error', () => res.destroy()).pipe(res);
      },
      () => res.writeHead(404, { 'content-type': 'text/plain' }).end('not found'),
    );
  });
  const host = o.host ?? '127.0.0.1';
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(o.port ?? 0, host, () => ok());
  });
  const { port } = server.address() as AddressInfo;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}/`,
    server,
    close: () => new Promise<void>((ok) => server.close(() => ok())),
  };
}

async function main(argv: string[]): Promise<void> {
  const o = new Command('page')
    .description('Build the browser fine-tuning page and serve it locally')
    .option('--checkpoint <dir>', 'a folder with config.json + model.safetensors (default: examples/checkpoints/brown-gpt2, else a small fallback model)')
    .option('--out <dir>', 'build folder (default: examples/browser/dist)')
    .option('--host <host>', 'address to listen on (WebGPU needs localhost or HTTPS)', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', (v) => Number(v), 8080)
    .parse(argv)
    .opts<{ checkpoint?: string; out?: string; host: string; port: number }>();
  const b = await buildPage({ checkpoint: o.checkpoint, outDir: o.out });
  let s: PageServer;
  try {
    s = await servePage({ dir: b.outDir, checkpointDir: b.checkpointDir, host: o.host, port: o.port });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    console.log(`page: port ${o.port} is in use; taking a free one`);
    s = await servePage({ dir: b.outDir, checkpointDir: b.checkpointDir, host: o.host, port: 0 });
  }
  console.log(`page: open ${s.url} in a browser with WebGPU (Ctrl-C stops the server)`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
