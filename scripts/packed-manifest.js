#!/usr/bin/env node
'use strict';
// `npm pack` and `npm publish` run `prepack` (a fresh build, then this) before packing and `postpack` after it. The
// `prepare` script builds a fresh clone on `npm install`, but in the published package its
// scripts/build.js is absent, and npm 11 warns about it on every install of the package
// ("install-scripts not yet covered by allowScripts"). So the packed package.json goes without it:
//
//   node scripts/packed-manifest.js strip     (prepack)  keeps package.json aside, writes it without prepare
//   node scripts/packed-manifest.js restore   (postpack) puts the kept package.json back
//
// A pack that failed half-way leaves the kept copy behind; the next strip restores it first.
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const manifest = path.join(root, 'package.json');
const kept = path.join(root, 'package.json.before-pack');

function restore() {
  if (fs.existsSync(kept)) fs.renameSync(kept, manifest);
}

const command = process.argv[2];
if (command === 'strip') {
  restore();
  const original = fs.readFileSync(manifest, 'utf8');
  const packed = JSON.parse(original);
  delete packed.scripts.prepare;
  fs.writeFileSync(kept, original);
  fs.writeFileSync(manifest, JSON.stringify(packed, null, 2) + '\n');
} else if (command === 'restore') {
  restore();
} else {
  console.error('usage: packed-manifest.js strip|restore');
  process.exit(2);
}
