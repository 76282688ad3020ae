/**
 * The tencent-iot-device edit dialog in the real Node-RED editor, driven in headless Chromium: a
 * pasted device_info.json fills the dialog and leaves the paste box empty, bad input is flagged as
 * typed, no placeholder is cut off, a deployed device connects with its secret kept out of the flow,
 * and "Test connection" tries the dialog's settings from the runtime.
 */
import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { type Browser, type Page } from 'playwright-core';
import { launchChromium, skipWithoutChromium } from '../support/headless-chromium';
import { NodeRedProcess } from '../../demo/node-red-process';
import type { DeviceConnectInfo } from '../../simulator/mqtt-broker';
import { startSimulator, type SimulatorFixture } from '../support/simulator-fixture';

const PRODUCT_ID = 'EDITORTEST';
const CLI = path.resolve(__dirname, '../../simulator/cli.js');
/** Where the screenshots go: EDITOR_DIALOG_SCREENSHOTS_DIR keeps them, else the user folder (removed after the tests). */
const screenshotPath = (name: string, userDir: string) => path.join(process.env.EDITOR_DIALOG_SCREENSHOTS_DIR ?? userDir, name);

/** The little of the browser's DOM the tests measure with (this code is compiled without the DOM's types). */
interface BrowserInput {
  placeholder: string;
  clientWidth: number;
  removeAttribute(name: string): void;
}
interface BrowserDom {
  document: {
    querySelector(selector: string): BrowserInput | null;
    createElement(tag: 'canvas'): { getContext(kind: '2d'): { font: string; measureText(text: string): { width: number } } };
  };
  getComputedStyle(element: BrowserInput): { font: string; paddingLeft: string; paddingRight: string };
}

/** The stand-in's CLI as a person runs it; resolves with what it printed. */
function runCli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${error.message}: ${stderr}`)) : resolve(stdout),
    );
  });
}

describe('the tencent-iot-device edit dialog in the Node-RED editor', function () {
  this.timeout(120_000);
  let sim: SimulatorFixture;
  let runtime: NodeRedProcess;
  let browser: Browser;
  let page: Page;
  let userDir: string;

  before(async function () {
    skipWithoutChromium(this, 'the editor dialog');
    sim = await startSimulator();
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'editor-'));
    runtime = await NodeRedProcess.start({
      userDir,
      flows: [
        { id: 'tab', type: 'tab', label: 'Editor test' },
        { id: 'version', type: 'ota-version', z: 'tab', device: 'device', autoReport: true, replyTimeout: 30, x: 200, y: 100, wires: [[]] },
        { id: 'verify', type: 'ota-verify', z: 'tab', device: 'device', x: 200, y: 200, wires: [[], []] },
        {
          id: 'device',
          type: 'tencent-iot-device',
          productId: '',
          deviceName: '',
          authMode: 'key',
          region: 'china',
          transport: 'mqtts',
          host: '',
          port: '',
          keepalive: 60,
          stateDir: '',
          runningVersion: '0.1.0',
        },
      ],
    });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(runtime.url);
    await page.waitForFunction(() => {
      const red = (globalThis as unknown as { RED?: { nodes?: { node(id: string): unknown } } }).RED;
      return Boolean(red?.nodes?.node('version'));
    });
  });

  after(async function () {
    await browser?.close();
    await runtime?.stop();
    await sim?.close();
    if (userDir) await fs.rm(userDir, { recursive: true, force: true });
  });

  async function openDeviceDialog(): Promise<void> {
    await page.evaluate(() => {
      const red = (globalThis as unknown as { RED: { editor: { edit(node: unknown): void }; nodes: { node(id: string): unknown } } }).RED;
      red.editor.edit(red.nodes.node('version'));
    });
    await page.click('#node-input-btn-device-edit');
    await page.waitForSelector('#tencent-iot-device-info', { state: 'visible' });
  }

  /** How much wider than the room in its input the placeholder is, in pixels (0 or less: it fits). */
  async function placeholderOverflow(selector: string): Promise<number> {
    return page.evaluate((inputSelector) => {
      const dom = globalThis as unknown as BrowserDom;
      const input = dom.document.querySelector(inputSelector);
      if (!input) throw new Error(`no ${inputSelector}`);
      const style = dom.getComputedStyle(input);
      const context = dom.document.createElement('canvas').getContext('2d');
      context.font = style.font;
      const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
      return context.measureText(input.placeholder).width - room;
    }, selector);
  }

  async function left(selector: string): Promise<number> {
    const box = await page.locator(selector).boundingBox();
    assert.ok(box, `${selector} is shown`);
    return box.x;
  }

  async function paste(info: object): Promise<void> {
    await page.fill('#tencent-iot-device-info', JSON.stringify(info));
    await page.click('#tencent-iot-fill-device-info');
  }

  it('fills every field of a key device from a pasted device_info.json', async function () {
    await openDeviceDialog();
    await paste({ auth_mode: 'KEY', productId: 'ABCD123456', deviceName: 'gateway01', key_deviceinfo: { deviceSecret: 'MDEyMzQ1Njc4OWFiY2RlZg==' }, region: 'europe' });
    assert.equal(await page.inputValue('#node-config-input-productId'), 'ABCD123456');
    assert.equal(await page.inputValue('#node-config-input-deviceName'), 'gateway01');
    assert.equal(await page.inputValue('#node-config-input-authMode'), 'key');
    assert.equal(await page.inputValue('#node-config-input-region'), 'europe');
    assert.equal(await page.inputValue('#node-config-input-deviceSecret'), 'MDEyMzQ1Njc4OWFiY2RlZg==');
    assert.ok(await page.isVisible('#node-config-input-deviceSecret'));
    assert.ok(!(await page.isVisible('#node-config-input-clientCert')), 'certificate fields are hidden for a key device');
    assert.equal(await page.inputValue('#tencent-iot-device-info'), '', 'the pasted file, secret included, is gone from the paste box');
    assert.match(await page.innerText('#tencent-iot-device-info-result'), /Filled in/);
    assert.ok((await left('#tencent-iot-device-info-result')) >= (await left('#tencent-iot-device-info')), 'the note lines up with the inputs');
    await page.screenshot({ path: screenshotPath('device-dialog.png', userDir), fullPage: true });
  });

  it('shows every placeholder whole, and says what the initial running version is', async function () {
    for (const selector of ['#node-config-input-host', '#node-config-input-port', '#node-config-input-stateDir', '#node-config-input-runningVersion']) {
      assert.ok((await placeholderOverflow(selector)) <= 0, `the placeholder of ${selector} fits`);
    }
    assert.match(await page.innerText('label[for="node-config-input-runningVersion"]'), /Initial running version/);
    assert.match((await page.getAttribute('#node-config-input-runningVersion', 'title')) ?? '', /before its first update/);
    await page.locator('#node-config-input-runningVersion').scrollIntoViewIfNeeded();
    await page.screenshot({ path: screenshotPath('device-dialog-version.png', userDir), fullPage: true });
  });

  it('flags a device secret that is not base64 and a product ID with bad characters as they are typed', async function () {
    await page.fill('#node-config-input-deviceSecret', 'not base64!');
    await page.dispatchEvent('#node-config-input-deviceSecret', 'keyup');
    assert.ok(await page.isVisible('#tencent-iot-secret-error'));
    assert.match((await page.getAttribute('#node-config-input-deviceSecret', 'class')) ?? '', /input-error/);
    await page.fill('#node-config-input-deviceSecret', 'MDEyMzQ1Njc4OWFiY2RlZg==');
    await page.dispatchEvent('#node-config-input-deviceSecret', 'keyup');
    assert.ok(!(await page.isVisible('#tencent-iot-secret-error')));

    await page.fill('#node-config-input-productId', 'bad id!');
    await page.dispatchEvent('#node-config-input-productId', 'change');
    assert.match((await page.getAttribute('#node-config-input-productId', 'class')) ?? '', /input-error/);
    await page.fill('#node-config-input-productId', 'ABCD123456');
    await page.dispatchEvent('#node-config-input-productId', 'change');
    assert.doesNotMatch((await page.getAttribute('#node-config-input-productId', 'class')) ?? '', /input-error/);
  });

  it('says so when the pasted text is not a device_info.json', async function () {
    await page.fill('#tencent-iot-device-info', '{ not json');
    await page.click('#tencent-iot-fill-device-info');
    assert.match(await page.innerText('#tencent-iot-device-info-result'), /not valid JSON/);
    await paste({ productId: 'has space', deviceName: 'x' });
    assert.match(await page.innerText('#tencent-iot-device-info-result'), /productId/);
  });

  it('fills the certificate and key of a certificate device', async function () {
    const info = await sim.console.createDevice(PRODUCT_ID, 'certdevice', 'cert');
    await paste(info);
    assert.equal(await page.inputValue('#node-config-input-authMode'), 'cert');
    assert.match(await page.inputValue('#node-config-input-clientCert'), /BEGIN CERTIFICATE/);
    assert.match(await page.inputValue('#node-config-input-clientKey'), /PRIVATE KEY/);
    assert.match(await page.inputValue('#node-config-input-caCert'), /BEGIN CERTIFICATE/);
    assert.ok(!(await page.isVisible('#node-config-input-deviceSecret')), 'the secret field is hidden for a certificate device');
  });

  it('deploys a pasted device that connects, with the secret in the credentials and not in the flow', async function () {
    const created = await sim.createDevice(PRODUCT_ID, 'keydevice');
    await paste(created.deviceInfo);
    await page.fill('#node-config-input-host', '127.0.0.1');
    await page.fill('#node-config-input-port', String(sim.addresses.ports.mqtt));
    await page.selectOption('#node-config-input-transport', 'mqtt');
    await page.click('#node-config-dialog-ok');
    await page.click('#node-dialog-ok');
    await page.click('#red-ui-header-button-deploy');
    await sim.console.waitForDevice(PRODUCT_ID, 'keydevice', (device) => device.online && device.version === '0.1.0', { timeoutMs: 30_000 });

    const flows = (await (await fetch(`${runtime.url}/flows`)).json()) as Array<Record<string, unknown>>;
    const device = flows.find((node) => node.type === 'tencent-iot-device');
    assert.equal(device?.productId, PRODUCT_ID);
    assert.equal(device?.deviceName, 'keydevice');
    assert.ok(!JSON.stringify(flows).includes(created.deviceSecret ?? 'no secret'), 'the secret is not in the flow');
    const stored = JSON.parse(await fs.readFile(path.join(userDir, 'flows_cred.json'), 'utf8')) as Record<string, { deviceSecret?: string }>;
    assert.equal(stored.device?.deviceSecret, created.deviceSecret);
    await page.waitForFunction(() => {
      const red = (globalThis as unknown as { RED: { nodes: { node(id: string): { status?: { text?: string } } } } }).RED;
      return red.nodes.node('version')?.status?.text === 'reported 0.1.0';
    });
  });

  it('connects a device to the stand-in with one paste of the device_info.json that "device create --for-stand-in" prints', async function () {
    const created = await runCli(['device', 'create', PRODUCT_ID, 'standindevice', '--for-stand-in', '--api', sim.addresses.http]);
    const info = JSON.parse(created) as { stand_in: { host: string; port: number; caPem: string }; key_deviceinfo: { deviceSecret: string } };
    await openDeviceDialog();
    await page.fill('#node-config-input-host', '');
    await page.fill('#node-config-input-port', '');
    await page.fill('#node-config-input-caCert', '');
    await page.selectOption('#node-config-input-transport', 'mqtt');
    await page.fill('#tencent-iot-device-info', created);
    await page.click('#tencent-iot-fill-device-info');
    assert.match(await page.innerText('#tencent-iot-device-info-result'), /stand-in's host, port/);
    assert.equal(await page.inputValue('#node-config-input-deviceName'), 'standindevice');
    assert.equal(await page.inputValue('#node-config-input-deviceSecret'), info.key_deviceinfo.deviceSecret);
    assert.equal(await page.inputValue('#node-config-input-host'), '127.0.0.1');
    assert.equal(await page.inputValue('#node-config-input-port'), String(sim.addresses.ports.mqtts));
    assert.equal(await page.inputValue('#node-config-input-transport'), 'mqtts');
    // A textarea holds its lines with \n, whatever the PEM had.
    assert.equal((await page.inputValue('#node-config-input-caCert')).trim(), info.stand_in.caPem.replace(/\r\n/g, '\n').trim());
    await page.screenshot({ path: screenshotPath('device-dialog-stand-in.png', userDir), fullPage: true });

    const connected = new Promise<string>((resolve) => {
      const listener = (connect: DeviceConnectInfo) => {
        if (connect.deviceName !== 'standindevice') return;
        sim.simulator.broker.off('device-connect', listener);
        resolve(connect.transport);
      };
      sim.simulator.broker.on('device-connect', listener);
    });
    await page.click('#node-config-dialog-ok');
    await page.click('#node-dialog-ok');
    await page.click('#red-ui-header-button-deploy');
    assert.equal(await connected, 'mqtts', 'the device connects over MQTT over TLS, trusting the pasted CA');
    await sim.console.waitForDevice(PRODUCT_ID, 'standindevice', (device) => device.online && device.version === '0.1.0', { timeoutMs: 30_000 });
    const flows = (await (await fetch(`${runtime.url}/flows`)).json()) as Array<Record<string, unknown>>;
    const device = flows.find((node) => node.type === 'tencent-iot-device');
    assert.deepEqual([device?.host, String(device?.port), device?.transport], ['127.0.0.1', String(sim.addresses.ports.mqtts), 'mqtts']);
    assert.ok(!JSON.stringify(flows).includes('BEGIN CERTIFICATE'), 'the CA is a credential, not part of the flow');
  });

  it('tests the connection from the runtime with the settings of the open dialog, deployed or not', async function () {
    await openDeviceDialog();
    const result = '#tencent-iot-test-connection-result';
    const answered = async () => {
      await page.waitForSelector(`${result}[data-outcome]`);
      const text = await page.innerText(result);
      await page.evaluate((selector) => (globalThis as unknown as BrowserDom).document.querySelector(selector)?.removeAttribute('data-outcome'), result);
      return text;
    };
    // As deployed, with the stored secret (the dialog holds only Node-RED's placeholder for it).
    assert.equal(await page.inputValue('#node-config-input-deviceSecret'), '__PWRD__');
    await page.click('#tencent-iot-test-connection');
    assert.match(await answered(), /^Connected: the deployed device is connected to mqtts:\/\/127\.0\.0\.1/);

    // Not yet deployed: MQTT without TLS. The runtime connects once with them.
    await page.selectOption('#node-config-input-transport', 'mqtt');
    await page.fill('#node-config-input-port', String(sim.addresses.ports.mqtt));
    await page.click('#tencent-iot-test-connection');
    assert.match(
      await answered(),
      new RegExp(`^Connected to mqtt://127\\.0\\.0\\.1:${sim.addresses.ports.mqtt}, then disconnected\\. IoT Hub allows one connection per device`),
    );
    await page.screenshot({ path: screenshotPath('test-connection.png', userDir), fullPage: true });

    await page.fill('#node-config-input-deviceSecret', Buffer.from('not the secret').toString('base64'));
    await page.click('#tencent-iot-test-connection');
    assert.match(await answered(), /^Bad credentials/);
    await page.click('#node-config-dialog-cancel');
    await page.click('#node-dialog-cancel');
    await page.waitForSelector('#tencent-iot-test-connection', { state: 'detached' });
  });

  it('shows the SHA-256 placeholder of ota-verify whole', async function () {
    await page.evaluate(() => {
      const red = (globalThis as unknown as { RED: { editor: { edit(node: unknown): void }; nodes: { node(id: string): unknown } } }).RED;
      red.editor.edit(red.nodes.node('verify'));
    });
    await page.waitForSelector('#node-input-sha256', { state: 'visible' });
    assert.ok((await placeholderOverflow('#node-input-sha256')) <= 0, 'the SHA-256 placeholder fits');
    await page.click('#node-dialog-cancel');
    await page.waitForSelector('#node-input-sha256', { state: 'detached' });
  });

  it("lets an OTA node target a sub-device behind a gateway, showing only the chosen config node's row", async function () {
    await page.evaluate(() => {
      const red = (globalThis as unknown as { RED: { editor: { edit(node: unknown): void }; nodes: { node(id: string): unknown } } }).RED;
      red.editor.edit(red.nodes.node('version'));
    });
    await page.waitForSelector('#node-input-target', { state: 'visible' });
    assert.equal(await page.inputValue('#node-input-target'), 'device');
    assert.ok(await page.isVisible('#node-input-device'));
    assert.ok(!(await page.isVisible('#node-input-subdevice')));
    await page.selectOption('#node-input-target', 'subdevice');
    assert.ok(await page.isVisible('#node-input-subdevice'), 'the sub-device row shows');
    assert.ok(!(await page.isVisible('#node-input-device')), 'the device row hides');
    await page.screenshot({ path: screenshotPath('target-subdevice.png', userDir), fullPage: true });

    // A new sub-device: its dialog has the same key list editor and running version line as the device's.
    await page.click('#node-input-btn-subdevice-add');
    await page.waitForSelector('#node-config-input-gateway', { state: 'visible' });
    assert.match(await page.innerText('label[for="node-config-input-runningVersion"]'), /Initial running version/);
    await page.click('.node-config-input-firmwareKeys-container-row .red-ui-editableList-addButton');
    assert.equal(await page.getAttribute('.node-config-firmwareKey-id', 'placeholder'), 'key id, e.g. vendor-2026');
    await page.click('#node-config-dialog-cancel');
    await page.click('#node-dialog-cancel');
  });
});
