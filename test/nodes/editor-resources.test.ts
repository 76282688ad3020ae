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

  it("lists the flow nodes in the order of the update pipeline, which is the palette's order", async function () {
    const { body } = await get(`${runtime.url}/nodes`, { Accept: 'application/json' });
    const sets = JSON.parse(body) as Array<{ module: string; types: string[] }>;
    const flowNodes = sets.filter((set) => set.module === 'node-red-contrib-tencent-iot-ota').flatMap((set) => set.types.filter((type) => type.startsWith('ota-')));
    assert.deepEqual(flowNodes, ['ota-version', 'ota-update-in', 'ota-download', 'ota-verify', 'ota-report', 'ota-gateway']);
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

  it('serves a distinct icon for every flow node, and ships no icon that no node uses', async function () {
    const nodesDir = path.resolve(__dirname, '../../../nodes');
    const icons: string[] = [];
    for (const type of nodeTypes) {
      const html = await fs.readFile(path.join(nodesDir, `${type}.html`), 'utf8');
      const icon = /icon: '([^']+)'/.exec(html)?.[1];
      // Node-RED draws every config node with its own cog, whatever icon it names.
      if (/category: 'config'/.test(html)) continue;
      assert.ok(icon, `${type} names an icon`);
      icons.push(icon);
    }
    assert.equal(new Set(icons).size, icons.length, `no two nodes share an icon: ${icons.join(', ')}`);
    for (const icon of icons) {
      const { status, body } = await get(`${runtime.url}/icons/node-red-contrib-tencent-iot-ota/${icon}`);
      assert.equal(status, 200, `${icon} is served`);
      assert.match(body, /<svg[^>]*viewBox="0 0 40 60"/);
    }
    assert.deepEqual((await fs.readdir(path.resolve(__dirname, '../../../icons'))).sort(), [...icons].sort());
  });
});
