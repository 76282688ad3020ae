/** The help text calls each node by the name the palette shows it under, in the same language. */
import { strict as assert } from 'assert';
import { readdirSync, readFileSync } from 'fs';
import * as path from 'path';
import { catalogsOf, LANGUAGES } from '../support/message-catalogs';

const localesDir = path.resolve(__dirname, '../../../locales');

function paletteLabels(language: (typeof LANGUAGES)[number]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [type, catalog] of Object.entries(catalogsOf(language))) {
    const label = (catalog[type] as { paletteLabel?: unknown } | undefined)?.paletteLabel;
    if (typeof label === 'string') labels[type] = label;
  }
  return labels;
}

describe('node names in the help text', function () {
  it('zh-CN help names a node by its zh-CN palette label, never by its English label or type', function () {
    const english = paletteLabels('en-US');
    const chinese = paletteLabels('zh-CN');
    assert.ok(Object.keys(chinese).length >= 6);
    const dir = path.join(localesDir, 'zh-CN');
    for (const file of readdirSync(dir).filter((name) => name.endsWith('.html'))) {
      const help = readFileSync(path.join(dir, file), 'utf8');
      const named = [...help.matchAll(/<b>([^<]+)<\/b>/g)].map((match) => match[1]);
      for (const name of named) {
        const type = Object.keys(english).find((known) => known === name || english[known] === name);
        assert.equal(type, undefined, `${file} names "${name}": the zh-CN palette calls it "${type ? chinese[type] : ''}"`);
      }
      assert.ok(!help.includes('升级监听'), `${file} names 升级监听: the zh-CN palette calls it "${chinese['ota-update-in']}"`);
    }
  });
});
