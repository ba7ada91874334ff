#!/usr/bin/env node
// Make sure Dawn (npm `webgpu`) finds a WebGPU adapter on this machine.
//
// On a Linux machine without a GPU, Dawn needs a software Vulkan driver. Mesa's
// lavapipe is that driver, but only recent builds are accepted: Debian bookworm's
// own mesa 22.3 is rejected ("Vulkan shaderUniform*ArrayDynamicIndexing required"),
// while bookworm-backports' mesa-vulkan-drivers 25.x works. When no adapter is
// found and we are root on Debian/Ubuntu, this script installs one and says what
// it does; otherwise it prints the exact command and fails.
//
// Runs before `npm test` and `npm run bench` (pre-scripts). Set
// WEBGPU_LORA_NO_INSTALL=1 to only check.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';

const log = (msg) => console.log(`ensure-adapter: ${msg}`);

/** Probe in a child process: Dawn caches the Vulkan loader state per process. */
function probe() {
  const code = `
    const { create } = await import('webgpu');
    const gpu = create([]);
    const a = await gpu.requestAdapter();
    if (!a) { console.log('NONE'); process.exit(0); }
    const i = a.info;
    console.log('OK ' + JSON.stringify({ vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description }));
    process.exit(0);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  const line = (r.stdout || '').split('\n').find((l) => l.startsWith('OK ') || l === 'NONE');
  if (line?.startsWith('OK ')) return { ok: true, info: JSON.parse(line.slice(3)) };
  return { ok: false, detail: ((r.stderr || '') + (r.stdout || '')).trim().split('\n').slice(-5).join('\n') };
}

function osRelease() {
  try {
    const out = {};
    for (const line of readFileSync('/etc/os-release', 'utf8').split('\n')) {
      const m = line.match(/^([A-Z_]+)=(.*)$/);
      if (m) out[m[1]] = m[2].replace(/^"|"$/g, '');
    }
    return out;
  } catch {
    return {};
  }
}

/** The Debian mirror the machine already uses, so the backports suite comes from the same place. */
function debianMirror() {
  const files = ['/etc/apt/sources.list'];
  try {
    for (const f of readdirSync('/etc/apt/sources.list.d')) files.push(`/etc/apt/sources.list.d/${f}`);
  } catch {}
  for (const f of files) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    const m = text.match(/(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(https?:\/\/\S+\/debian)\/?\s/m);
    if (m) return m[1];
  }
  return 'http://deb.debian.org/debian';
}

function run(cmd, args) {
  log(`$ ${cmd} ${args.join(' ')}`);
  execFileSync(cmd, args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

function installPlan(os) {
  if (os.ID === 'debian' && os.VERSION_CODENAME === 'bookworm') {
    const list = '/etc/apt/sources.list.d/bookworm-backports.sources';
    return {
      describe: `add the bookworm-backports suite (${list}), apt-get update, apt-get install -t bookworm-backports mesa-vulkan-drivers`,
      manual: [
        `printf 'Types: deb\\nURIs: ${debianMirror()}\\nSuites: bookworm-backports\\nComponents: main\\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\\n' > ${list}`,
        'apt-get update',
        'apt-get install -y -t bookworm-backports mesa-vulkan-drivers',
      ],
      apply() {
        if (!existsSync(list)) {
          writeFileSync(
            list,
            `Types: deb\nURIs: ${debianMirror()}\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n`,
          );
          log(`wrote ${list}`);
        }
        run('apt-get', ['update', '-qq']);
        run('apt-get', ['install', '-y', '-qq', '-t', 'bookworm-backports', 'mesa-vulkan-drivers']);
      },
    };
  }
  if (os.ID === 'debian' || os.ID === 'ubuntu' || /debian|ubuntu/.test(os.ID_LIKE ?? '')) {
    return {
      describe: 'apt-get update, apt-get install mesa-vulkan-drivers (lavapipe)',
      manual: ['apt-get update', 'apt-get install -y mesa-vulkan-drivers'],
      apply() {
        run('apt-get', ['update', '-qq']);
        run('apt-get', ['install', '-y', '-qq', 'mesa-vulkan-drivers']);
      },
    };
  }
  return null;
}

const first = probe();
if (first.ok) {
  log(`adapter found: ${JSON.stringify(first.info)}`);
  process.exit(0);
}
log('no WebGPU adapter found by Dawn' + (first.detail ? `:\n${first.detail}` : ''));

const os = osRelease();
const plan = process.platform === 'linux' ? installPlan(os) : null;
if (!plan) {
  log(`cannot install a software adapter automatically on ${process.platform} ${os.PRETTY_NAME ?? ''}.`);
  log('Install a Vulkan (Linux), Metal (macOS) or D3D12 (Windows) driver that Dawn accepts, e.g. Mesa lavapipe >= 24.');
  process.exit(1);
}
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (!isRoot || process.env.WEBGPU_LORA_NO_INSTALL === '1') {
  log(`to install Mesa's lavapipe software adapter, run as root:\n  ${plan.manual.join('\n  ')}`);
  process.exit(1);
}
log(`installing a software adapter: ${plan.describe}`);
try {
  plan.apply();
} catch (e) {
  log(`install failed: ${e.message}`);
  process.exit(1);
}
const second = probe();
if (!second.ok) {
  log('still no adapter after installing lavapipe' + (second.detail ? `:\n${second.detail}` : ''));
  process.exit(1);
}
log(`adapter found: ${JSON.stringify(second.info)}`);
