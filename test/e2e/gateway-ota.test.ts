/**
 * The gateway example flow in a real Node-RED child process against the stand-in: a gateway that
 * updates the two devices behind it over its one connection, what the cloud sees on each
 * sub-device's own topics, and what happens when a sub-device is not bound, badly signed,
 * interrupted by a SIGKILL of the gateway, or unbound from the console.
 */
import { strict as assert } from 'assert';
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadExampleFlow, type SubDeviceBinding } from '../../demo/example-flow';
import { NodeRedProcess } from '../../demo/node-red-process';
import type { DeviceView } from '../../simulator/console-api';
import type { DevicePublish } from '../../simulator/mqtt-broker';
import { httpRequest } from '../support/http-request';
import { startSimulator, type SimulatorFixture } from '../support/simulator-fixture';

const KiB = 1024;
const MiB = 1024 * KiB;
const GATEWAY_PRODUCT = 'GWPRODUCT';
const SUB_PRODUCT = 'SUBPRODUCT';

interface SubDeviceReport {
  deviceName: string;
  type: string;
  state?: string;
  percent?: string;
  resultCode?: string;
  resultMessage?: string;
  version: string;
}

describe('gateway sub-device OTA end to end (Node-RED child process and the stand-in)', function () {
  this.timeout(180_000);
  let sim: SimulatorFixture;
  let workDir: string;
  let nodeRed: NodeRedProcess | undefined;
  let count = 0;
  let gatewayName: string;
  let subNames: string[];
  let publishes: DevicePublish[];
  let connects: number;
  let userDir: string;
  let homeDir: string;
  let flows: object[];
  let credentials: Record<string, Record<string, string>>;

  before(async function () {
    sim = await startSimulator();
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'gateway-e2e-'));
    sim.simulator.broker.on('device-publish', (publish: DevicePublish) => {
      if (publish.deviceName === gatewayName) publishes.push(publish);
    });
    sim.simulator.broker.on('device-connect', (info: { deviceName: string }) => {
      if (info.deviceName === gatewayName) connects += 1;
    });
  });

  after(async function () {
    await nodeRed?.stop();
    await sim?.close();
    await fs.rm(workDir, { recursive: true, force: true });
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.log(nodeRed?.output.split('\n').slice(-60).join('\n'));
    await nodeRed?.stop();
    nodeRed = undefined;
  });

  const consoleUrl = (pathAndQuery: string) => `${sim.addresses.console}${pathAndQuery}`;

  async function consoleCall(method: string, pathAndQuery: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    const answer = await httpRequest(consoleUrl(pathAndQuery), {
      method,
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = answer.body.toString('utf8');
    return { status: answer.status, json: text ? (JSON.parse(text) as unknown) : undefined };
  }

  async function createDevice(productId: string, deviceName: string, deviceType?: 'gateway'): Promise<string> {
    const created = await consoleCall('POST', '/devices', { productId, deviceName, authMode: 'key', ...(deviceType ? { deviceType } : {}) });
    assert.ok(created.status < 300, `device ${productId}/${deviceName} created: ${JSON.stringify(created.json)}`);
    const secret = (created.json as { key_deviceinfo?: { deviceSecret?: string } }).key_deviceinfo?.deviceSecret;
    assert.ok(secret);
    return secret;
  }

  async function bind(subDeviceName: string): Promise<void> {
    const answer = await consoleCall('POST', `/gateways/${GATEWAY_PRODUCT}/${gatewayName}/bindings`, { productId: SUB_PRODUCT, deviceName: subDeviceName });
    assert.ok(answer.status < 300, `bound ${subDeviceName}: ${JSON.stringify(answer.json)}`);
  }

  /** A fresh gateway with two sub-devices and the gateway example bound to them. */
  async function newGateway(options: { bindBoth?: boolean; subSecrets?: (secret: string, index: number) => string | undefined } = {}): Promise<string[]> {
    count += 1;
    gatewayName = `gateway${count}`;
    subNames = [`sensor${count}a`, `sensor${count}b`];
    publishes = [];
    connects = 0;
    const gatewaySecret = await createDevice(GATEWAY_PRODUCT, gatewayName, 'gateway');
    const subSecrets: string[] = [];
    for (const name of subNames) subSecrets.push(await createDevice(SUB_PRODUCT, name));
    if (options.bindBoth !== false) for (const name of subNames) await bind(name);
    const base = path.join(workDir, gatewayName);
    userDir = path.join(base, 'node-red');
    homeDir = path.join(base, 'home');
    await fs.mkdir(homeDir, { recursive: true });
    const subDevices: SubDeviceBinding[] = subNames.map((deviceName, index) => ({
      productId: SUB_PRODUCT,
      deviceName,
      stateDir: path.join(base, deviceName),
      deviceSecret: options.subSecrets?.(subSecrets[index], index),
    }));
    const bound = await loadExampleFlow('gateway-subdevice-ota', {
      productId: GATEWAY_PRODUCT,
      deviceName: gatewayName,
      deviceSecret: gatewaySecret,
      transport: 'mqtts',
      host: '127.0.0.1',
      port: sim.addresses.ports.mqtts,
      caCertPem: sim.caPem,
      stateDir: path.join(base, 'gateway'),
      subDevices,
    });
    for (const node of bound.flows) {
      if (node.type === 'ota-download') Object.assign(node, { readTimeout: 3, maxRetries: 3 });
      // The debug nodes also write to the log, where the test reads what a user sees in the sidebar.
      if (node.type === 'debug') Object.assign(node, { console: true });
    }
    flows = bound.flows;
    credentials = bound.credentials;
    return subSecrets;
  }

  async function startNodeRed(): Promise<void> {
    nodeRed = await NodeRedProcess.start({ userDir, flows, credentials, env: { HOME: homeDir } });
  }

  function reports(): SubDeviceReport[] {
    const found: SubDeviceReport[] = [];
    for (const publish of publishes) {
      const match = /^\$ota\/report\/([^/]+)\/([^/]+)$/.exec(publish.topic);
      if (!match || match[1] !== SUB_PRODUCT) continue;
      const message = JSON.parse(publish.payload.toString('utf8')) as {
        type: string;
        report: { version: string; progress?: { state: string; percent?: string; result_code: string; result_msg: string } };
      };
      found.push({
        deviceName: match[2],
        type: message.type,
        state: message.report.progress?.state,
        percent: message.report.progress?.percent,
        resultCode: message.report.progress?.result_code,
        resultMessage: message.report.progress?.result_msg,
        version: message.report.version,
      });
    }
    return found;
  }

  function waitForDevice(deviceName: string, condition: (device: DeviceView) => boolean, timeoutMs = 90_000): Promise<DeviceView> {
    return sim.console.waitForDevice(SUB_PRODUCT, deviceName, condition, { timeoutMs, intervalMs: 100 });
  }

  async function waitForOutput(pattern: RegExp, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(nodeRed?.output ?? '');
      if (match) return match[0];
      if (Date.now() > deadline) throw new Error(`Node-RED never logged ${String(pattern)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async function uploadFirmware(version: string, bytes: Buffer): Promise<void> {
    await sim.uploadFirmware(SUB_PRODUCT, version, bytes);
  }

  const updatedTo = (version: string) => (device: DeviceView) => device.version === version && device.ota.state === 'done';

  it('updates two sub-devices at once over the one connection, each on its own topics', async function () {
    await newGateway();
    const firmware = randomBytes(2 * MiB + 77);
    await uploadFirmware('1.0.0', firmware);
    await sim.console.setFirmwareFaults(SUB_PRODUCT, '1.0.0', { throttleBytesPerSecond: MiB });
    await startNodeRed();
    for (const name of subNames) await waitForDevice(name, (device) => device.version === '0.1.0');
    await sim.console.startUpdate({ productId: SUB_PRODUCT, version: '1.0.0', deviceNames: subNames });
    for (const name of subNames) await waitForDevice(name, updatedTo('1.0.0'));

    assert.equal(connects, 1, 'one CONNECT for the gateway and both sub-devices');
    const all = reports();
    for (const [index, name] of subNames.entries()) {
      const own = all.filter((report) => report.deviceName === name);
      assert.deepEqual(
        own.filter((report) => report.type === 'report_progress' && report.state !== 'downloading').map((report) => report.state),
        ['burning', 'done'],
      );
      assert.equal(own[own.length - 1].type, 'report_version');
      assert.equal(own[own.length - 1].version, '1.0.0');
      // The example names the MCUs sensor1 and sensor2, whatever the cloud calls the sub-devices.
      const installed = await fs.readFile(path.join(homeDir, 'mcu', `sensor${index + 1}`, 'firmware.bin'));
      assert.equal(createHash('md5').update(installed).digest('hex'), createHash('md5').update(firmware).digest('hex'), 'the MCU got the verified file');
    }
    // Side by side: each sub-device reported a percent below 100 before the other finished downloading.
    const firstHundred = all.findIndex((report) => report.percent === '100');
    const before = new Set(
      all
        .slice(0, firstHundred)
        .filter((report) => report.state === 'downloading' && report.percent !== '0')
        .map((report) => report.deviceName),
    );
    assert.equal(before.size, 2, 'both downloads were under way at once');
    assert.ok(
      !publishes.some((publish) => /^\$ota\/report\/GWPRODUCT\//.test(publish.topic) && publish.payload.toString().includes('report_progress')),
      'no sub-device progress on the gateway topic',
    );
  });

  it('says so when a sub-device is not bound: online is refused with -1', async function () {
    await newGateway({ bindBoth: false });
    await startNodeRed();
    const logged = await waitForOutput(/the cloud refused the sub-device: gateway not bound to this sub-device \(-1\)/);
    assert.ok(logged);
    const device = await sim.console.getDevice(SUB_PRODUCT, subNames[0]);
    assert.notEqual((device as unknown as { online?: boolean }).online, true);
  });

  it('binds a sub-device with its secret when it is not bound, and refuses a wrong signature with 803', async function () {
    await newGateway({ bindBoth: false, subSecrets: (secret, index) => (index === 0 ? secret : Buffer.from('not the secret').toString('base64')) });
    await uploadFirmware('1.0.0', randomBytes(64 * KiB));
    await startNodeRed();
    await waitForOutput(/the cloud refused the sub-device: signature check failed \(803\)/);
    await waitForDevice(subNames[0], (device) => device.version === '0.1.0');
    const bindings = await consoleCall('GET', `/gateways/${GATEWAY_PRODUCT}/${gatewayName}/bindings`);
    assert.match(JSON.stringify(bindings.json), new RegExp(subNames[0]));
    assert.doesNotMatch(JSON.stringify(bindings.json), new RegExp(subNames[1]));
  });

  it('resumes a sub-device download from its checkpoint after the gateway is killed and brings it online again', async function () {
    await newGateway();
    const firmware = randomBytes(4 * MiB);
    await uploadFirmware('1.0.0', firmware);
    // The firmware server counts per firmware across the tests: only what this one fetched counts.
    const servedBefore = (await sim.console.getFirmware(SUB_PRODUCT, '1.0.0')).served?.totalBytes ?? 0;
    await sim.console.setFirmwareFaults(SUB_PRODUCT, '1.0.0', { throttleBytesPerSecond: MiB });
    await startNodeRed();
    await waitForDevice(subNames[0], (device) => device.version === '0.1.0');
    await sim.console.startUpdate({ productId: SUB_PRODUCT, version: '1.0.0', deviceNames: [subNames[0]] });
    await waitForDevice(subNames[0], (device) => device.ota.state === 'downloading' && (device.ota.percent ?? 0) >= 40);
    await nodeRed?.kill('SIGKILL');
    await startNodeRed();
    await waitForOutput(/resuming 1\.0\.0 from byte [1-9]\d* on disk/, 60_000);
    await waitForDevice(subNames[0], updatedTo('1.0.0'));
    const served = (await sim.console.getFirmware(SUB_PRODUCT, '1.0.0')).served;
    if (process.env.E2E_DEBUG) console.log(JSON.stringify(served?.requests, null, 1), nodeRed?.output);
    const fetched = (served?.totalBytes ?? 0) - servedBefore;
    assert.ok(fetched < firmware.length + 2 * MiB, `fetched ${fetched} bytes for ${firmware.length}`);
    assert.ok(connects >= 2);
  });

  it('hands an unbind from the console to the flow as a change message, and the sub-device goes offline', async function () {
    await newGateway();
    await startNodeRed();
    await waitForDevice(subNames[1], (device) => device.version === '0.1.0');
    const unbound = await consoleCall('DELETE', `/gateways/${GATEWAY_PRODUCT}/${gatewayName}/bindings/${SUB_PRODUCT}/${subNames[1]}`);
    assert.ok(unbound.status < 300);
    await waitForOutput(new RegExp(`the cloud unbound ${SUB_PRODUCT}/${subNames[1]} from this gateway`));
    await waitForOutput(/the cloud refused the sub-device: gateway not bound to this sub-device \(-1\)|sub-device offline/);
    const device = await sim.console.getDevice(SUB_PRODUCT, subNames[1]);
    assert.notEqual((device as unknown as { online?: boolean }).online, true);
  });
});
