/**
 * The stand-in's web console: the page and its files as served, then the page itself driven in
 * headless Chromium against a real stand-in and a real device that downloads its update: a device
 * created and its device_info.json downloaded, firmware uploaded through the file input, fault knobs
 * set in the form, an update started and followed to done over the push channel, the device's
 * history, untrusted text kept as text, a foreign page refused, and the page in Simplified Chinese.
 *
 * CONSOLE_SCREENSHOTS=<dir> also saves the README's screenshots of the page during the update there.
 */
import { strict as assert } from 'assert';
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as path from 'path';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { launchChromium, skipWithoutChromium } from '../support/headless-chromium';
import { preferredLanguage } from '../../simulator/console-page';
import { httpRequest } from '../support/http-request';
import { startSimulator, type SimulatorFixture } from '../support/simulator-fixture';
import type { TestOtaDevice } from '../support/test-ota-device';
import { UpdatingDevice } from '../support/updating-device';

const SCREENSHOTS = process.env.CONSOLE_SCREENSHOTS;
const PRODUCT = 'CONSOLEPAGE';
const FIRMWARE_SIZE = 384 * 1024;
const THROTTLE = 64 * 1024;
const CUT_AT = 128 * 1024;

/** What the functions run in the page read of it (the tests compile without the DOM library). */
interface PageNode {
  textContent: string | null;
  value: number;
  getAttribute(name: string): string | null;
  cells: ArrayLike<PageNode>;
}

interface PageGlobals {
  document: { querySelector(selector: string): PageNode | null };
  notReloaded?: boolean;
  injected?: number;
}

describe('the web console as served', () => {
  let sim: SimulatorFixture;

  before(async () => {
    sim = await startSimulator();
  });

  after(async () => {
    await sim.close();
  });

  it('is at / on the console port, with a policy that lets only its own scripts run and no other site frame it', async () => {
    assert.equal(sim.addresses.consolePage, `${sim.addresses.http}/`);
    const page = await httpRequest(sim.addresses.consolePage);
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /^text\/html; charset=utf-8/);
    const policy = String(page.headers['content-security-policy']);
    for (const directive of ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) assert.ok(policy.includes(directive), policy);
    assert.equal(page.headers['x-frame-options'], 'DENY');
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    const html = page.body.toString('utf8');
    assert.match(html, /<html lang="en">/);
    assert.match(html, /<script src="\/console\/console\.js" defer><\/script>/);
    assert.doesNotMatch(html, /https?:\/\/(?!127\.0\.0\.1)/, 'nothing is fetched from elsewhere');
  });

  it('opens in the language Accept-Language asks for first among English and Simplified Chinese', async () => {
    const zh = await httpRequest(sim.addresses.consolePage, { headers: { 'Accept-Language': 'zh-CN,zh;q=0.9,en;q=0.8' } });
    assert.match(zh.body.toString('utf8'), /<html lang="zh-CN">/);
    assert.equal(zh.headers.vary, 'Accept-Language');
    assert.equal(preferredLanguage('fr-FR, en;q=0.5, zh;q=0.4'), 'en');
    assert.equal(preferredLanguage('de, zh-TW;q=0.3'), 'zh-CN');
    assert.equal(preferredLanguage('en;q=0.2, zh-CN;q=0.9'), 'zh-CN');
    assert.equal(preferredLanguage('zh;q=0, en'), 'en');
    assert.equal(preferredLanguage(undefined), 'en');
  });

  it('serves its script, strings and styles under /console/ and nothing else there', async () => {
    for (const [file, type] of [
      ['console.js', /^text\/javascript/],
      ['strings.js', /^text\/javascript/],
      ['console.css', /^text\/css/],
    ] as const) {
      const answer = await httpRequest(`${sim.addresses.http}/console/${file}`);
      assert.equal(answer.status, 200, file);
      assert.match(String(answer.headers['content-type']), type);
    }
    for (const missing of ['/console/nothing.js', '/console/index.html', '/console/../devices.json', '/console/']) {
      assert.equal((await httpRequest(`${sim.addresses.http}${missing}`)).status, 404, missing);
    }
    const post = await httpRequest(sim.addresses.consolePage, { method: 'POST', body: '{}' });
    assert.equal(post.status, 405);
  });
});

describe('the web console in headless Chromium', function () {
  this.timeout(120_000);
  let sim: SimulatorFixture;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let updating: UpdatingDevice | undefined;
  let failing: TestOtaDevice | undefined;
  const firmware = randomBytes(FIRMWARE_SIZE);
  const md5 = createHash('md5').update(firmware).digest('hex');
  const row = (deviceName: string) => `#devices-table tr[data-device="${PRODUCT}/${deviceName}"]`;

  before(async function () {
    skipWithoutChromium(this, 'the web console');
    sim = await startSimulator();
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1360, height: 760 }, locale: 'en-US', acceptDownloads: true });
    page = await context.newPage();
  });

  after(async function () {
    await updating?.close();
    await failing?.close();
    await browser?.close();
    await sim?.close();
  });

  /** The page down to the end of the tab shown. */
  async function screenshot(name: string): Promise<void> {
    if (!SCREENSHOTS) return;
    await fs.mkdir(SCREENSHOTS, { recursive: true });
    const panel = await page.$('.panel:not([hidden])');
    const box = await panel?.boundingBox();
    const width = page.viewportSize()?.width ?? 1360;
    const height = box ? Math.ceil(box.y + box.height + 24) : 760;
    await page.screenshot({ path: path.join(SCREENSHOTS, name), fullPage: true, clip: { x: 0, y: 0, width, height } });
  }

  async function waitForText(selector: string, expected: RegExp | string, timeout = 20_000): Promise<void> {
    await page.waitForFunction(
      ([selector, source, flags]) => {
        const text = (globalThis as unknown as PageGlobals).document.querySelector(selector)?.textContent ?? '';
        return flags === null ? text === source : new RegExp(source, flags).test(text);
      },
      [selector, typeof expected === 'string' ? expected : expected.source, typeof expected === 'string' ? null : expected.flags] as const,
      { timeout },
    );
  }

  it('opens at / and follows the push channel', async () => {
    await page.goto(sim.addresses.consolePage);
    await page.waitForSelector('#connection[data-state="live"]');
    assert.equal(await page.textContent('#tab-devices'), 'Devices');
    await waitForText('#devices-table tbody', 'No devices yet: create one above.');
    // Gone after any reload: everything below must arrive by the push channel.
    await page.evaluate(() => ((globalThis as unknown as PageGlobals).notReloaded = true));
  });

  it('creates a device and hands out its device_info.json, with which the device connects', async () => {
    await page.fill('#device-product', PRODUCT);
    await page.fill('#device-name', 'sensor-01');
    await page.click('#device-create');
    await page.waitForSelector('#device-info-download');
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#device-info-download')]);
    assert.equal(download.suggestedFilename(), 'device_info.json');
    const info = JSON.parse(await fs.readFile(await download.path(), 'utf8')) as { productId: string; deviceName: string; key_deviceinfo: { deviceSecret: string } };
    assert.deepEqual([info.productId, info.deviceName], [PRODUCT, 'sensor-01']);
    await page.waitForSelector(`${row('sensor-01')} .online.is-offline`);

    updating = await UpdatingDevice.start(sim, { productId: PRODUCT, deviceName: 'sensor-01', deviceSecret: info.key_deviceinfo.deviceSecret, runningVersion: '1.0.0' });
    await page.waitForSelector(`${row('sensor-01')} .online.is-online`);
    await waitForText(`${row('sensor-01')} .version`, '1.0.0');
    assert.equal(await page.textContent(`${row('sensor-01')} .state-label`), 'no update');

    // A second device, created elsewhere, appears too.
    await sim.createDevice(PRODUCT, 'sensor-02');
    await page.waitForSelector(`${row('sensor-02')} .online.is-offline`);
  });

  it('uploads firmware chosen in the file input and shows its MD5 and size', async () => {
    await page.click('#tab-firmware');
    await page.fill('#firmware-product', PRODUCT);
    await page.fill('#firmware-version', '2.0.0');
    await page.setInputFiles('#firmware-file', { name: 'sensor-2.0.0.bin', mimeType: 'application/octet-stream', buffer: firmware });
    await waitForText('#firmware-chosen', 'sensor-2.0.0.bin, 384 KiB (393216 B)');
    await page.click('#firmware-upload');
    await waitForText('#firmware-uploaded-md5', md5);
    assert.match((await page.textContent('#firmware-result')) ?? '', /^Uploaded CONSOLEPAGE 2\.0\.0: 384 KiB \(393216 bytes\), MD5/);
    const firmwareRow = `#firmware-table tr[data-firmware="${PRODUCT}/2.0.0"]`;
    await waitForText(`${firmwareRow} .md5`, md5);
    assert.equal(await page.textContent(`${firmwareRow} .size`), '384 KiB (393216)');
    assert.equal((await sim.console.getFirmware(PRODUCT, '2.0.0')).md5sum, md5);
  });

  it('sets the fault knobs from the form: the firmware server throttles and cuts the next download', async () => {
    await page.click(`#firmware-table tr[data-firmware="${PRODUCT}/2.0.0"] button:has-text("Faults")`);
    assert.equal(await page.inputValue('#faults-firmware'), `${PRODUCT}/2.0.0`);
    await page.fill('#fault-throttle', String(THROTTLE));
    await page.fill('#fault-close-after', String(CUT_AT));
    await page.click('#faults-apply');
    await waitForText('#faults-result', /throttled to 64 KiB\/s, closes after 131072 bytes \(1×\)/);
    const record = await sim.console.getFirmware(PRODUCT, '2.0.0');
    assert.deepEqual(record.faults, { throttleBytesPerSecond: THROTTLE, closeAfterBytes: CUT_AT, closeAfterResponses: 1 });
  });

  it('starts an update for the chosen device on the chosen version and shows its progress bar move until done', async () => {
    await page.click('#tab-updates');
    await page.selectOption('#update-product', PRODUCT);
    await page.selectOption('#update-version', '2.0.0');
    await page.check('input[name="update-mode"][value="devices-on-source-versions"]');
    await page.check('#update-source-versions input[value="1.0.0"]');
    await page.check('#update-devices input[value="sensor-01"]');
    await page.click('#update-start');
    await waitForText('#update-result', /^Task \d+ started, devices targeted: 1\.$/);
    const [task] = await sim.console.listTasks(PRODUCT);
    assert.deepEqual([task.mode, task.sourceVersions, task.deviceNames], ['devices-on-source-versions', ['1.0.0'], ['sensor-01']]);

    await page.click('#tab-devices');
    const bar = `${row('sensor-01')} progress`;
    const valueBetween = async (low: number, high: number) => {
      const handle = await page.waitForFunction(
        ([selector, low, high]) => {
          const value = (globalThis as unknown as PageGlobals).document.querySelector(selector)?.value ?? -1;
          return value > low && value < high ? value : undefined;
        },
        [bar, low, high] as const,
        { timeout: 30_000 },
      );
      return (await handle.jsonValue()) as number;
    };
    const first = await valueBetween(0, 100);
    const second = await valueBetween(Math.max(first, 30), 100);
    assert.ok(second > first);
    await waitForText(`${row('sensor-01')} .state-label`, /^downloading \d+ %$/);
    await waitForText(`${row('sensor-01')} .rate`, /^\d+(\.\d+)? (B|KiB)\/s$/);
    await screenshot('console-devices.png');
    await page.click('#tab-updates');
    await screenshot('console-update.png');
    await page.click('#tab-devices');

    await page.waitForSelector(`${row('sensor-01')} .ota-state[data-state="done"]`, { timeout: 60_000 });
    assert.equal(await page.textContent(`${row('sensor-01')} .state-label`), 'done');
    assert.equal(await page.getAttribute(`${row('sensor-01')} progress`, 'data-state'), 'done');
    await waitForText(`${row('sensor-01')} .version`, '2.0.0');
    assert.equal(await page.textContent(`${row('sensor-01')} .result-code`), '0');
    assert.equal(await page.evaluate(() => (globalThis as unknown as PageGlobals).notReloaded), true, 'the page was never reloaded');
    assert.deepEqual(updating?.errors, []);
    await page.click('#tab-updates');
    await page.waitForSelector(`#tasks [data-task="${task.taskId}"] tr[data-device="sensor-01"] .ota-state[data-state="done"]`);
  });

  it("shows the device's history: each report with its time and QoS, each firmware request with its range, status and bytes", async () => {
    await page.click('#tab-devices');
    await page.click(`${row('sensor-01')} button:has-text("History")`);
    await page.waitForSelector('#panel-history:not([hidden])');
    await page.waitForSelector('#timeline tr[data-kind="report"][data-state="done"]');
    const lines = await page.$$eval('#timeline tbody tr', (rows) =>
      (rows as unknown as PageNode[]).map((tr) => {
        const [time, event, details] = Array.from(tr.cells).map((cell) => cell.textContent ?? '');
        return { kind: tr.getAttribute('data-kind'), time, event, details };
      }),
    );
    const reports = lines.filter((line) => line.kind === 'report');
    const requests = lines.filter((line) => line.kind === 'request');
    assert.ok(
      reports.some((line) => /^\d\d:\d\d:\d\d\.\d{3}$/.test(line.time) && line.event === 'report' && line.details === 'report_version 1.0.0 QoS 1'),
      JSON.stringify(reports),
    );
    assert.ok(
      reports.some((line) => /^report_progress 2\.0\.0: downloading \d+ % QoS 0$/.test(line.details)),
      JSON.stringify(reports),
    );
    assert.ok(
      reports.some((line) => line.details === 'report_progress 2.0.0: done QoS 1'),
      JSON.stringify(reports),
    );
    assert.ok(
      requests.some(
        (line) => line.event === 'download' && line.details === 'GET 2.0.0 (whole file) → 200, 128 KiB (131072 B) HTTPS cut off by the closeAfterBytes fault',
      ),
      JSON.stringify(requests),
    );
    assert.ok(
      requests.some((line) => /^GET 2\.0\.0 \(Range: bytes=\d+-\) → 206, .* \(\d+ B\) HTTPS$/.test(line.details)),
      JSON.stringify(requests),
    );
    // The served statistics hold the same requests.
    const served = (await sim.console.getFirmware(PRODUCT, '2.0.0')).served;
    assert.deepEqual(
      served.requests.map((request) => request.status),
      [200, 206],
    );
    assert.equal(served.requests[0].fault, 'closed');
  });

  it("shows a device's result message as text, never as markup", async () => {
    await page.click('#tab-devices');
    failing = await sim.connectDevice(PRODUCT, 'sensor-02', { transport: 'mqtt' });
    await failing.reportVersion('1.0.0');
    await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['sensor-02'] });
    await failing.nextMessage('update_firmware');
    const message = '<img src=x onerror="window.injected=1">MD5 <b>mismatch</b> & more';
    await failing.reportProgress('2.0.0', { state: 'fail', resultCode: -4, resultMessage: message });
    await waitForText(`${row('sensor-02')} .result-msg`, message);
    assert.equal(await page.textContent(`${row('sensor-02')} .result-code`), '-4');
    assert.equal(await page.textContent(`${row('sensor-02')} .state-label`), 'failed');
    assert.equal(await page.$$eval('main img, main b', (elements) => elements.length), 0);
    assert.equal(await page.evaluate(() => (globalThis as unknown as PageGlobals).injected), undefined);
  });

  it('starts an update in the two other modes: all devices on the chosen versions, and a list of names whatever their version', async () => {
    await page.click('#tab-updates');
    await page.selectOption('#update-version', '2.0.0');
    await page.check('input[name="update-mode"][value="source-versions"]');
    await page.check('#update-source-versions input[value="1.0.0"]');
    await page.click('#update-start');
    await waitForText('#update-result', /devices targeted: 1\.$/);
    await page.check('input[name="update-mode"][value="devices"]');
    assert.ok(await page.isHidden('#update-source-versions'));
    await page.fill('#update-names', 'sensor-01,\nsensor-02');
    await page.click('#update-start');
    await waitForText('#update-result', /devices targeted: 2\.$/);
    const tasks = (await sim.console.listTasks(PRODUCT)).slice(-2);
    assert.deepEqual(
      tasks.map((task) => [task.mode, task.sourceVersions, task.deviceNames, task.devices.map((status) => status.deviceName)]),
      [
        ['source-versions', ['1.0.0'], undefined, ['sensor-02']],
        ['devices', undefined, ['sensor-01', 'sensor-02'], ['sensor-01', 'sensor-02']],
      ],
    );
    // sensor-01 runs 2.0.0 already: it answers done at once.
    await page.waitForSelector(`#tasks [data-task="${tasks[1].taskId}"] tr[data-device="sensor-01"] .ota-state[data-state="done"]`);
    await page.waitForSelector(`#tasks [data-task="${tasks[1].taskId}"] tr[data-device="sensor-02"] .ota-state[data-state="delivered"]`);
  });

  it('deletes a firmware once asked to confirm', async () => {
    await sim.uploadFirmware(PRODUCT, '1.5.0', randomBytes(1024));
    await page.click('#tab-firmware');
    const firmwareRow = `#firmware-table tr[data-firmware="${PRODUCT}/1.5.0"]`;
    await page.waitForSelector(firmwareRow);
    page.once('dialog', (dialog) => void dialog.accept());
    await page.click(`${firmwareRow} button:has-text("Delete")`);
    await page.waitForSelector(firmwareRow, { state: 'detached' });
    assert.deepEqual(
      (await sim.console.listFirmware(PRODUCT)).map((record) => record.version),
      ['2.0.0'],
    );
  });

  it('cannot be made to change anything by a page of another origin', async () => {
    const foreign = http.createServer((_request, response) => {
      response.setHeader('Content-Type', 'text/html');
      response.end('<!doctype html><title>elsewhere</title>');
    });
    await new Promise<void>((resolve) => foreign.listen(0, '127.0.0.1', resolve));
    const other = await context.newPage();
    try {
      // localhost is another site than 127.0.0.1; another port of 127.0.0.1 is the same site but another origin.
      for (const host of ['localhost', '127.0.0.1']) {
        await other.goto(`http://${host}:${(foreign.address() as AddressInfo).port}/`);
        const sent = await other.evaluate(
          (consoleUrl) =>
            fetch(`${consoleUrl}/api/devices`, {
              method: 'POST',
              mode: 'no-cors',
              headers: { 'Content-Type': 'text/plain' },
              body: JSON.stringify({ productId: 'CONSOLEPAGE', deviceName: 'intruder' }),
            }).then(
              () => true,
              () => false,
            ),
          sim.addresses.http,
        );
        // The browser sends such a request without asking, and hands the page an opaque answer.
        assert.ok(sent, `the request from ${host} was sent`);
      }
    } finally {
      await other.close();
      await new Promise((resolve) => foreign.close(resolve));
    }
    assert.ok(!(await sim.console.listDevices(PRODUCT)).some((device) => device.deviceName === 'intruder'));
  });
});

describe('the web console in Simplified Chinese', function () {
  this.timeout(60_000);
  let sim: SimulatorFixture;
  let browser: Browser;

  before(async function () {
    skipWithoutChromium(this, 'the web console');
    sim = await startSimulator();
    await sim.createDevice(PRODUCT, 'sensor-01');
    browser = await launchChromium();
  });

  after(async function () {
    await browser?.close();
    await sim?.close();
  });

  it('opens in Chinese for a browser that asks for zh-CN, and switches to English and stays so', async () => {
    const context = await browser.newContext({ locale: 'zh-CN' });
    const page = await context.newPage();
    await page.goto(sim.addresses.consolePage);
    await page.waitForSelector('#connection[data-state="live"]');
    assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
    assert.equal(await page.title(), 'IoT Hub 模拟平台控制台');
    assert.deepEqual(await page.$$eval('[role="tab"]', (tabs) => (tabs as unknown as PageNode[]).map((tab) => tab.textContent)), [
      '设备',
      '固件',
      '升级任务',
      '设备日志',
      '故障注入',
    ]);
    assert.equal(await page.textContent('#connection'), '实时');
    await page.waitForSelector(`#devices-table tr[data-device="${PRODUCT}/sensor-01"]`);
    assert.equal(await page.textContent(`#devices-table tr[data-device="${PRODUCT}/sensor-01"] .online`), '离线');
    assert.equal(await page.textContent(`#devices-table tr[data-device="${PRODUCT}/sensor-01"] .state-label`), '无升级');
    assert.equal(await page.textContent('#devices-table th:nth-child(6)'), '升级状态');

    await page.selectOption('#language', 'en');
    assert.equal(await page.textContent('#tab-devices'), 'Devices');
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.querySelector('#devices-table .online')?.textContent === 'offline');
    await page.reload();
    await page.waitForSelector('#connection[data-state="live"]');
    assert.equal(await page.textContent('#tab-devices'), 'Devices');
    assert.equal(await page.getAttribute('html', 'lang'), 'en');
    await context.close();
  });
});
