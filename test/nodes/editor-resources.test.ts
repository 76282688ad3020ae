import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { NodeRedProcess } from '../../demo/node-red-process';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const packageJson = require('../../../package.json') as { 'node-red': { nodes: Record<string, string> } };
const nodeTypes = Object.keys(packageJson['node-red'].nodes);

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const response = await fetch(url, { headers });
  return { status: response.status, body: await response.text() };
}

describe('editor resources served by the real Node-RED runtime', function () {
  let runtime: NodeRedProcess;
  let userDir: string;

  before(async function () {
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'nr-editor-'));
    runtime = await NodeRedProcess.start({ userDir, flows: [] });
  });

  after(async function () {
    await runtime?.stop();
    await fs.rm(userDir, { recursive: true, force: true });
  });

  it('lists every node of the package as installed and enabled', async function () {
    const { status, body } = await get(`${runtime.url}/nodes`, { Accept: 'application/json' });
    assert.equal(status, 200);
    const sets = JSON.parse(body) as Array<{ module: string; types: string[]; enabled: boolean; err?: string }>;
    const ours = sets.filter((set) => set.module === 'node-red-contrib-tencent-iot-ota');
    const types = ours.flatMap((set) => set.types);
    for (const type of nodeTypes) assert.ok(types.includes(type), `${type} is registered`);
    for (const set of ours) {
      assert.equal(set.err, undefined, `${set.types.join(',')} loaded without error`);
      assert.ok(set.enabled);
    }
  });

  // English text is told apart from Chinese by the absence of CJK characters.
  const chinese = /[\u4e00-\u9fff]/;
  for (const language of ['en-US', 'zh-CN'] as const) {
    const inLanguage = (text: string) => (language === 'zh-CN' ? chinese.test(text) : !chinese.test(text) && /[A-Za-z]{4}/.test(text));
    it(`serves the ${language} help text and messages of every node`, async function () {
      const { body: html } = await get(`${runtime.url}/nodes`, { Accept: 'text/html', 'Accept-Language': language });
      for (const type of nodeTypes) {
        assert.match(html, new RegExp(`data-template-name="${type}"`), `${type} has an edit dialog`);
        const help = new RegExp(`data-help-name="${type}"[^>]*>([\\s\\S]*?)</script>`).exec(html);
        assert.ok(help, `${type} has help text`);
        assert.ok(inLanguage(help[1]), `${type} help is in ${language}`);
        const { status, body } = await get(`${runtime.url}/locales/node-red-contrib-tencent-iot-ota/${type}?lng=${language}`);
        assert.equal(status, 200);
        const messages = JSON.parse(body) as Record<string, unknown>;
        assert.ok(messages[type], `${type} has a ${language} message catalog`);
        assert.ok(inLanguage(body), `${type} messages are in ${language}`);
      }
    });
  }

  it('serves the node icons', async function () {
    for (const icon of ['tencent-iot-ota.svg', 'tencent-iot-device.svg']) {
      const { status, body } = await get(`${runtime.url}/icons/node-red-contrib-tencent-iot-ota/${icon}`);
      assert.equal(status, 200);
      assert.match(body, /<svg/);
    }
  });
});
