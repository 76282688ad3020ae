/**
 * The examples as a new user meets them in the real Node-RED editor, in headless Chromium: both
 * imported into one workspace with no conflict prompt, an update run from the stand-in, and the
 * statuses the editor shows during and after it (each node its step of the current update only,
 * none wider than the room it has), then the same in a Chinese editor, statuses and help.
 *
 * EDITOR_SCREENSHOTS_DIR=docs writes the README's screenshots of the palette, the config dialog and
 * the flow after an update, in English and Chinese.
 */
import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { type Browser, type Page } from 'playwright-core';
import { launchChromium, skipWithoutChromium } from '../support/headless-chromium';
import { readExampleFlow } from '../../demo/example-flow';
import { NodeRedProcess } from '../../demo/node-red-process';
import { startSimulator, type SimulatorFixture } from '../support/simulator-fixture';

const PRODUCT_ID = 'EDITORFLOW';
const GATEWAY_PRODUCT = 'EDITORGW01';
const SUB_PRODUCT = 'EDITORSUB1';
const FIRMWARE_BYTES = 3 * 1024 * 1024;
const SCREENSHOTS = process.env.EDITOR_SCREENSHOTS_DIR;
/** The package's palette category, whatever the language. */
const PALETTE_CATEGORY = '.red-ui-palette-category:has(.red-ui-palette-node[data-palette-type="ota-update-in"])';

/** What the editor shows of one node: its status text and where its box and status line are. */
interface ShownNode {
  id: string;
  type: string;
  z: string;
  label: string;
  status: string;
  box: Rect;
  statusBox?: Rect;
}

interface Rect {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

/** The little of the browser's DOM the page functions below use (the project builds without the DOM library). */
interface PageElement {
  querySelector(selector: string): PageElement | null;
  getBoundingClientRect(): Rect;
  textContent: string | null;
  style: { display: string };
}
interface PageGlobals {
  document: { getElementById(id: string): PageElement | null };
  localStorage: { setItem(key: string, value: string): void };
}

const overlap = (a: Rect, b: Rect) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
const OTA_TYPES = ['ota-version', 'ota-update-in', 'ota-download', 'ota-verify', 'ota-report', 'ota-gateway'];

describe('the example flows in the Node-RED editor, updated from the stand-in', function () {
  this.timeout(240_000);
  let sim: SimulatorFixture;
  let runtime: NodeRedProcess;
  let browser: Browser;
  let page: Page;
  let userDir: string;
  let basicTab = '';
  let gatewayTab = '';

  before(async function () {
    skipWithoutChromium(this, 'the editor');
    sim = await startSimulator();
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'editor-flow-'));
    await fs.mkdir(path.join(userDir, 'home'), { recursive: true });
    runtime = await NodeRedProcess.start({ userDir, flows: [], env: { HOME: path.join(userDir, 'home') } });
    browser = await launchChromium();
    page = await openEditor('en-US');
  });

  after(async function () {
    await browser?.close();
    await runtime?.stop();
    await sim?.close();
    if (userDir) await fs.rm(userDir, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') console.log(runtime?.output.split('\n').slice(-40).join('\n'));
  });

  async function openEditor(language: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1600, height: 900 }, locale: language });
    await context.addInitScript((lang) => (globalThis as unknown as PageGlobals).localStorage.setItem('editor-language', lang), language);
    const opened = await context.newPage();
    await opened.goto(runtime.url);
    await opened.waitForFunction(() => {
      const red = (globalThis as unknown as { RED?: { nodes?: { getType(type: string): unknown }; workspaces?: { active(): string } } }).RED;
      return Boolean(red?.nodes?.getType('ota-download') && red.workspaces?.active());
    });
    // The editor draws after its flows arrive.
    await opened.waitForSelector('#red-ui-header-button-deploy');
    return opened;
  }

  async function importThroughDialog(json: string): Promise<void> {
    await page.evaluate(() => (globalThis as unknown as { RED: { actions: { invoke(name: string): void } } }).RED.actions.invoke('core:show-import-dialog'));
    await page.waitForSelector('#red-ui-clipboard-dialog-import-text', { state: 'visible' });
    await page.fill('#red-ui-clipboard-dialog-import-text', json);
    // The dialog checks the text on keyup, as when it is typed or pasted.
    await page.dispatchEvent('#red-ui-clipboard-dialog-import-text', 'keyup');
    await page.click('#red-ui-clipboard-dialog-ok');
    await page.waitForSelector('#red-ui-clipboard-dialog-import-text', { state: 'hidden' });
  }

  /** Every node of a tab as the editor draws it (the tab is shown first). */
  async function shownNodes(tab: string): Promise<ShownNode[]> {
    return page.evaluate((z) => {
      type EditorNode = { id: string; type: string; z: string; status?: { text?: string }; _def?: { label?: unknown }; name?: string };
      const red = (
        globalThis as unknown as {
          RED: { workspaces: { show(id: string): void }; nodes: { eachNode(each: (node: EditorNode) => void): void }; view: { redraw(full: boolean): void } };
        }
      ).RED;
      red.workspaces.show(z);
      red.view.redraw(true);
      const { document } = globalThis as unknown as PageGlobals;
      const found: ShownNode[] = [];
      const rectOf = (element: PageElement | null) => (element ? element.getBoundingClientRect() : undefined);
      red.nodes.eachNode((node) => {
        if (node.z !== z) return;
        const element = document.getElementById(node.id);
        if (!element) return;
        const box = rectOf(element.querySelector('.red-ui-flow-node'));
        if (!box) return;
        const statusGroup = element.querySelector('.red-ui-flow-node-status-group');
        const shown = statusGroup && statusGroup.style.display !== 'none' && (node.status?.text ?? '') !== '';
        const label = element.querySelector('.red-ui-flow-node-label')?.textContent ?? '';
        found.push({
          id: node.id,
          type: node.type,
          z: node.z,
          label,
          status: shown ? (element.querySelector('.red-ui-flow-node-status-label')?.textContent ?? '') : '',
          box,
          statusBox: shown ? rectOf(element.querySelector('.red-ui-flow-node-status-background')) : undefined,
        });
      });
      return found.map((node) => ({
        ...node,
        box: { left: node.box.left, top: node.box.top, right: node.box.right, bottom: node.box.bottom },
        statusBox: node.statusBox && { left: node.statusBox.left, top: node.statusBox.top, right: node.statusBox.right, bottom: node.statusBox.bottom },
      }));
    }, tab);
  }

  /** Statuses of the OTA nodes of a tab, by node label. */
  async function otaStatuses(tab: string): Promise<Array<{ type: string; label: string; status: string }>> {
    return (await shownNodes(tab)).filter((node) => OTA_TYPES.includes(node.type)).map(({ type, label, status }) => ({ type, label, status }));
  }

  async function waitForStatuses(tab: string, test: (statuses: Array<{ type: string; label: string; status: string }>) => boolean, what: string, timeoutMs = 60_000) {
    const deadline = Date.now() + timeoutMs;
    let last: Array<{ type: string; label: string; status: string }>;
    for (;;) {
      last = await otaStatuses(tab);
      if (test(last)) return last;
      if (Date.now() > deadline) throw new Error(`the editor never showed ${what}; it shows ${JSON.stringify(last)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** No status is wider than the room it has: it covers no other node and no other status. */
  async function assertStatusesFit(tab: string): Promise<void> {
    const nodes = await shownNodes(tab);
    for (const node of nodes) {
      if (!node.statusBox) continue;
      for (const other of nodes) {
        if (other.id === node.id) continue;
        assert.ok(!overlap(node.statusBox, other.box), `the status "${node.status}" of ${node.type} "${node.label}" runs into ${other.type} "${other.label}"`);
        if (other.statusBox) assert.ok(!overlap(node.statusBox, other.statusBox), `the statuses "${node.status}" and "${other.status}" collide`);
      }
    }
  }

  function assertTranslated(statuses: Array<{ status: string }>): void {
    for (const { status } of statuses) {
      assert.doesNotMatch(status, /\{\{|__|ota-[a-z-]+\.|tencent-iot-[a-z]+\.|undefined|NaN|\?[a-z]+=/, `"${status}" is a message key or a template, not a status`);
    }
  }

  /** The whole flow of a tab, with the sidebar closed to give it room. */
  async function flowScreenshot(name: string, tab: string): Promise<void> {
    if (!SCREENSHOTS) return;
    const setSidebar = (shown: boolean) =>
      page.evaluate(
        (open) => (globalThis as unknown as { RED: { menu: { setSelected(id: string, on: boolean): void } } }).RED.menu.setSelected('menu-item-sidebar', open),
        shown,
      );
    const viewport = page.viewportSize();
    await page.setViewportSize({ width: 1800, height: 700 });
    await setSidebar(false);
    await shownNodes(tab);
    await screenshot(name, '#red-ui-workspace-chart');
    await setSidebar(true);
    if (viewport) await page.setViewportSize(viewport);
  }

  async function screenshot(name: string, selector?: string): Promise<void> {
    if (!SCREENSHOTS) return;
    const file = path.resolve(SCREENSHOTS, name);
    if (selector) await page.locator(selector).screenshot({ path: file });
    else await page.screenshot({ path: file });
  }

  /** Fills a config node's settings and credentials as the dialog would, marking it changed. */
  async function configure(id: string, settings: Record<string, unknown>, credentials: Record<string, string>): Promise<void> {
    await page.evaluate(
      ({ id, settings, credentials }) => {
        const red = (globalThis as unknown as { RED: { nodes: { node(id: string): Record<string, unknown>; dirty(dirty: boolean): void } } }).RED;
        const node = red.nodes.node(id);
        Object.assign(node, settings, { credentials, changed: true, dirty: true, valid: true });
        red.nodes.dirty(true);
      },
      { id, settings, credentials },
    );
  }

  async function deploy(): Promise<void> {
    // Nodes are judged valid when drawn; the config nodes they name have changed since.
    await page.evaluate(() => {
      const red = (
        globalThis as unknown as {
          RED: { nodes: { eachNode(each: (node: unknown) => void): void }; editor: { validateNode(node: unknown): void }; view: { redraw(full: boolean): void } };
        }
      ).RED;
      red.nodes.eachNode((node) => red.editor.validateNode(node));
      red.view.redraw(true);
    });
    await page.click('#red-ui-header-button-deploy');
    // A deploy of a flow with nodes the editor thinks invalid asks first: there must be none.
    await page
      .waitForFunction(() => !(globalThis as unknown as { RED: { nodes: { dirty(): boolean } } }).RED.nodes.dirty(), undefined, { timeout: 30_000 })
      .catch(async (error: Error) => {
        await page.screenshot({ path: path.join(os.tmpdir(), 'editor-deploy-failed.png') });
        throw error;
      });
  }

  it('imports the basic and the gateway example into one workspace with no conflict prompt', async function () {
    const basic = await readExampleFlow('basic-ota-pipeline');
    const gateway = await readExampleFlow('gateway-subdevice-ota');
    await importThroughDialog(JSON.stringify(basic));
    await importThroughDialog(JSON.stringify(gateway));
    assert.ok(!(await page.isVisible('#red-ui-clipboard-dialog-import-conflicts-list')), 'no conflict prompt');
    const counts = await page.evaluate(() => {
      const red = (
        globalThis as unknown as {
          RED: {
            nodes: {
              eachNode(each: (node: { z: string }) => void): void;
              eachConfig(each: () => void): void;
              eachWorkspace(each: (tab: { id: string; label: string }) => void): void;
            };
          };
        }
      ).RED;
      let nodes = 0;
      let configs = 0;
      const tabs: Array<{ id: string; label: string }> = [];
      red.nodes.eachNode(() => (nodes += 1));
      red.nodes.eachConfig(() => (configs += 1));
      red.nodes.eachWorkspace((tab) => tabs.push(tab));
      return { nodes, configs, tabs };
    });
    const isFlowNode = (node: Record<string, unknown>) => node.type !== 'tab' && typeof node.z === 'string' && node.z !== '';
    assert.equal(counts.nodes, basic.filter(isFlowNode).length + gateway.filter(isFlowNode).length, 'every node of both examples is in the workspace, none replaced');
    basicTab = String(basic.find((node) => node.type === 'tab')?.id);
    gatewayTab = String(gateway.find((node) => node.type === 'tab')?.id);
    assert.ok(counts.tabs.some((tab) => tab.id === basicTab) && counts.tabs.some((tab) => tab.id === gatewayTab), 'both example tabs are there');
  });

  it('shows each step of an update while it runs and, once done, nothing stale', async function () {
    const device = await sim.createDevice(PRODUCT_ID, 'pi01');
    const gateway = await sim.createDevice(GATEWAY_PRODUCT, 'gateway01', 'key', 'gateway');
    await sim.createDevice(SUB_PRODUCT, 'sensor01');
    await sim.createDevice(SUB_PRODUCT, 'sensor02');
    for (const name of ['sensor01', 'sensor02'])
      await sim.console.bindSubDevice({ productId: GATEWAY_PRODUCT, deviceName: 'gateway01' }, { productId: SUB_PRODUCT, deviceName: name });
    const configs = await page.evaluate(() => {
      const red = (globalThis as unknown as { RED: { nodes: { eachConfig(each: (node: { id: string; type: string; users?: Array<{ z: string }> }) => void): void } } })
        .RED;
      const found: Array<{ id: string; type: string; z: string[] }> = [];
      red.nodes.eachConfig((node) => found.push({ id: node.id, type: node.type, z: (node.users ?? []).map((user) => user.z) }));
      return found;
    });
    const endpoint = { host: '127.0.0.1', port: String(sim.addresses.ports.mqtts), transport: 'mqtts' };
    const ca = { caCert: sim.caPem };
    const deviceConfig = configs.find((node) => node.type === 'tencent-iot-device' && node.z.includes(basicTab));
    const gatewayConfig = configs.find((node) => node.type === 'tencent-iot-device' && node.z.includes(gatewayTab));
    assert.ok(deviceConfig && gatewayConfig, 'each example has its own device config node');
    await configure(
      deviceConfig.id,
      { productId: PRODUCT_ID, deviceName: 'pi01', stateDir: path.join(userDir, 'pi01'), ...endpoint },
      { deviceSecret: device.deviceSecret ?? '', ...ca },
    );
    await configure(
      gatewayConfig.id,
      { productId: GATEWAY_PRODUCT, deviceName: 'gateway01', stateDir: path.join(userDir, 'gateway01'), ...endpoint },
      { deviceSecret: gateway.deviceSecret ?? '', ...ca },
    );
    const subConfigs = configs.filter((node) => node.type === 'tencent-iot-subdevice');
    for (const [index, sub] of subConfigs.entries()) {
      await configure(sub.id, { productId: SUB_PRODUCT, deviceName: `sensor0${index + 1}`, stateDir: path.join(userDir, `sensor0${index + 1}`) }, {});
    }
    await deploy();
    await sim.console.waitForDevice(PRODUCT_ID, 'pi01', (view) => view.online && view.version === '0.1.0', { timeoutMs: 60_000 });
    await waitForStatuses(basicTab, (statuses) => statuses.some((node) => node.type === 'ota-version' && node.status.includes('0.1.0')), 'the running version 0.1.0');
    // The gateway's tab: each sub-device reports its version over the gateway's connection.
    const gatewayStatuses = await waitForStatuses(
      gatewayTab,
      (statuses) => statuses.filter((node) => node.type === 'ota-version' && /\d+\.\d+\.\d+/.test(node.status)).length >= 2,
      "both sub-devices' versions",
    );
    assertTranslated(gatewayStatuses);
    await assertStatusesFit(gatewayTab);
    await screenshot('editor-palette-en.png', PALETTE_CATEGORY);

    // 1.0.0, slowly enough to see the download's progress.
    const firmware = Buffer.alloc(FIRMWARE_BYTES, 7);
    await sim.uploadFirmware(PRODUCT_ID, '1.0.0', firmware);
    await sim.console.setFirmwareFaults(PRODUCT_ID, '1.0.0', { throttleBytesPerSecond: 1024 * 1024 });
    await sim.console.startUpdate({ productId: PRODUCT_ID, version: '1.0.0', deviceNames: ['pi01'] });
    const during = await waitForStatuses(
      basicTab,
      (statuses) => statuses.some((node) => node.type === 'ota-download' && /\d+\s*%/.test(node.status)),
      'the download percent',
    );
    assertTranslated(during);
    await assertStatusesFit(basicTab);
    await sim.console.waitForDevice(PRODUCT_ID, 'pi01', (view) => view.version === '1.0.0' && view.ota.state === 'done', { timeoutMs: 90_000 });
    const after = await waitForStatuses(
      basicTab,
      (statuses) => statuses.some((node) => node.type === 'ota-version' && node.status.includes('1.0.0')) && !statuses.some((node) => /\d+\s*%/.test(node.status)),
      'the new running version 1.0.0 and no progress left',
    );
    assertTranslated(after);
    for (const node of after) assert.doesNotMatch(node.status, /0\.1\.0/, `${node.type} "${node.label}" still shows the old version: "${node.status}"`);
    const burning = after.find((node) => node.type === 'ota-report' && /burn/i.test(node.label));
    assert.ok(burning, 'the example has a burning report node');
    assert.doesNotMatch(burning.status, /^burning/i, `the burning node says it is still burning after done: "${burning.status}"`);
    await assertStatusesFit(basicTab);
    await flowScreenshot('editor-flow-after-update-en.png', basicTab);
  });

  it('after a failed update shows that failure, short, and nothing of the update before it', async function () {
    await sim.uploadFirmware(PRODUCT_ID, '1.1.0', Buffer.alloc(FIRMWARE_BYTES, 9));
    // Served slowly, cut at 1 MiB, then gone: the retry finds no file.
    await sim.console.setFirmwareFaults(PRODUCT_ID, '1.1.0', { throttleBytesPerSecond: 512 * 1024, closeAfterBytes: 1024 * 1024 });
    await sim.console.startUpdate({ productId: PRODUCT_ID, version: '1.1.0', deviceNames: ['pi01'] });
    await waitForStatuses(basicTab, (statuses) => statuses.some((node) => node.type === 'ota-download' && /\d+\s*%/.test(node.status)), 'the download of 1.1.0');
    await sim.console.deleteFirmware(PRODUCT_ID, '1.1.0');
    await sim.console.waitForDevice(PRODUCT_ID, 'pi01', (view) => view.ota.state === 'fail', { timeoutMs: 90_000 });
    const after = await waitForStatuses(
      basicTab,
      (statuses) => statuses.some((node) => node.type === 'ota-download' && /-1|-\d/.test(node.status)),
      'the download failure',
    );
    assertTranslated(after);
    for (const node of after) {
      if (node.type === 'ota-version') {
        assert.match(node.status, /1\.0\.0/, 'the version still running is 1.0.0');
        continue;
      }
      assert.doesNotMatch(node.status, /1\.0\.0/, `${node.type} "${node.label}" still shows the last update: "${node.status}"`);
      assert.ok(node.status.length <= 20, `"${node.status}" is short`);
    }
    await assertStatusesFit(basicTab);
  });

  /** Opens the basic example's device config dialog (for its screenshot) and closes it again. */
  async function screenshotConfigDialog(name: string): Promise<void> {
    if (!SCREENSHOTS) return;
    await page.evaluate((tab) => {
      type Config = { id: string; type: string; users?: Array<{ z: string }> };
      const red = (
        globalThis as unknown as {
          RED: { nodes: { eachConfig(each: (node: Config) => void): void }; editor: { editConfig(name: string, type: string, id: string): void } };
        }
      ).RED;
      let found: Config | undefined;
      red.nodes.eachConfig((node) => {
        if (node.type === 'tencent-iot-device' && (node.users ?? []).some((user) => user.z === tab)) found = node;
      });
      if (found) red.editor.editConfig('', found.type, found.id);
    }, basicTab);
    // Tall enough to show the whole dialog, down to Test connection.
    const viewport = page.viewportSize();
    await page.setViewportSize({ width: 1600, height: 1500 });
    await page.waitForSelector('#node-config-input-productId', { state: 'visible' });
    await page.waitForTimeout(500);
    await screenshot(name, '.red-ui-tray');
    await page.click('#node-config-dialog-cancel');
    if (viewport) await page.setViewportSize(viewport);
    await page.waitForSelector('#node-config-input-productId', { state: 'hidden' });
  }

  it('shows the statuses and the help in Chinese in a zh-CN editor', async function () {
    await screenshotConfigDialog('editor-config-dialog-en.png');
    const english = page;
    page = await openEditor('zh-CN');
    await english.context().close();
    const statuses = await waitForStatuses(basicTab, (shown) => shown.filter((node) => /[\u4e00-\u9fff]/.test(node.status)).length >= 3, 'Chinese statuses');
    assertTranslated(statuses);
    await assertStatusesFit(basicTab);
    const gatewayStatuses = await waitForStatuses(gatewayTab, (shown) => shown.some((node) => /[\u4e00-\u9fff]/.test(node.status)), "the gateway tab's Chinese statuses");
    assertTranslated(gatewayStatuses);
    await assertStatusesFit(gatewayTab);
    await flowScreenshot('editor-flow-after-update-zh-CN.png', basicTab);
    await screenshot('editor-palette-zh-CN.png', PALETTE_CATEGORY);
    await screenshotConfigDialog('editor-config-dialog-zh-CN.png');
    const paletteLabel = await page.locator('.red-ui-palette-node[data-palette-type="ota-update-in"] .red-ui-palette-label').innerText();
    assert.match(paletteLabel, /[\u4e00-\u9fff]/, 'the palette is in Chinese');
    await page.evaluate(() => (globalThis as unknown as { RED: { sidebar: { help: { show(type: string): void } } } }).RED.sidebar.help.show('ota-update-in'));
    const helpSection = page.locator('.red-ui-sidebar-help-stack .red-ui-help', { hasText: /[\u4e00-\u9fff]{4}/ }).first();
    await helpSection.waitFor({ timeout: 30_000 });
    const help = await helpSection.innerText();
    assert.match(help, /[\u4e00-\u9fff]{4}/, 'the help is in Chinese');
    assert.ok(help.includes(paletteLabel.trim()), `the help names the node "${paletteLabel.trim()}" as the palette does`);
  });
});
