import { strict as assert } from 'assert';
import type { EventEmitter } from 'events';
import { promises as fs } from 'fs';
import * as path from 'path';
import { randomBytes } from 'crypto';
import {
  buildBind,
  buildChangeAnswer,
  buildDescribeSubDevices,
  buildSubDeviceOperation,
  buildUnbindAllAnswer,
  gatewayOperationResultTopic,
  gatewayOperationTopic,
  parseGatewayCloudMessage,
  type BindOptions,
} from '../../lib/gateway-messages';
import { buildReportProgress, buildReportVersion } from '../../lib/ota-messages';
import { otaReportTopic, otaUpdateTopic, type DeviceIdentity } from '../../lib/ota-topics';
import { ConsoleApiError } from '../../simulator/console-client';
import type { SimulatedMqttBrokerEvents } from '../../simulator/mqtt-broker';
import { signConnection } from '../../lib/device-signing';
import { httpRequest } from '../support/http-request';
import { attemptConnection } from '../support/mqtt-connection-attempt';
import { startSimulator, type CreatedTestDevice, type SimulatorFixture } from '../support/simulator-fixture';
import { SUBACK_FAILURE, TestGateway } from '../support/test-gateway';

const GW_PRODUCT = 'GWPRODUCT1';
const SUB_PRODUCT = 'SUBPRODUCT';
const GW1 = { productId: GW_PRODUCT, deviceName: 'gw1' };
const GW2 = { productId: GW_PRODUCT, deviceName: 'gw2' };
const SUB1 = { productId: SUB_PRODUCT, deviceName: 'sub1' };
const SUB2 = { productId: SUB_PRODUCT, deviceName: 'sub2' };
const SUB3 = { productId: SUB_PRODUCT, deviceName: 'sub3' };
const GHOST = { productId: SUB_PRODUCT, deviceName: 'ghost' };

/** [<pid>/<dn>, result] for each sub-device of a reply, after checking that a device-side gateway can parse it. */
function resultsOf(answer: Record<string, unknown>): [string, number][] {
  const parsed = parseGatewayCloudMessage(answer);
  assert.ok(parsed.ok, `the reply parses as a device-side gateway reads it: ${JSON.stringify(answer)}`);
  const devices = (answer.payload as { devices: { product_id: string; device_name: string; result: number }[] }).devices;
  return devices.map((device) => [`${device.product_id}/${device.device_name}`, device.result]);
}

function nameOf(device: DeviceIdentity): string {
  return `${device.productId}/${device.deviceName}`;
}

async function rejectsWith(promise: Promise<unknown>, status: number, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConsoleApiError, `expected a ConsoleApiError, got ${String(error)}`);
    assert.equal(error.status, status);
    assert.match(error.message, message);
    return true;
  });
}

describe('gateways and sub-devices on the stand-in', () => {
  let sim: SimulatorFixture;
  let created: Map<string, CreatedTestDevice>;
  let gateways: TestGateway[];

  function secretOf(device: DeviceIdentity): string {
    const entry = created.get(nameOf(device));
    if (!entry?.deviceSecret) throw new Error(`no secret for ${nameOf(device)}`);
    return entry.deviceSecret;
  }

  async function connect(device: DeviceIdentity, options: { subscribe?: boolean } = {}): Promise<TestGateway> {
    const gateway = await TestGateway.connect(sim.addresses.mqtts, { ...device, deviceSecret: secretOf(device) }, { ca: sim.caPem, ...options });
    gateways.push(gateway);
    return gateway;
  }

  function nextBrokerEvent<E extends keyof SimulatedMqttBrokerEvents>(
    event: E,
    matches: (payload: SimulatedMqttBrokerEvents[E][0]) => boolean = () => true,
  ): Promise<SimulatedMqttBrokerEvents[E][0]> {
    const emitter = sim.simulator.broker as unknown as EventEmitter;
    return new Promise((resolve) => {
      const listener = (payload: SimulatedMqttBrokerEvents[E][0]) => {
        if (!matches(payload)) return;
        emitter.off(event, listener);
        resolve(payload);
      };
      emitter.on(event, listener);
    });
  }

  async function bindOnWire(gateway: TestGateway, subDevice: DeviceIdentity, options: BindOptions = {}, secret = secretOf(subDevice)): Promise<[string, number][]> {
    return resultsOf(await gateway.request(buildBind(subDevice, secret, options)));
  }

  async function online(gateway: TestGateway, ...subDevices: DeviceIdentity[]): Promise<[string, number][]> {
    return resultsOf(await gateway.request(buildSubDeviceOperation('online', subDevices)));
  }

  async function offline(gateway: TestGateway, ...subDevices: DeviceIdentity[]): Promise<[string, number][]> {
    return resultsOf(await gateway.request(buildSubDeviceOperation('offline', subDevices)));
  }

  /**
   * Sends `payload` from the cloud to the sub-device's update topic, then a marker to the gateway's own
   * update topic (which it subscribes to), and answers whether the first reached the gateway before the marker did.
   */
  async function cloudMessageReaches(gateway: TestGateway, subDevice: DeviceIdentity, payload: string): Promise<boolean> {
    const broker = sim.simulator.broker;
    const marker = `{"type":"marker","id":"${randomBytes(4).toString('hex')}"}`;
    const before = gateway.received.length;
    await broker.publishToDevice(subDevice, otaUpdateTopic(subDevice), payload);
    await broker.publishToDevice(gateway.identity, otaUpdateTopic(gateway.identity), marker);
    await gateway.nextOn(otaUpdateTopic(gateway.identity));
    return gateway.received.slice(before).some((received) => received.topic === otaUpdateTopic(subDevice));
  }

  beforeEach(async () => {
    sim = await startSimulator();
    created = new Map();
    gateways = [];
    for (const gateway of [GW1, GW2]) created.set(nameOf(gateway), await sim.createDevice(gateway.productId, gateway.deviceName, 'key', 'gateway'));
    for (const device of [SUB1, SUB2, SUB3]) created.set(nameOf(device), await sim.createDevice(device.productId, device.deviceName));
  });

  afterEach(async () => {
    await Promise.all(gateways.map((gateway) => gateway.close()));
    await sim.close();
  });

  describe('the operation topics', () => {
    it('grant a gateway QoS 1 on its own result topic and refuse (0x80) another gateway or an ordinary device', async () => {
      const gateway = await connect(GW1, { subscribe: false });
      assert.equal(await gateway.subscribe(gatewayOperationResultTopic(GW1), 1), 1);
      assert.equal(await gateway.subscribe(gatewayOperationResultTopic(GW2), 1), SUBACK_FAILURE);
      const device = await connect(SUB1, { subscribe: false });
      assert.equal(await device.subscribe(gatewayOperationResultTopic(SUB1), 1), SUBACK_FAILURE);
      assert.equal(sim.simulator.broker.isOnline(SUB1), true, 'a refused subscription keeps the connection');
    });

    it('close the connection of an ordinary device that publishes on a gateway operation topic', async () => {
      const device = await connect(SUB1, { subscribe: false });
      const refused = nextBrokerEvent('publish-refused');
      const closed = device.closed();
      device.client.publish(gatewayOperationTopic(SUB1), JSON.stringify(buildDescribeSubDevices()), { qos: 0 });
      await closed;
      assert.equal((await refused).topic, gatewayOperationTopic(SUB1));
    });

    it('answer on the result topic with QoS 0, whatever QoS the gateway published with', async () => {
      const gateway = await connect(GW1);
      await gateway.operate(buildDescribeSubDevices(), 1);
      await gateway.nextResult('describe_sub_devices');
      assert.deepEqual(
        gateway.received.map((received) => [received.topic, received.qos]),
        [[gatewayOperationResultTopic(GW1), 0]],
      );
    });
  });

  describe('online and offline', () => {
    it('answer 0 for a bound sub-device and set its online state, which the device view shows', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      const gateway = await connect(GW1);
      assert.equal((await sim.console.getDevice(SUB_PRODUCT, 'sub1')).online, false);
      assert.deepEqual(await online(gateway, SUB1), [['SUBPRODUCT/sub1', 0]]);
      const view = await sim.console.getDevice(SUB_PRODUCT, 'sub1');
      assert.deepEqual([view.online, view.gateway, view.connectCount], [true, GW1, 0]);
      assert.deepEqual(await sim.console.listSubDevices(GW1).then((list) => list.map((entry) => [entry.deviceName, entry.online])), [['sub1', true]]);
      assert.deepEqual(await offline(gateway, SUB1), [['SUBPRODUCT/sub1', 0]]);
      assert.equal((await sim.console.getDevice(SUB_PRODUCT, 'sub1')).online, false);
    });

    it('answer -1 for a sub-device bound to another gateway or to none, and 802 for an unknown device, each in one reply', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      await sim.console.bindSubDevice(GW2, SUB2);
      const gateway = await connect(GW1);
      assert.deepEqual(await online(gateway, SUB1, SUB2, SUB3, GHOST), [
        ['SUBPRODUCT/sub1', 0],
        ['SUBPRODUCT/sub2', -1],
        ['SUBPRODUCT/sub3', -1],
        ['SUBPRODUCT/ghost', 802],
      ]);
      assert.deepEqual(await offline(gateway, SUB2, GHOST), [
        ['SUBPRODUCT/sub2', -1],
        ['SUBPRODUCT/ghost', 802],
      ]);
      assert.deepEqual([(await sim.console.getDevice(SUB_PRODUCT, 'sub2')).online, (await sim.console.getDevice(SUB_PRODUCT, 'sub3')).online], [false, false]);
    });

    it('answer 801 for an entry without a device name while still handling the good ones, and for devices that are not a list', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      const gateway = await connect(GW1);
      const answer = await gateway.request({ type: 'online', payload: { devices: [{ product_id: SUB_PRODUCT }, { product_id: SUB_PRODUCT, device_name: 'sub1' }] } });
      const devices = (answer.payload as { devices: unknown[] }).devices;
      assert.deepEqual(devices, [
        { product_id: SUB_PRODUCT, device_name: '', result: 801 },
        { product_id: SUB_PRODUCT, device_name: 'sub1', result: 0 },
      ]);
      assert.deepEqual(await gateway.request({ type: 'offline', payload: { devices: 'sub1' } }), { type: 'offline', payload: { result: 801, devices: [] } });
      const history = (await sim.console.getDevice(GW_PRODUCT, 'gw1')).gatewayHistory ?? [];
      assert.deepEqual(
        history.map((entry) => [entry.type, entry.result ?? null, Boolean(entry.error)]),
        [
          ['online', null, true],
          ['offline', 801, true],
        ],
      );
    });

    it('records a payload that names no operation, and answers nothing to it', async () => {
      const gateway = await connect(GW1);
      await gateway.operate('not json');
      await gateway.operate({ type: 'reboot' });
      await gateway.request(buildDescribeSubDevices());
      const view = await sim.console.getDevice(GW_PRODUCT, 'gw1');
      assert.deepEqual(
        (view.gatewayHistory ?? []).map((entry) => entry.type),
        ['invalid', 'invalid', 'describe_sub_devices'],
      );
      assert.deepEqual(
        gateway.received.map((received) => received.message.type),
        ['describe_sub_devices'],
      );
    });
  });

  describe('bind', () => {
    it('binds with a correct hmacsha1 signature and with a correct hmacsha256 signature', async () => {
      const gateway = await connect(GW1);
      assert.deepEqual(await bindOnWire(gateway, SUB1, { signMethod: 'hmacsha1' }), [['SUBPRODUCT/sub1', 0]]);
      assert.deepEqual(await bindOnWire(gateway, SUB2, { signMethod: 'hmacsha256' }), [['SUBPRODUCT/sub2', 0]]);
      assert.deepEqual(
        (await sim.console.listSubDevices(GW1)).map((entry) => [entry.deviceName, entry.online]),
        [
          ['sub1', false],
          ['sub2', false],
        ],
      );
      assert.deepEqual((await sim.console.getDevice(SUB_PRODUCT, 'sub1')).gateway, GW1);
      assert.deepEqual(await online(gateway, SUB1), [['SUBPRODUCT/sub1', 0]], 'a bound sub-device can be brought online');
    });

    it('refuses a signature made with another key with 803, and binds nothing', async () => {
      const gateway = await connect(GW1);
      assert.deepEqual(await bindOnWire(gateway, SUB1, { signMethod: 'hmacsha1' }, secretOf(SUB2)), [['SUBPRODUCT/sub1', 803]]);
      const tampered = buildBind(SUB1, secretOf(SUB1)) as { payload: { devices: { random: number }[] } };
      tampered.payload.devices[0].random += 1;
      assert.deepEqual(resultsOf(await gateway.request(tampered as unknown as { type: string })), [['SUBPRODUCT/sub1', 803]]);
      assert.deepEqual(await sim.console.listSubDevices(GW1), []);
    });

    it('answers 804 for a sign method other than hmacsha1 and hmacsha256', async () => {
      const gateway = await connect(GW1);
      const message = buildBind(SUB1, secretOf(SUB1)) as { type: string; payload: { devices: { signmethod: string }[] } };
      message.payload.devices[0].signmethod = 'hmacmd5';
      assert.deepEqual(resultsOf(await gateway.request(message)), [['SUBPRODUCT/sub1', 804]]);
    });

    it('answers 805 for a correctly signed timestamp more than 10 minutes off, in either direction', async () => {
      const gateway = await connect(GW1);
      const now = Math.floor(Date.now() / 1000);
      assert.deepEqual(await bindOnWire(gateway, SUB1, { timestamp: now - 3600 }), [['SUBPRODUCT/sub1', 805]]);
      assert.deepEqual(await bindOnWire(gateway, SUB1, { timestamp: now + 3600 }), [['SUBPRODUCT/sub1', 805]]);
      assert.deepEqual(await sim.console.listSubDevices(GW1), []);
    });

    it('answers 809 when already bound to this gateway and 806 when bound to another', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      await sim.console.bindSubDevice(GW2, SUB2);
      const gateway = await connect(GW1);
      assert.deepEqual(await bindOnWire(gateway, SUB1), [['SUBPRODUCT/sub1', 809]]);
      assert.deepEqual(await bindOnWire(gateway, SUB2), [['SUBPRODUCT/sub2', 806]]);
      assert.deepEqual((await sim.console.getDevice(SUB_PRODUCT, 'sub2')).gateway, GW2);
    });

    it('answers 807 for a gateway, 802 for an unknown device and 801 for an entry without a signature', async () => {
      const gateway = await connect(GW1);
      assert.deepEqual(await bindOnWire(gateway, GW2), [['GWPRODUCT1/gw2', 807]]);
      assert.deepEqual(await bindOnWire(gateway, GHOST, {}, 'c2VjcmV0'), [['SUBPRODUCT/ghost', 802]]);
      const unsigned = {
        type: 'bind',
        payload: { devices: [{ product_id: SUB_PRODUCT, device_name: 'sub1', random: 1, timestamp: 1, signmethod: 'hmacsha1', authtype: 'psk' }] },
      };
      assert.deepEqual(resultsOf(await gateway.request(unsigned)), [['SUBPRODUCT/sub1', 801]]);
      assert.deepEqual(await sim.console.listSubDevices(GW1), []);
    });
  });

  describe('unbind, describe_sub_devices and the answers to what the cloud sends', () => {
    it('unbind answers 0, unbinds and takes the sub-device offline; -1 when not bound to this gateway; 802 for an unknown device', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      await sim.console.bindSubDevice(GW2, SUB2);
      const gateway = await connect(GW1);
      await online(gateway, SUB1);
      const answer = await gateway.request(buildSubDeviceOperation('unbind', [SUB1, SUB2, SUB3, GHOST]));
      assert.equal(answer.type, 'unbind');
      assert.deepEqual(resultsOf(answer), [
        ['SUBPRODUCT/sub1', 0],
        ['SUBPRODUCT/sub2', -1],
        ['SUBPRODUCT/sub3', -1],
        ['SUBPRODUCT/ghost', 802],
      ]);
      const view = await sim.console.getDevice(SUB_PRODUCT, 'sub1');
      assert.deepEqual([view.online, view.gateway], [false, undefined]);
      assert.deepEqual(await online(gateway, SUB1), [['SUBPRODUCT/sub1', -1]]);
      assert.deepEqual((await sim.console.getDevice(SUB_PRODUCT, 'sub2')).gateway, GW2);
    });

    it('describe_sub_devices lists the bound sub-devices, online or not', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      await sim.console.bindSubDevice(GW1, SUB3);
      await sim.console.bindSubDevice(GW2, SUB2);
      const gateway = await connect(GW1);
      await online(gateway, SUB3);
      assert.deepEqual(await gateway.request(buildDescribeSubDevices()), {
        type: 'describe_sub_devices',
        payload: {
          devices: [
            { product_id: SUB_PRODUCT, device_name: 'sub1' },
            { product_id: SUB_PRODUCT, device_name: 'sub3' },
          ],
        },
      });
    });

    it("records the gateway's answers to change and unbind_all, and replies nothing to them", async () => {
      const gateway = await connect(GW1);
      await gateway.operate(buildChangeAnswer(0));
      await gateway.operate(buildUnbindAllAnswer(0));
      await gateway.request(buildDescribeSubDevices());
      const history = (await sim.console.getDevice(GW_PRODUCT, 'gw1')).gatewayHistory ?? [];
      assert.deepEqual(
        history.map((entry) => [entry.from, entry.type, entry.result ?? null]),
        [
          ['gateway', 'change', 0],
          ['gateway', 'unbind_all', 0],
          ['gateway', 'describe_sub_devices', null],
        ],
      );
      assert.deepEqual(
        gateway.received.map((received) => received.message.type),
        ['describe_sub_devices'],
      );
    });
  });

  describe("the sub-device's topics on the gateway's connection", () => {
    const report = JSON.stringify(buildReportVersion('1.0.0'));

    it('are refused before the sub-device is online: 0x80 to a subscription, and a publish closes the connection', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      const gateway = await connect(GW1);
      assert.equal(await gateway.subscribe(otaUpdateTopic(SUB1), 1), SUBACK_FAILURE);
      assert.equal(await gateway.subscribe(`${SUB_PRODUCT}/sub1/control`, 0), SUBACK_FAILURE);
      assert.equal(sim.simulator.broker.isConnected(GW1), true, 'a refused subscription keeps the connection');
      const refused = nextBrokerEvent('publish-refused');
      const closed = gateway.closed();
      gateway.client.publish(otaReportTopic(SUB1), report, { qos: 1 });
      await closed;
      const event = await refused;
      assert.deepEqual([event.productId, event.deviceName, event.topic], [GW_PRODUCT, 'gw1', otaReportTopic(SUB1)]);
      assert.match(event.reason, /SUBPRODUCT\/sub1 is not online through this gateway/);
      assert.deepEqual((await sim.console.getDevice(SUB_PRODUCT, 'sub1')).ota.history, [], 'the refused report never reached the cloud');
    });

    it('are allowed once it is online, exactly as the sub-device would use them, and only for that sub-device', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      await sim.console.bindSubDevice(GW1, SUB2);
      const gateway = await connect(GW1);
      await online(gateway, SUB1);
      assert.equal(await gateway.subscribe(otaUpdateTopic(SUB1), 1), 1);
      assert.equal(await gateway.subscribe(`${SUB_PRODUCT}/sub1/+`, 1), 1);
      assert.equal(await gateway.subscribe(otaReportTopic(SUB1), 0), SUBACK_FAILURE, 'not the report topic, which the sub-device cannot subscribe to either');
      assert.equal(await gateway.subscribe(otaUpdateTopic(SUB2), 1), SUBACK_FAILURE, 'not a bound sub-device that is offline');
      assert.equal(await gateway.subscribe(`${SUB_PRODUCT}/+/control`, 0), SUBACK_FAILURE);
      await gateway.publish(`${SUB_PRODUCT}/sub1/event`, '{"temperature":21}', 1);
      await gateway.publish(otaReportTopic(SUB1), report, 1);
      assert.deepEqual(await gateway.nextOn(otaUpdateTopic(SUB1)), { type: 'report_version_rsp', result_code: 0, result_msg: 'success', version: '1.0.0' });
      const view = await sim.console.getDevice(SUB_PRODUCT, 'sub1');
      assert.equal(view.version, '1.0.0');
      assert.deepEqual(
        view.ota.history.map((entry) => [entry.type, entry.via]),
        [['report_version', GW1]],
      );
    });

    it('are taken away by offline: the existing subscription stops receiving and a new one is refused, also after coming online again', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      const gateway = await connect(GW1);
      await gateway.subscribe(otaUpdateTopic(GW1), 1);
      await online(gateway, SUB1);
      assert.equal(await gateway.subscribe(otaUpdateTopic(SUB1), 1), 1);
      assert.equal(await cloudMessageReaches(gateway, SUB1, '{"type":"first"}'), true);
      await offline(gateway, SUB1);
      assert.equal(await cloudMessageReaches(gateway, SUB1, '{"type":"second"}'), false);
      assert.equal(await gateway.subscribe(otaUpdateTopic(SUB1), 1), SUBACK_FAILURE);
      await online(gateway, SUB1);
      assert.equal(await cloudMessageReaches(gateway, SUB1, '{"type":"third"}'), false, 'the old subscription was removed: a new online needs a new subscription');
      assert.equal(await gateway.subscribe(otaUpdateTopic(SUB1), 1), 1);
      assert.equal(await cloudMessageReaches(gateway, SUB1, '{"type":"fourth"}'), true);
    });

    it('are taken away by an unbind on the console, which sends change status 0', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      const gateway = await connect(GW1);
      await gateway.subscribe(otaUpdateTopic(GW1), 1);
      await online(gateway, SUB1);
      await gateway.subscribe(otaUpdateTopic(SUB1), 1);
      await sim.console.unbindSubDevice(GW1, SUB1);
      assert.deepEqual(await gateway.nextResult('change'), { type: 'change', payload: { status: 0, devices: [{ product_id: SUB_PRODUCT, device_name: 'sub1' }] } });
      assert.equal(await cloudMessageReaches(gateway, SUB1, '{"type":"after-unbind"}'), false);
      assert.equal(await gateway.subscribe(otaUpdateTopic(SUB1), 1), SUBACK_FAILURE);
      assert.equal((await sim.console.getDevice(SUB_PRODUCT, 'sub1')).online, false);
    });

    it("are taken away when the gateway's connection ends, until the reconnected gateway brings the sub-device online again", async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      const first = await connect(GW1);
      await online(first, SUB1);
      const wentOffline = nextBrokerEvent('sub-device-state', (state) => state.deviceName === 'sub1' && !state.online);
      await first.close();
      assert.deepEqual(await wentOffline, { gateway: GW1, ...SUB1, online: false });
      assert.equal((await sim.console.getDevice(SUB_PRODUCT, 'sub1')).online, false);

      const second = await connect(GW1);
      assert.equal(await second.subscribe(otaUpdateTopic(SUB1), 1), SUBACK_FAILURE);
      await online(second, SUB1);
      assert.equal(await second.subscribe(otaUpdateTopic(SUB1), 1), 1);
    });
  });

  describe('bindings on the console', () => {
    it('binds, lists and unbinds, telling a connected gateway with change', async () => {
      const gateway = await connect(GW1);
      const binding = await sim.console.bindSubDevice(GW1, SUB1);
      assert.deepEqual({ ...binding, boundAt: typeof binding.boundAt }, { productId: SUB_PRODUCT, deviceName: 'sub1', boundAt: 'string', online: false });
      assert.deepEqual(await gateway.nextResult('change'), { type: 'change', payload: { status: 1, devices: [{ product_id: SUB_PRODUCT, device_name: 'sub1' }] } });
      await gateway.operate(buildChangeAnswer(0));
      await sim.console.bindSubDevice(GW1, SUB2);
      await gateway.nextResult('change');
      assert.deepEqual(
        (await sim.console.listSubDevices(GW1)).map((entry) => entry.deviceName),
        ['sub1', 'sub2'],
      );

      assert.deepEqual(await sim.console.unbindSubDevice(GW1, SUB1), { productId: SUB_PRODUCT, deviceName: 'sub1', unbound: true });
      assert.deepEqual((await gateway.nextResult('change')).payload, { status: 0, devices: [{ product_id: SUB_PRODUCT, device_name: 'sub1' }] });
      assert.deepEqual(
        (await sim.console.listSubDevices(GW1)).map((entry) => entry.deviceName),
        ['sub2'],
      );

      const view = await sim.console.waitForDevice(GW_PRODUCT, 'gw1', (seen) => (seen.gatewayHistory ?? []).some((entry) => entry.from === 'gateway'));
      assert.equal(view.deviceType, 'gateway');
      assert.deepEqual(
        (view.subDevices ?? []).map((entry) => entry.deviceName),
        ['sub2'],
      );
      assert.deepEqual(
        (view.gatewayHistory ?? []).map((entry) => [entry.from, entry.type, entry.status ?? entry.result]),
        [
          ['cloud', 'change', 1],
          ['gateway', 'change', 0],
          ['cloud', 'change', 1],
          ['cloud', 'change', 0],
        ],
      );
    });

    it('unbinds every sub-device at once, sending unbind_all', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      await sim.console.bindSubDevice(GW1, SUB2);
      const gateway = await connect(GW1);
      await online(gateway, SUB1);
      assert.deepEqual(await sim.console.unbindAllSubDevices(GW1), [SUB1, SUB2]);
      assert.deepEqual(await gateway.nextResult('unbind_all'), { type: 'unbind_all' });
      assert.deepEqual(await sim.console.listSubDevices(GW1), []);
      assert.equal((await sim.console.getDevice(SUB_PRODUCT, 'sub1')).online, false);
    });

    it('shows the device type in the list and the views, and the gateway of a bound sub-device', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      assert.deepEqual(
        (await sim.console.listDevices()).map((entry) => [entry.deviceName, entry.deviceType]),
        [
          ['gw1', 'gateway'],
          ['gw2', 'gateway'],
          ['sub1', 'device'],
          ['sub2', 'device'],
          ['sub3', 'device'],
        ],
      );
      const sub = await sim.console.getDevice(SUB_PRODUCT, 'sub1');
      assert.deepEqual([sub.deviceType, sub.gateway, sub.subDevices], ['device', GW1, undefined]);
      const unbound = await sim.console.getDevice(SUB_PRODUCT, 'sub2');
      assert.equal(unbound.gateway, undefined);
      const gateway = await sim.console.getDevice(GW_PRODUCT, 'gw2');
      assert.deepEqual([gateway.deviceType, gateway.subDevices, gateway.gatewayHistory], ['gateway', [], []]);
    });

    it('refuses what cannot be bound: 404 for an unknown device or a gateway that is none, 400 for a gateway as sub-device, 409 for a bound one', async () => {
      await rejectsWith(sim.console.bindSubDevice(GW1, GHOST), 404, /SUBPRODUCT\/ghost does not exist/);
      await rejectsWith(sim.console.bindSubDevice({ productId: GW_PRODUCT, deviceName: 'nobody' }, SUB1), 404, /does not exist/);
      await rejectsWith(sim.console.bindSubDevice(SUB2, SUB1), 404, /SUBPRODUCT\/sub2 is not a gateway/);
      await rejectsWith(sim.console.listSubDevices(SUB2), 404, /is not a gateway/);
      await rejectsWith(sim.console.bindSubDevice(GW1, GW2), 400, /is a gateway, not an ordinary device/);
      await sim.console.bindSubDevice(GW1, SUB1);
      await rejectsWith(sim.console.bindSubDevice(GW1, SUB1), 409, /already bound to this gateway/);
      await rejectsWith(sim.console.bindSubDevice(GW2, SUB1), 409, /already bound to gateway GWPRODUCT1\/gw1/);
      await rejectsWith(sim.console.unbindSubDevice(GW2, SUB1), 404, /not bound to gateway GWPRODUCT1\/gw2/);

      const missing = await httpRequest(`${sim.addresses.http}/api/gateways/${GW_PRODUCT}/gw1/bindings`, { method: 'POST', body: '{"productId":"SUBPRODUCT"}' });
      assert.deepEqual([missing.status, JSON.parse(missing.body.toString('utf8')).error], [400, 'deviceName is missing']);
      const badType = await httpRequest(`${sim.addresses.http}/api/devices`, { method: 'POST', body: '{"productId":"SUBPRODUCT","deviceName":"x","deviceType":"hub"}' });
      assert.deepEqual([badType.status, JSON.parse(badType.body.toString('utf8')).error], [400, 'deviceType must be "device" or "gateway"']);
      const wrongMethod = await httpRequest(`${sim.addresses.http}/api/gateways/${GW_PRODUCT}/gw1/bindings/${SUB_PRODUCT}/sub1`, { method: 'GET' });
      assert.equal(wrongMethod.status, 405);
    });

    it('keeps bindings and device types in the data dir across a restart', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      await sim.console.bindSubDevice(GW1, SUB3);
      await sim.console.unbindSubDevice(GW1, SUB3);
      await sim.restart();
      const stored = JSON.parse(await fs.readFile(path.join(sim.dataDir, 'gateway-bindings.json'), 'utf8')) as { bindings: unknown[] };
      assert.equal(stored.bindings.length, 1);
      assert.deepEqual(
        (await sim.console.listSubDevices(GW1)).map((entry) => [entry.deviceName, entry.online]),
        [['sub1', false]],
      );
      assert.equal((await sim.console.getDevice(GW_PRODUCT, 'gw1')).deviceType, 'gateway');
      const gateway = await connect(GW1);
      assert.deepEqual(await online(gateway, SUB1), [['SUBPRODUCT/sub1', 0]]);
    });
  });

  describe('deleting devices on the console', () => {
    it('takes a deleted sub-device offline on its gateway, which is told change status 0 and stays connected', async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      const gateway = await connect(GW1);
      await gateway.subscribe(otaUpdateTopic(GW1), 1);
      await online(gateway, SUB1);
      await gateway.subscribe(otaUpdateTopic(SUB1), 1);
      const wentOffline = nextBrokerEvent('sub-device-state', (state) => state.deviceName === 'sub1' && !state.online);
      assert.deepEqual(await sim.console.deleteDevice(SUB_PRODUCT, 'sub1'), {
        productId: SUB_PRODUCT,
        deviceName: 'sub1',
        deleted: true,
        disconnected: true,
        gateway: GW1,
      });
      assert.deepEqual(await wentOffline, { gateway: GW1, ...SUB1, online: false });
      assert.deepEqual(await gateway.nextResult('change'), { type: 'change', payload: { status: 0, devices: [{ product_id: SUB_PRODUCT, device_name: 'sub1' }] } });
      assert.equal(await cloudMessageReaches(gateway, SUB1, '{"type":"after-delete"}'), false);
      assert.deepEqual(await sim.console.listSubDevices(GW1), []);
      assert.deepEqual(await online(gateway, SUB1), [['SUBPRODUCT/sub1', 802]]);
      await rejectsWith(sim.console.getDevice(SUB_PRODUCT, 'sub1'), 404, /does not exist/);
      assert.equal(sim.simulator.broker.isConnected(GW1), true);
    });

    it("ends a deleted gateway's connection and unbinds its sub-devices, which another gateway may then bind", async () => {
      await sim.console.bindSubDevice(GW1, SUB1);
      await sim.console.bindSubDevice(GW1, SUB2);
      const gateway = await connect(GW1);
      await online(gateway, SUB1);
      const closed = gateway.closed();
      assert.deepEqual(await sim.console.deleteDevice(GW_PRODUCT, 'gw1'), {
        productId: GW_PRODUCT,
        deviceName: 'gw1',
        deleted: true,
        disconnected: true,
        subDevices: [SUB1, SUB2],
      });
      await closed;
      assert.equal(sim.simulator.broker.isOnline(SUB1), false);
      assert.equal((await sim.console.getDevice(SUB_PRODUCT, 'sub1')).gateway, undefined);
      const again = await attemptConnection(sim.addresses.mqtts, { ...signConnection(GW1, secretOf(GW1)), ca: sim.caPem });
      assert.deepEqual([again.outcome, again.outcome === 'refused' ? again.returnCode : null], ['refused', 5]);
      await sim.console.bindSubDevice(GW2, SUB1);
      assert.deepEqual(await sim.console.deleteDevice(SUB_PRODUCT, 'sub2'), { productId: SUB_PRODUCT, deviceName: 'sub2', deleted: true, disconnected: false });
    });
  });

  describe('OTA for a sub-device', () => {
    let firmware: Buffer;

    beforeEach(async () => {
      firmware = randomBytes(32 * 1024);
      await sim.uploadFirmware(SUB_PRODUCT, '2.0.0', firmware);
      await sim.console.bindSubDevice(GW1, SUB1);
      await sim.console.bindSubDevice(GW1, SUB2);
    });

    async function sendReport(gateway: TestGateway, subDevice: DeviceIdentity, payload: object, qos: 0 | 1): Promise<void> {
      await gateway.publish(otaReportTopic(subDevice), JSON.stringify(payload), qos);
    }

    it('delivers the update to the gateway on the sub-device topic, re-pushes it after a report_version and shows the progress in the device view', async () => {
      const gateway = await connect(GW1);
      await online(gateway, SUB1);
      await gateway.subscribe(otaUpdateTopic(SUB1), 1);
      await sendReport(gateway, SUB1, buildReportVersion('1.0.0'), 1);
      assert.equal((await gateway.nextOn(otaUpdateTopic(SUB1))).type, 'report_version_rsp');

      const task = await sim.console.startUpdate({ productId: SUB_PRODUCT, version: '2.0.0', deviceNames: ['sub1'] });
      const command = await gateway.nextOn(otaUpdateTopic(SUB1));
      assert.deepEqual([command.type, command.version, command.file_size], ['update_firmware', '2.0.0', firmware.length]);
      assert.equal((await sim.console.getDevice(SUB_PRODUCT, 'sub1')).ota.state, 'delivered');

      await sendReport(gateway, SUB1, buildReportProgress('2.0.0', { state: 'downloading', percent: 40 }), 0);
      const downloading = await sim.console.waitForDevice(SUB_PRODUCT, 'sub1', (view) => view.ota.percent === 40);
      assert.deepEqual([downloading.ota.taskId, downloading.ota.state], [task.taskId, 'downloading']);

      // The sub-device restarted mid-download: the cloud pushes the pending command again.
      await sendReport(gateway, SUB1, buildReportVersion('1.0.0'), 1);
      assert.equal((await gateway.nextOn(otaUpdateTopic(SUB1))).type, 'report_version_rsp');
      assert.equal((await gateway.nextOn(otaUpdateTopic(SUB1))).type, 'update_firmware');

      await sendReport(gateway, SUB1, buildReportProgress('2.0.0', { state: 'burning' }), 1);
      await sendReport(gateway, SUB1, buildReportProgress('2.0.0', { state: 'done' }), 1);
      await sendReport(gateway, SUB1, buildReportVersion('2.0.0'), 1);
      const done = await sim.console.waitForDevice(SUB_PRODUCT, 'sub1', (view) => view.version === '2.0.0');
      assert.equal(done.ota.state, 'done');
      assert.ok(
        done.ota.history.every((entry) => entry.via?.deviceName === 'gw1'),
        'every report came through the gateway',
      );
      const finished = await sim.console.getTask(task.taskId);
      assert.deepEqual(
        finished.devices.map((status) => [status.deviceName, status.state, status.deliveries]),
        [['sub1', 'done', 2]],
      );
      assert.equal((await sim.console.getDevice(GW_PRODUCT, 'gw1')).ota.state, null, "the gateway's own OTA status is untouched");
    });

    it('keeps the task pending for an offline sub-device and delivers it after the gateway brings it online and it reports its version', async () => {
      const task = await sim.console.startUpdate({ productId: SUB_PRODUCT, version: '2.0.0', deviceNames: ['sub2'] });
      assert.equal(task.devices[0].state, 'pending');
      const gateway = await connect(GW1);
      await online(gateway, SUB2);
      await gateway.subscribe(otaUpdateTopic(SUB2), 1);
      await sendReport(gateway, SUB2, buildReportVersion('1.0.0'), 1);
      assert.equal((await gateway.nextOn(otaUpdateTopic(SUB2))).type, 'report_version_rsp');
      assert.equal((await gateway.nextOn(otaUpdateTopic(SUB2))).type, 'update_firmware');
      assert.equal((await sim.console.getDevice(SUB_PRODUCT, 'sub2')).ota.state, 'delivered');
    });
  });
});
