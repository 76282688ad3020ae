import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as net from 'net';
import * as os from 'os';
import Aedes from 'aedes';
import * as path from 'path';
import type { NodeStatus } from '../../nodes/common/node-red-runtime';
import { IotHubSimulator } from '../../simulator/iot-hub-simulator';
import type { DevicePublish } from '../../simulator/mqtt-broker';
import { getNode, loadFlow, nextCall, nextMessage, nodeModules, statusMatching, unloadFlow } from '../support/node-red-test-runtime';
import { shownStatus, withStatus } from '../support/ota-flow';

const PRODUCT_ID = 'VERSIONTST';

describe('ota-version and the tencent-iot-device config node in the Node-RED runtime', function () {
  let dataDir: string;
  let sim: IotHubSimulator;
  let deviceCount = 0;
  const reports: DevicePublish[] = [];

  before(async function () {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'version-sim-'));
    sim = await IotHubSimulator.start({ dataDir });
    sim.broker.on('device-publish', (publish: DevicePublish) => reports.push(publish));
  });

  afterEach(async function () {
    await unloadFlow();
  });

  after(async function () {
    await sim?.close();
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  async function newDevice(): Promise<{ deviceName: string; deviceSecret: string }> {
    const deviceName = `gw${++deviceCount}`;
    const info = (await sim.console.createDevice(PRODUCT_ID, deviceName)) as { key_deviceinfo: { deviceSecret: string } };
    return { deviceName, deviceSecret: info.key_deviceinfo.deviceSecret };
  }

  function deviceConfig(deviceName: string, extra: Record<string, unknown> = {}) {
    return {
      id: 'device',
      type: 'tencent-iot-device',
      productId: PRODUCT_ID,
      deviceName,
      authMode: 'key',
      region: 'china',
      transport: 'mqtt',
      host: '127.0.0.1',
      port: String(sim.addresses.ports.mqtt),
      keepalive: 60,
      runningVersion: '0.1.0',
      ...extra,
    };
  }

  function versionNode(id: string, extra: Record<string, unknown> = {}) {
    return { id, type: 'ota-version', device: 'device', autoReport: false, replyTimeout: 5, wires: [[`${id}-out`]], ...extra };
  }

  const modules = [nodeModules.tencentIotDevice, nodeModules.otaVersion];

  function reportsOf(deviceName: string) {
    return reports
      .filter((publish) => publish.deviceName === deviceName)
      .map((publish) => ({ qos: publish.qos, message: JSON.parse(publish.payload.toString()) as { type: string; report: { version: string } } }));
  }

  it('reports the configured version with QoS 1 and outputs the cloud reply', async function () {
    const device = await newDevice();
    const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'state-'));
    await loadFlow(modules, [deviceConfig(device.deviceName, { stateDir }), versionNode('version'), { id: 'version-out', type: 'helper' }], {
      device: { deviceSecret: device.deviceSecret },
    });
    const version = getNode('version');
    await statusMatching(version, withStatus('tencent-iot-device.status.connected'));
    const output = nextMessage(getNode('version-out'));
    version.receive({ payload: 1732000000000 });
    const message = await output;
    assert.equal(message.topic, '0.1.0');
    assert.deepEqual(message.payload, { type: 'report_version_rsp', result_code: 0, result_msg: 'success', version: '0.1.0' });
    assert.deepEqual(reportsOf(device.deviceName), [{ qos: 1, message: { type: 'report_version', report: { version: '0.1.0' } } }]);
    const view = await sim.console.getDevice(PRODUCT_ID, device.deviceName);
    assert.equal(view.version, '0.1.0');
    assert.equal((version.status as unknown as { lastCall: { args: [NodeStatus] } }).lastCall.args[0].fill, 'green');
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  it('reports a version given in msg.payload, and prefers the stored running version over the configured one', async function () {
    const device = await newDevice();
    const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'state-'));
    await fs.writeFile(path.join(stateDir, 'running-version.json'), JSON.stringify({ version: '0.9.1', updatedAt: new Date().toISOString() }));
    await loadFlow(modules, [deviceConfig(device.deviceName, { stateDir }), versionNode('version'), { id: 'version-out', type: 'helper' }], {
      device: { deviceSecret: device.deviceSecret },
    });
    const version = getNode('version');
    const out = getNode('version-out');
    let output = nextMessage(out);
    version.receive({ payload: '2.0.0-rc.1' });
    assert.equal((await output).topic, '2.0.0-rc.1');
    output = nextMessage(out);
    version.receive({});
    assert.equal((await output).topic, '0.9.1');
    assert.deepEqual(
      reportsOf(device.deviceName).map((report) => report.message.report.version),
      ['2.0.0-rc.1', '0.9.1'],
    );
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  for (const [label, payload] of [
    ['empty', ''],
    ['over 32 characters', 'v'.repeat(33)],
    ['with a space', '1.0 beta'],
    ['with a slash', '../1.0'],
  ] as const) {
    it(`refuses a version that is ${label} through done(err), publishing nothing`, async function () {
      const device = await newDevice();
      await loadFlow(modules, [deviceConfig(device.deviceName), versionNode('version'), { id: 'version-out', type: 'helper' }], {
        device: { deviceSecret: device.deviceSecret },
      });
      const version = getNode('version');
      await statusMatching(version, withStatus('tencent-iot-device.status.connected'));
      const error = nextCall<string>(version, 'error');
      version.receive({ payload });
      assert.match(String(await error), /invalid-version/);
      assert.deepEqual(reportsOf(device.deviceName), []);
    });
  }

  it('shares one connection among several nodes and reports once per connect for all of them', async function () {
    const device = await newDevice();
    const connects: string[] = [];
    const onConnect = (info: { deviceName: string }) => {
      if (info.deviceName === device.deviceName) connects.push(info.deviceName);
    };
    sim.broker.on('device-connect', onConnect);
    await loadFlow(
      modules,
      [
        deviceConfig(device.deviceName),
        versionNode('v1', { autoReport: true }),
        versionNode('v2', { autoReport: true }),
        versionNode('v3'),
        { id: 'v1-out', type: 'helper' },
        { id: 'v2-out', type: 'helper' },
        { id: 'v3-out', type: 'helper' },
      ],
      { device: { deviceSecret: device.deviceSecret } },
    );
    const [first, second] = await Promise.all([nextMessage(getNode('v1-out')), nextMessage(getNode('v2-out'))]);
    assert.equal(first.trigger, 'connect');
    assert.equal((first.payload as { result_code: number }).result_code, 0);
    assert.deepEqual(first.payload, second.payload);
    const output = nextMessage(getNode('v3-out'));
    getNode('v3').receive({});
    await output;
    sim.broker.off('device-connect', onConnect);
    assert.equal(connects.length, 1, 'the broker saw one CONNECT');
    assert.equal(sim.broker.connectCount({ productId: PRODUCT_ID, deviceName: device.deviceName }), 1);
    assert.equal(reportsOf(device.deviceName).length, 2, 'one automatic report and one on request');
  });

  it('shows "disconnected" on every node of a device with a wrong secret, and logs why', async function () {
    const device = await newDevice();
    await loadFlow(modules, [deviceConfig(device.deviceName), versionNode('v1'), versionNode('v2')], {
      device: { deviceSecret: Buffer.from('wrong secret....').toString('base64') },
    });
    // The reason (bad credentials) is too long for a status: the config node logs it.
    const logged = nextCall<string>(getNode('device'), 'log');
    for (const id of ['v1', 'v2']) {
      const node = getNode(id);
      await statusMatching(node, (status) => status.fill === 'red' && withStatus('tencent-iot-device.status.disconnected')(status));
    }
    assert.equal(await logged, 'tencent-iot-device.log.disconnected');
    const refused = await new Promise<{ returnCode: number }>((resolve) => sim.broker.once('connect-refused', resolve));
    assert.equal(refused.returnCode, 4);
  });

  it('shows a clear error for a device secret that is not base64, without crashing', async function () {
    const device = await newDevice();
    await loadFlow(modules, [deviceConfig(device.deviceName), versionNode('version')], { device: { deviceSecret: 'this is not base64!' } });
    const version = getNode('version');
    const status = await statusMatching(version, (s) => s.fill === 'red');
    assert.equal(shownStatus(status)?.key, 'tencent-iot-device.status.disconnected');
    assert.equal(sim.broker.connectCount({ productId: PRODUCT_ID, deviceName: device.deviceName }), 0);
  });

  it('shows an invalid device configuration on its flow nodes', async function () {
    await loadFlow(modules, [deviceConfig('bad/name'), versionNode('version')], {});
    const version = getNode('version');
    const status = await statusMatching(version, (s) => s.fill === 'red');
    assert.equal(shownStatus(status)?.key, 'tencent-iot-device.status.invalid-config');
  });

  it('raises an error when the cloud does not answer within the reply timeout', async function () {
    // A bare broker with no cloud behind it: the report is acknowledged, and nobody answers.
    const broker = new Aedes();
    const server = net.createServer(broker.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const device = await newDevice();
      await loadFlow(modules, [deviceConfig(device.deviceName, { port: String(port) }), versionNode('version', { replyTimeout: 1 })], {
        device: { deviceSecret: device.deviceSecret },
      });
      const version = getNode('version');
      await statusMatching(version, withStatus('tencent-iot-device.status.connected'));
      const error = nextCall<string>(version, 'error');
      version.receive({ payload: '0.1.0' });
      assert.match(String(await error), /report-failed/);
      assert.equal((version.status as unknown as { lastCall: { args: [NodeStatus] } }).lastCall.args[0].fill, 'red');
    } finally {
      await unloadFlow();
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
