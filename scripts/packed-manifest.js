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
// A pack that failed half-way leaves the kept copy behind; the next strip or restore puts prepare back first.
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const manifest = path.join(root, 'package.json');
const kept = path.join(root, 'package.json.before-pack');

function withoutPrepare(text) {
  const parsed = JSON.parse(text);
  delete parsed.scripts.prepare;
  return parsed;
}

/** package.json with its scripts.prepare back, where the kept copy had it. */
function withPrepare(current, keptText) {
  const keptScripts = JSON.parse(keptText).scripts;
  if (keptScripts.prepare === undefined) return current;
  const scripts = {};
  for (const name of Object.keys(keptScripts)) {
    if (name === 'prepare') scripts.prepare = keptScripts.prepare;
    else if (name in current.scripts) scripts[name] = current.scripts[name];
  }
  Object.assign(scripts, current.scripts, { prepare: keptScripts.prepare });
  return { ...current, scripts };
}

// The kept copy goes back byte for byte when package.json is still what strip wrote; when something
// changed it since (a pack that stopped half-way, then an edit or `npm version`), only prepare is put
// back into it, so that the change is not lost.
function restore() {
  if (!fs.existsSync(kept)) return;
  const keptText = fs.readFileSync(kept, 'utf8');
  const currentText = fs.readFileSync(manifest, 'utf8');
  const current = JSON.parse(currentText);
  if (JSON.stringify(current) === JSON.stringify(withoutPrepare(keptText))) {
    fs.renameSync(kept, manifest);
    return;
  }
  fs.writeFileSync(manifest, JSON.stringify(withPrepare(current, keptText), null, 2) + '\n');
  fs.rmSync(kept);
  console.warn('packed-manifest: package.json changed after an unfinished pack; its prepare script was put back');
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
