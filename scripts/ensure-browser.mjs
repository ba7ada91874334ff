#!/usr/bin/env node
// Make sure a Chromium is available for the browser test (test/browser): the library is meant
// to run unchanged on a browser's navigator.gpu, and that test runs it there (Chromium's own
// software adapter, SwiftShader, on a machine without a GPU).
//
// Looks for WEBGPU_LORA_CHROMIUM, else /usr/bin/chromium. When missing and we are root on
// Debian/Ubuntu, installs Debian's `chromium` package and says so; otherwise prints the exact
// command and fails. Runs before `npm test` (pretest). WEBGPU_LORA_NO_INSTALL=1 only checks.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const log = (msg) => console.log(`ensure-browser: ${msg}`);
const path = process.env.WEBGPU_LORA_CHROMIUM || '/usr/bin/chromium';

function version() {
  try {
    return execFileSync(path, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 60_000 }).trim();
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

let v = existsSync(path) ? version() : null;
if (v) {
  log(`found ${path}: ${v}`);
  process.exit(0);
}
const manual = 'apt-get update && apt-get install -y chromium';
const canInstall = !process.env.WEBGPU_LORA_NO_INSTALL && process.getuid?.() === 0 && isDebianLike() && !process.env.WEBGPU_LORA_CHROMIUM;
if (!canInstall) {
  log(`no Chromium at ${path} (set WEBGPU_LORA_CHROMIUM to use another). Install it, as root on Debian/Ubuntu:`);
  log(`  ${manual}`);
  process.exit(1);
}
log(`no Chromium at ${path}: installing Debian's chromium (the browser test runs the library on its navigator.gpu)`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
for (const args of [['update'], ['install', '-y', '--no-install-recommends', 'chromium']]) {
  log(`$ apt-get ${args.join(' ')}`);
  execFileSync('apt-get', args, { stdio: 'inherit', env });
}
v = version();
if (!v) {
  log(`installed, but ${path} --version still fails`);
  process.exit(1);
}
log(`installed ${path}: ${v}`);
