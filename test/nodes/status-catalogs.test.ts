/**
 * Every status text of every catalog, in both languages: the same keys in both, each short enough
 * to stay under its node in the editor, and every key a node shows present in both.
 */
import { strict as assert } from 'assert';
import { readdirSync, readFileSync } from 'fs';
import * as path from 'path';
import { catalogsOf, LANGUAGES, messageOf } from '../support/message-catalogs';

/** About 20 characters: Node-RED's own statuses are that short, and longer ones run under the next node. */
const MAX_COLUMNS = 20;

/** The longest plausible value of each parameter a status text takes. */
const REPRESENTATIVE: Record<string, string> = {
  version: '10.20.30',
  code: '-10',
  percent: '100',
  attempt: '10',
  action: 'offline',
  field: 'user_defined',
};

/** Columns a text takes in the editor's font, counting a CJK character (and full-width punctuation) as two. */
function columns(text: string): number {
  let width = 0;
  for (const character of text) width += /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/u.test(character) ? 2 : 1;
  return width;
}

/** Every key of a catalog tree as `a.b.c`. */
function keysOf(value: unknown, prefix = ''): string[] {
  if (typeof value !== 'object' || value === null) return [prefix];
  return Object.entries(value as Record<string, unknown>).flatMap(([name, child]) => keysOf(child, prefix ? `${prefix}.${name}` : name));
}

function statusTextsOf(language: (typeof LANGUAGES)[number]): Array<{ key: string; text: string }> {
  return Object.entries(catalogsOf(language)).flatMap(([catalog, messages]) => {
    const statuses = (messages[catalog] as Record<string, unknown> | undefined)?.status as Record<string, string> | undefined;
    return Object.entries(statuses ?? {}).map(([name, text]) => ({ key: `${catalog}.status.${name}`, text }));
  });
}

const nodesDir = path.resolve(__dirname, '../../../nodes');
function sourcesOf(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourcesOf(path.join(dir, entry.name)) : entry.name.endsWith('.ts') ? [readFileSync(path.join(dir, entry.name), 'utf8')] : [],
  );
}

describe('status texts in the message catalogs', function () {
  it('en-US and zh-CN have the same catalogs with the same keys', function () {
    const english = catalogsOf('en-US');
    const chinese = catalogsOf('zh-CN');
    assert.deepEqual(Object.keys(chinese).sort(), Object.keys(english).sort());
    for (const catalog of Object.keys(english)) assert.deepEqual(keysOf(chinese[catalog]).sort(), keysOf(english[catalog]).sort(), catalog);
  });

  for (const language of LANGUAGES) {
    it(`every ${language} status text is at most ${MAX_COLUMNS} columns wide with the longest plausible values`, function () {
      const texts = statusTextsOf(language);
      assert.ok(texts.length > 40, 'the statuses of every node are found');
      const tooWide: string[] = [];
      for (const { key, text } of texts) {
        const rendered = text.replace(/__(\w+)__/g, (_match, name: string) => {
          assert.ok(name in REPRESENTATIVE, `${key} takes ${name}: give it a representative value here`);
          return REPRESENTATIVE[name];
        });
        if (columns(rendered) > MAX_COLUMNS) tooWide.push(`${key}: "${rendered}" (${columns(rendered)})`);
      }
      assert.deepEqual(tooWide, []);
    });
  }

  it('counts a CJK character as two columns', function () {
    assert.equal(columns('下载中 100%'), 11);
    assert.equal(columns('failed (-10)'), 12);
  });

  it('every status key a node shows is in both catalogs, and every node names its keys in full', function () {
    const sources = sourcesOf(nodesDir).join('\n');
    const calls = sources.match(/statusText\(/g) ?? [];
    const keys = [...sources.matchAll(/statusText\('([^']+)'/g)].map((match) => match[1]);
    // The definition and its doc comment name it too, without a key.
    assert.equal(calls.length - keys.length, 1, 'each status key is written out, so that it can be checked');
    assert.ok(keys.length > 40);
    for (const key of keys) {
      assert.match(key, /^[a-z-]+\.status\.[a-z-]+$/, `${key} is a status key`);
      for (const language of LANGUAGES) assert.ok(messageOf(language, key) !== undefined, `${key} is in the ${language} catalog`);
    }
  });
});
