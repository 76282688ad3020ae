import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DeviceConnection, NotConnectedError, PublishTimeoutError, type ConnectionStatus, type DeviceConnectionOptions } from '../../lib/device-connection';
import { otaReportTopic, otaUpdateTopic } from '../../lib/ota-topics';
import { IotHubSimulator } from '../../simulator/iot-hub-simulator';
import type { DevicePublish } from '../../simulator/mqtt-broker';
import { waitForEvent } from '../support/node-red-test-runtime';

const PRODUCT_ID = 'CONNTEST01';

function waitForStatus(connection: DeviceConnection, predicate: (status: ConnectionStatus) => boolean, timeoutMs = 30_000): Promise<ConnectionStatus> {
  if (predicate(connection.status)) return Promise.resolve(connection.status);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      connection.off('status', onStatus);
      reject(new Error(`status never matched; last: ${JSON.stringify(connection.status)}`));
    }, timeoutMs);
    const onStatus = (status: ConnectionStatus) => {
      if (!predicate(status)) return;
      clearTimeout(timer);
      connection.off('status', onStatus);
      resolve(status);
    };
    connection.on('status', onStatus);
  });
}

function waitForPublish(sim: IotHubSimulator, topic: string, timeoutMs = 30_000): Promise<DevicePublish> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sim.broker.off('device-publish', onPublish);
      reject(new Error(`nothing published on ${topic}`));
    }, timeoutMs);
    const onPublish = (publish: DevicePublish) => {
      if (publish.topic !== topic) return;
      clearTimeout(timer);
      sim.broker.off('device-publish', onPublish);
      resolve(publish);
    };
    sim.broker.on('device-publish', onPublish);
  });
}

const WRONG_SECRET = Buffer.from('another secret!!').toString('base64');

/** Resolves with the delays of the next `count` reconnects the connection schedules. */
function nextReconnectDelays(connection: DeviceConnection, count: number, timeoutMs = 30_000): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const delays: number[] = [];
    const timer = setTimeout(() => {
      connection.off('reconnect-scheduled', onScheduled);
      reject(new Error(`only ${delays.length} of ${count} reconnects scheduled: ${delays.join(', ')}`));
    }, timeoutMs);
    const onScheduled = ({ delayMs }: { delayMs: number }) => {
      delays.push(delayMs);
      if (delays.length < count) return;
      clearTimeout(timer);
      connection.off('reconnect-scheduled', onScheduled);
      resolve(delays);
    };
    connection.on('reconnect-scheduled', onScheduled);
  });
}

describe('DeviceConnection against the stand-in', function () {
  let dataDir: string;
  let sim: IotHubSimulator;
  let caCertPem: string;
  const connections: DeviceConnection[] = [];
  let deviceCount = 0;

  before(async function () {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'conn-sim-'));
    sim = await IotHubSimulator.start({ dataDir });
    caCertPem = await fs.readFile(sim.addresses.caCertPath, 'utf8');
  });

  afterEach(async function () {
    for (const connection of connections.splice(0)) await connection.close();
  });

  after(async function () {
    await sim?.close();
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  async function newKeyDevice(): Promise<{ deviceName: string; deviceSecret: string }> {
    const deviceName = `dev${++deviceCount}`;
    const info = (await sim.console.createDevice(PRODUCT_ID, deviceName)) as { key_deviceinfo: { deviceSecret: string } };
    return { deviceName, deviceSecret: info.key_deviceinfo.deviceSecret };
  }

  function connect(options: Partial<DeviceConnectionOptions> & { deviceName: string }): DeviceConnection {
    const connection = new DeviceConnection({
      productId: PRODUCT_ID,
      authMode: 'key',
      region: 'china',
      transport: 'mqtts',
      host: '127.0.0.1',
      port: sim.addresses.ports.mqtts,
      caCertPem,
      reconnectMinMs: 100,
      reconnectMaxMs: 500,
      ...options,
    });
    connections.push(connection);
    return connection;
  }

  it('connects over TLS with key auth when it trusts the stand-in CA', async function () {
    const device = await newKeyDevice();
    const connection = connect(device);
    const seen: string[] = [];
    connection.on('status', (status) => seen.push(status.state));
    const connected = waitForEvent(sim.broker, 'device-connect');
    connection.register('user-1');
    await waitForStatus(connection, (status) => status.state === 'connected');
    assert.deepEqual(seen.slice(0, 2), ['connecting', 'connected']);
    const info = (await connected) as { clientId: string; username: string; transport: string };
    assert.equal(info.clientId, `${PRODUCT_ID}${device.deviceName}`);
    assert.equal(info.transport, 'mqtts');
    assert.match(info.username, new RegExp(`^${PRODUCT_ID}${device.deviceName};12010126;[A-Za-z0-9]{5};\\d{10}$`));
  });

  it('says "bad credentials" when the secret is wrong, and keeps retrying', async function () {
    const device = await newKeyDevice();
    const connection = connect({ deviceName: device.deviceName, deviceSecret: WRONG_SECRET });
    connection.register('user-1');
    const status = await waitForStatus(connection, (s) => s.state === 'disconnected');
    assert.equal(status.reason, 'bad credentials');
    await waitForStatus(connection, (s) => s.state === 'connecting');
  });

  it('says the secret is not base64 without attempting a connection', async function () {
    const device = await newKeyDevice();
    const refused: unknown[] = [];
    sim.broker.on('connect-refused', (event) => refused.push(event));
    const connection = connect({ deviceName: device.deviceName, deviceSecret: 'not base64 at all!' });
    connection.register('user-1');
    const status = await waitForStatus(connection, (s) => s.state === 'disconnected');
    assert.equal(status.reason, 'device secret is not valid base64');
    assert.equal(sim.broker.connectCount({ productId: PRODUCT_ID, deviceName: device.deviceName }), 0);
    assert.equal(refused.length, 0);
  });

  it('refuses the stand-in server when it trusts only the built-in Tencent CA', async function () {
    const device = await newKeyDevice();
    const connection = connect({ ...device, caCertPem: undefined });
    connection.register('user-1');
    const status = await waitForStatus(connection, (s) => s.state === 'disconnected');
    assert.equal(status.reason, 'TLS: server certificate not trusted');
    assert.equal(sim.broker.connectCount({ productId: PRODUCT_ID, deviceName: device.deviceName }), 0);
  });

  it('connects with a client certificate (cert auth)', async function () {
    const deviceName = `cert${++deviceCount}`;
    const info = (await sim.console.createDevice(PRODUCT_ID, deviceName, 'cert')) as {
      cert_deviceinfo: { devCertPem: string; devPrivateKeyPem: string };
    };
    const connection = connect({
      deviceName,
      authMode: 'cert',
      clientCertPem: info.cert_deviceinfo.devCertPem,
      clientKeyPem: info.cert_deviceinfo.devPrivateKeyPem,
    });
    connection.register('user-1');
    await waitForStatus(connection, (s) => s.state === 'connected');
    assert.equal(sim.broker.connectCount({ productId: PRODUCT_ID, deviceName }), 1);
  });

  it('connects over WebSocket with TLS (wss) on /mqtt', async function () {
    const device = await newKeyDevice();
    const connection = connect({ ...device, transport: 'wss', port: sim.addresses.ports.wss });
    assert.equal(connection.endpoint.url, `wss://127.0.0.1:${sim.addresses.ports.wss}/mqtt`);
    const connected = waitForEvent<{ transport: string }>(sim.broker, 'device-connect');
    connection.register('user-1');
    await waitForStatus(connection, (s) => s.state === 'connected');
    assert.equal((await connected).transport, 'wss');
  });

  it('opens one connection for several users and closes it when the last one leaves', async function () {
    const device = await newKeyDevice();
    const connection = connect(device);
    connection.register('a');
    connection.register('b');
    connection.register('c');
    await waitForStatus(connection, (s) => s.state === 'connected');
    assert.equal(sim.broker.connectCount({ productId: PRODUCT_ID, deviceName: device.deviceName }), 1);
    await connection.deregister('a');
    await connection.deregister('b');
    assert.equal(connection.status.state, 'connected');
    const gone = waitForEvent(sim.broker, 'device-disconnect');
    await connection.deregister('c');
    await gone;
    assert.equal(connection.status.state, 'idle');
    assert.equal(sim.broker.isOnline({ productId: PRODUCT_ID, deviceName: device.deviceName }), false);
  });

  it('fails a QoS 0 publish at once while disconnected', async function () {
    const device = await newKeyDevice();
    const connection = connect({ ...device, port: 1 });
    connection.register('user-1');
    await assert.rejects(connection.publish(otaReportTopic({ productId: PRODUCT_ID, ...device }), '{}', { qos: 0 }), NotConnectedError);
  });

  it('fails a queued QoS 1 publish with a clear error when its timeout passes', async function () {
    const device = await newKeyDevice();
    const connection = connect({ ...device, port: 1 });
    connection.register('user-1');
    await waitForStatus(connection, (s) => s.state === 'disconnected');
    await assert.rejects(
      connection.publish(otaReportTopic({ productId: PRODUCT_ID, ...device }), '{}', { qos: 1, timeoutMs: 300 }),
      (error: Error) => error instanceof PublishTimeoutError && /not acknowledged within/.test(error.message) && /connection refused/.test(error.message),
    );
  });

  it('reconnects after the broker restarts, re-signs, restores its subscription and delivers a queued QoS 1 publish', async function () {
    const device = await newKeyDevice();
    const identity = { productId: PRODUCT_ID, deviceName: device.deviceName };
    const connection = connect(device);
    const received: string[] = [];
    connection.subscribe(otaUpdateTopic(identity), 1, (payload) => received.push(payload.toString()));
    const usernames: string[] = [];
    const onConnect = (info: { deviceName: string; username: string }) => {
      if (info.deviceName === device.deviceName) usernames.push(info.username);
    };
    sim.broker.on('device-connect', onConnect);
    connection.register('user-1');
    await waitForStatus(connection, (s) => s.state === 'connected');

    const ports = sim.addresses.ports;
    await sim.close();
    await waitForStatus(connection, (s) => s.state === 'disconnected');
    const queued = connection.publish(otaReportTopic(identity), '{"type":"report_version","report":{"version":"0.1.0"}}', { qos: 1 });

    sim = await IotHubSimulator.start({ dataDir, mqttPort: ports.mqtt, mqttsPort: ports.mqtts, wssPort: ports.wss, httpPort: ports.http, httpsPort: ports.https });
    sim.broker.on('device-connect', onConnect);
    const delivered = waitForPublish(sim, otaReportTopic(identity));
    await waitForEvent(connection, 'connect');
    const publish = await delivered;
    await queued;
    assert.equal(publish.qos, 1);
    assert.equal(JSON.parse(publish.payload.toString()).report.version, '0.1.0');

    await sim.broker.publishToDevice(identity, otaUpdateTopic(identity), '{"type":"ping"}', 0);
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (received.includes('{"type":"ping"}')) {
          clearInterval(check);
          resolve();
        }
      }, 20);
    });
    // The cloud's answer to the queued report arrived on the restored subscription too.
    assert.ok(received.some((message) => JSON.parse(message).type === 'report_version_rsp'));
    assert.equal(usernames.length, 2);
    assert.notEqual(usernames[0], usernames[1], 'a fresh username is signed for the reconnect');
  });

  describe('reconnecting with jitter', function () {
    async function restartSimulator(): Promise<void> {
      const ports = sim.addresses.ports;
      await sim.close();
      sim = await IotHubSimulator.start({ dataDir, mqttPort: ports.mqtt, mqttsPort: ports.mqtts, wssPort: ports.wss, httpPort: ports.http, httpsPort: ports.https });
    }

    it('waits half the window when the random source gives 0 and nearly all of it at 0.999, the window doubling up to reconnectMaxMs', async function () {
      const expected: [number, number[]][] = [
        [0, [20, 40, 80, 160, 160, 160]],
        [0.999, [39, 79, 159, 319, 319, 319]],
      ];
      for (const [random, delays] of expected) {
        const device = await newKeyDevice();
        // The broker refuses every attempt (bad credentials), so each one fails and widens the window.
        const connection = connect({ deviceName: device.deviceName, deviceSecret: WRONG_SECRET, reconnectMinMs: 40, reconnectMaxMs: 320, random: () => random });
        const scheduled = nextReconnectDelays(connection, delays.length);
        connection.register('user-1');
        assert.deepEqual(await scheduled, delays, `random() = ${random}`);
        assert.equal(connection.status.reason, 'bad credentials');
        await connection.close();
      }
    });

    it('spreads devices that lost the broker at once over the window instead of bringing them back together, and starts the window over once connected', async function () {
      const minMs = 2000;
      const devices = await Promise.all(Array.from({ length: 20 }, () => newKeyDevice()));
      const fleet = devices.map((device) => connect({ ...device, reconnectMinMs: minMs, reconnectMaxMs: 4 * minMs }));
      for (const connection of fleet) connection.register('user-1');
      await Promise.all(fleet.map((connection) => waitForStatus(connection, (status) => status.state === 'connected')));

      for (let loss = 1; loss <= 2; loss++) {
        const firstDelays = Promise.all(fleet.map((connection) => nextReconnectDelays(connection, 1).then(([delay]) => delay)));
        await restartSimulator();
        const delays = await firstDelays;
        // A connection that met the broker still restarting doubled its window since; the first delay after each loss is drawn from reconnectMinMs again.
        for (const delay of delays) assert.ok(delay >= minMs / 2 && delay < minMs, `loss ${loss}: a first delay of ${delay} ms`);
        assert.ok(new Set(delays).size >= 15, `loss ${loss}: only ${new Set(delays).size} different delays among 20: ${delays.join(', ')}`);
        assert.ok(Math.max(...delays) - Math.min(...delays) >= minMs / 8, `loss ${loss}: the delays span only ${Math.max(...delays) - Math.min(...delays)} ms`);
        await Promise.all(fleet.map((connection) => waitForStatus(connection, (status) => status.state === 'connected')));
        for (const device of devices) assert.ok(sim.broker.isConnected({ productId: PRODUCT_ID, deviceName: device.deviceName }));
      }
    });
  });
});
