#!/usr/bin/env node
// Make sure a Python with PyTorch is available for the reference tests (test/torch): a small
// GPT-2 written in torch, over the same safetensors files, is the independent reference the
// model and PEFT tests compare against.
//
// Looks for WEBGPU_LORA_PYTHON, else /usr/bin/python3 (Debian's python3-torch installs torch for
// that interpreter only; the PATH's python3 may be another one), and checks `import torch`.
// When that fails and we are root on Debian/Ubuntu, installs Debian's `python3-torch` and says
// so; otherwise prints the exact command and fails. Runs before `npm test` (pretest).
// WEBGPU_LORA_NO_INSTALL=1 only checks.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const log = (msg) => console.log(`ensure-torch: ${msg}`);
const python = process.env.WEBGPU_LORA_PYTHON || '/usr/bin/python3';

/** torch's version as `python -c 'import torch'` prints it, or null (no interpreter, no torch). */
function version() {
  try {
    return execFileSync(python, ['-c', 'import torch; print(torch.__version__)'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 120_000,
    }).trim();
  } catch {
    return null;
  }
}

function isDebianLike() {
  try {
    return /^(ID|ID_LIKE)=.*(debian|ubuntu)/m.test(readFileSync('/etc/os-release', 'utf8'));
  } catch {
    return false;
  }
}

let v = version();
if (v) {
  log(`found torch ${v} for ${python}`);
  process.exit(0);
}
const manual = 'apt-get update && apt-get install -y python3-torch';
// Debian's package serves /usr/bin/python3 only: with another interpreter named, installing it
// would not help, so only the command is printed.
const canInstall = !process.env.WEBGPU_LORA_NO_INSTALL && process.getuid?.() === 0 && isDebianLike() && !process.env.WEBGPU_LORA_PYTHON;
if (!canInstall) {
  log(`${python} cannot import torch (set WEBGPU_LORA_PYTHON to use another interpreter). Install it, as root on Debian/Ubuntu:`);
  log(`  ${manual}`);
  process.exit(1);
}
log(`${python} cannot import torch: installing Debian's python3-torch (the reference GPT-2 of test/torch runs on it)`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
for (const args of [['update'], ['install', '-y', '--no-install-recommends', 'python3-torch']]) {
  log(`$ apt-get ${args.join(' ')}`);
  execFileSync('apt-get', args, { stdio: 'inherit', env });
}
v = version();
if (!v) {
  log(`installed, but ${python} still cannot import torch`);
  process.exit(1);
}
log(`installed torch ${v} for ${python}`);
