#!/usr/bin/env node
'use strict';
// Compiles the TypeScript sources to CommonJS under dist/ and places each node's
// editor files (.html, locales, icons) beside its compiled .js, where Node-RED looks for them,
// and the stand-in's web console files beside the module that serves them.
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist');

function copyTree(from, to) {
  if (!fs.existsSync(from)) return;
  fs.mkdirSync(to, { recursive: true });
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    const target = path.join(to, entry.name);
    if (entry.isDirectory()) copyTree(source, target);
    else fs.copyFileSync(source, target);
  }
}

// A clean output, so that files of renamed or removed sources are never shipped.
fs.rmSync(dist, { recursive: true, force: true });

const tsc = require.resolve('typescript/bin/tsc');
try {
  execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit' });
} catch {
  console.error('build: TypeScript compilation failed');
  process.exit(1);
}

const nodesOut = path.join(dist, 'nodes');
fs.mkdirSync(nodesOut, { recursive: true });
for (const name of fs.readdirSync(path.join(root, 'nodes'))) {
  if (name.endsWith('.html')) fs.copyFileSync(path.join(root, 'nodes', name), path.join(nodesOut, name));
}
copyTree(path.join(root, 'locales'), path.join(nodesOut, 'locales'));
copyTree(path.join(root, 'icons'), path.join(nodesOut, 'icons'));
// The stand-in's web console: static files served from beside dist/simulator/console-page.js.
copyTree(path.join(root, 'simulator', 'console-page'), path.join(dist, 'simulator', 'console-page'));
const simulatorCli = path.join(dist, 'simulator', 'cli.js');
if (fs.existsSync(simulatorCli)) fs.chmodSync(simulatorCli, 0o755);
