/**
 * The gateway side of PROTOCOL.md §6 against a plain MQTT broker on loopback and a scripted cloud:
 * the order in which a sub-device's topics are used (never before its online is answered), the
 * bind when the cloud says it is not bound, the replies matched to their requests, and the
 * cloud's change messages.
 */
import { strict as assert } from 'assert';
import { once } from 'events';
import * as net from 'net';
import mqtt, { type MqttClient } from 'mqtt';
import { DeviceConnection } from '../../lib/device-connection';
import { buildChange, buildSubDeviceResults, gatewayOperationResultTopic, parseGatewayRequest, signBind, type GatewayRequest } from '../../lib/gateway-messages';
import { OtaDevice } from '../../lib/ota-device';
import { otaReportTopic, otaUpdateTopic, type DeviceIdentity } from '../../lib/ota-topics';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const createAedes = require('aedes') as () => {
  handle: (stream: net.Socket) => void;
  on(event: 'subscribe', listener: (subscriptions: { topic: string }[], client: { id: string } | null) => void): void;
  on(event: 'publish', listener: (packet: { topic: string; payload: Buffer }, client: { id: string } | null) => void): void;
  close(callback: () => void): void;
  clients: Record<string, { close(): void } | undefined>;
};

const GATEWAY: DeviceIdentity = { productId: 'GWPRODUCT', deviceName: 'gw1' };
const SENSOR: DeviceIdentity = { productId: 'SUBPRODUCT', deviceName: 'sensor1' };
const SENSOR_SECRET = 'c2Vuc29yIHNlY3JldA==';

describe('Gateway and its sub-devices', function () {
  let server: net.Server;
  let broker: ReturnType<typeof createAedes>;
  let port: number;
  let cloud: MqttClient;
  /** What happened on the broker, in order: "subscribe <topic>" and "publish <topic> <type>". */
  let events: string[];
  /** How the scripted cloud answers online for the sensor. */
  let bound: boolean;
  let requests: GatewayRequest[];
  let stateDir: string;
  let gateway: OtaDevice;

  beforeEach(async function () {
    events = [];
    requests = [];
    bound = true;
    broker = createAedes();
    server = net.createServer(broker.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    port = (server.address() as net.AddressInfo).port;
    broker.on('subscribe', (subscriptions, client) => {
      if (client?.id.startsWith(GATEWAY.productId)) for (const { topic } of subscriptions) events.push(`subscribe ${topic}`);
    });
    broker.on('publish', (packet, client) => {
      if (!client?.id.startsWith(GATEWAY.productId)) return;
      const type = (JSON.parse(packet.payload.toString()) as { type?: string }).type;
      events.push(`publish ${packet.topic} ${type}`);
    });
    cloud = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: 'cloud' });
    await new Promise<void>((resolve) => cloud.once('connect', () => resolve()));
    await cloud.subscribeAsync('$gateway/operation/+/+');
    cloud.on('message', (_topic, payload) => {
      const parsed = parseGatewayRequest(payload);
      if (!parsed.ok) return;
      const request = parsed.value;
      requests.push(request);
      const answer = (reply: object) => void cloud.publishAsync(gatewayOperationResultTopic(GATEWAY), JSON.stringify(reply));
      if (request.type === 'online' || request.type === 'offline') {
        answer(
          buildSubDeviceResults(
            request.type,
            request.devices.map((device) => ({ ...device, result: bound ? 0 : -1 })),
          ),
        );
      } else if (request.type === 'bind') {
        const entry = request.devices[0];
        const good = entry.signature === signBind(entry, SENSOR_SECRET, entry.random, entry.timestamp, 'hmacsha256');
        if (good) bound = true;
        answer(buildSubDeviceResults('bind', [{ ...entry, result: good ? 0 : 803 }]));
      }
    });
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'gateway-lib-'));
    gateway = new OtaDevice({
      ...GATEWAY,
      authMode: 'key',
      deviceSecret: Buffer.from('gateway secret').toString('base64'),
      region: 'china',
      transport: 'mqtt',
      host: '127.0.0.1',
      port,
      stateDir: path.join(stateDir, 'gateway'),
      runningVersion: '1.0.0',
    });
  });

  afterEach(async function () {
    await gateway.close();
    await cloud.endAsync();
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  function sensorOf(deviceSecret?: string): OtaDevice {
    return new OtaDevice({ gateway, ...SENSOR, stateDir: path.join(stateDir, 'sensor1'), runningVersion: '0.1.0', deviceSecret });
  }

  async function until(condition: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`${what} never happened; events: ${JSON.stringify(events)}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  it("uses a sub-device's topics only once its online is answered, then reports its version on its own topic", async function () {
    const sensor = sensorOf();
    sensor.onConnectReport(() => undefined);
    sensor.register('node1');
    await until(() => events.includes(`publish ${otaReportTopic(SENSOR)} report_version`), 'the version report');
    const online = events.indexOf(`publish $gateway/operation/${GATEWAY.productId}/${GATEWAY.deviceName} online`);
    const subscribed = events.indexOf(`subscribe ${otaUpdateTopic(SENSOR)}`);
    const report = events.indexOf(`publish ${otaReportTopic(SENSOR)} report_version`);
    assert.ok(online >= 0 && online < subscribed && subscribed < report, JSON.stringify(events));
    assert.ok(events.indexOf(`subscribe ${gatewayOperationResultTopic(GATEWAY)}`) < online, 'listens for the reply before it asks');
    assert.equal(sensor.link?.status.state, 'online');
    await sensor.deregister('node1');
    await until(() => events.includes(`publish $gateway/operation/${GATEWAY.productId}/${GATEWAY.deviceName} offline`), 'the offline');
    await sensor.close();
  });

  it('holds a report made while the sub-device is offline until it is online', async function () {
    bound = false;
    const sensor = sensorOf();
    sensor.register('node1');
    await until(() => sensor.link?.status.state === 'refused', 'the refusal');
    assert.equal(sensor.link?.status.reason, 'gateway not bound to this sub-device (-1)');
    const held = sensor.channel.reportProgress('2.0.0', { state: 'burning' }, { timeoutMs: 0 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(!events.some((event) => event.startsWith(`publish ${otaReportTopic(SENSOR)}`)), 'nothing on the sub-device topic while offline');
    bound = true;
    cloud.publish(gatewayOperationResultTopic(GATEWAY), JSON.stringify(buildChange(1, [SENSOR])));
    await held;
    assert.ok(events.includes(`publish ${otaReportTopic(SENSOR)} report_progress`));
    await sensor.deregister('node1');
    await sensor.close();
  });

  it('binds a sub-device the cloud says is not bound when its secret is known, then brings it online', async function () {
    bound = false;
    const sensor = sensorOf(SENSOR_SECRET);
    sensor.register('node1');
    await until(() => sensor.link?.status.state === 'online', 'online');
    assert.deepEqual(
      requests.map((request) => request.type),
      ['online', 'bind', 'online'],
    );
    await sensor.deregister('node1');
    await sensor.close();
  });

  it('says a bad bind signature was refused with 803', async function () {
    bound = false;
    const sensor = sensorOf(Buffer.from('wrong').toString('base64'));
    sensor.register('node1');
    await until(() => sensor.link?.status.state === 'refused', 'the refusal');
    assert.equal(sensor.link?.status.reason, 'signature check failed (803)');
    await sensor.deregister('node1');
    await sensor.close();
  });

  it('takes a sub-device offline when the cloud unbinds it, and tells whoever listens', async function () {
    const sensor = sensorOf();
    sensor.register('node1');
    await until(() => sensor.link?.status.state === 'online', 'online');
    const changed = once(gateway.gateway, 'cloud-message');
    cloud.publish(gatewayOperationResultTopic(GATEWAY), JSON.stringify(buildChange(0, [SENSOR])));
    const [message] = await changed;
    assert.deepEqual(message, { type: 'change', status: 0, devices: [SENSOR] });
    assert.equal(sensor.link?.status.state, 'refused');
    await until(() => events.includes(`publish $gateway/operation/${GATEWAY.productId}/${GATEWAY.deviceName} change`), 'the answer to change');
    await sensor.deregister('node1');
    await sensor.close();
  });

  it('brings its sub-devices online again after the connection drops and comes back, before it uses their topics', async function () {
    const sensor = sensorOf();
    sensor.register('node1');
    await until(() => sensor.link?.status.state === 'online', 'online');
    events.length = 0;
    broker.clients[`${GATEWAY.productId}${GATEWAY.deviceName}`]?.close();
    await until(() => sensor.link?.status.state === 'offline', 'offline with the connection');
    await until(() => sensor.link?.status.state === 'online', 'online again after the reconnect');
    await until(() => events.includes(`subscribe ${otaUpdateTopic(SENSOR)}`), "the sub-device's subscription");
    const online = events.indexOf(`publish $gateway/operation/${GATEWAY.productId}/${GATEWAY.deviceName} online`);
    assert.ok(online >= 0 && online < events.indexOf(`subscribe ${otaUpdateTopic(SENSOR)}`), JSON.stringify(events));
    await sensor.deregister('node1');
    await sensor.close();
  });

  it('is one connection for the gateway and all its sub-devices', async function () {
    const connection: DeviceConnection = gateway.connection;
    const sensor = sensorOf();
    assert.equal(sensor.connection, connection);
    assert.equal(sensor.downloadSlots, gateway.downloadSlots);
    await sensor.close();
  });
});
