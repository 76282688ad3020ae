import { strict as assert } from 'assert';
import { createHash, randomBytes } from 'crypto';
import type { EventEmitter } from 'events';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DeviceConnection } from '../../lib/device-connection';
import { OtaChannel, ReportVersionTimeoutError } from '../../lib/ota-channel';
import { parseUpdateFirmwareCommand, type ReportVersionResponse } from '../../lib/ota-messages';
import type { DeviceIdentity } from '../../lib/ota-topics';
import { CertificateAuthority } from '../../simulator/certificate-authority';
import { DeviceRegistry } from '../../simulator/device-registry';
import { SimulatedMqttBroker, type DevicePublish, type DeviceSubscribe } from '../../simulator/mqtt-broker';
import { startSimulator, type SimulatorFixture } from '../support/simulator-fixture';

const PRODUCT_ID = 'OTACHAN001';

/** The next `event` for which `matches` holds; rejects after timeoutMs so that a missing event fails with a reason instead of hanging. */
function nextEvent<T>(emitter: EventEmitter, event: string, matches: (value: T) => boolean = () => true, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`no matching ${event} within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (value: T) => {
      if (!matches(value)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(value);
    };
    emitter.on(event, listener);
  });
}

/** The first `count` values of `event`, in order. */
function firstEvents<T>(emitter: EventEmitter, event: string, count: number, matches: (value: T) => boolean = () => true, timeoutMs = 30_000): Promise<T[]> {
  const values: T[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`only ${values.length} of ${count} ${event} within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (value: T) => {
      if (!matches(value)) return;
      values.push(value);
      if (values.length < count) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(values);
    };
    emitter.on(event, listener);
  });
}

/** What a test sees of a device's publishes: topic, QoS and the payload parsed as JSON. */
function onTheWire(publish: DevicePublish): { topic: string; qos: 0 | 1; message: unknown } {
  return { topic: publish.topic, qos: publish.qos, message: JSON.parse(publish.payload.toString('utf8')) };
}

/** Whether a promise has settled by the time the caller looks (after the events it awaited were handled). */
function track<T>(promise: Promise<T>): { settled: () => boolean } {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  return { settled: () => settled };
}

interface ConnectedChannel {
  identity: DeviceIdentity;
  connection: DeviceConnection;
  channel: OtaChannel;
}

/**
 * Opens a DeviceConnection over TLS for the device, puts an OtaChannel on it and resolves once the
 * device is connected with its subscription restored.
 */
async function openChannel(
  options: { deviceName: string; deviceSecret: string; port: number; caCertPem: string },
  opened: ConnectedChannel[],
): Promise<ConnectedChannel> {
  const identity = { productId: PRODUCT_ID, deviceName: options.deviceName };
  const connection = new DeviceConnection({
    ...identity,
    authMode: 'key',
    deviceSecret: options.deviceSecret,
    region: 'china',
    transport: 'mqtts',
    host: '127.0.0.1',
    port: options.port,
    caCertPem: options.caCertPem,
    reconnectMinMs: 100,
    reconnectMaxMs: 500,
  });
  const channel = new OtaChannel(connection);
  const entry = { identity, connection, channel };
  opened.push(entry);
  const connected = nextEvent(connection as unknown as EventEmitter, 'connect');
  connection.register('ota-channel-test');
  await connected;
  return entry;
}

async function closeChannels(opened: ConnectedChannel[]): Promise<void> {
  for (const { channel, connection } of opened.splice(0)) {
    channel.close();
    await connection.close();
  }
}

describe('OtaChannel', function () {
  describe('against the stand-in', function () {
    let sim: SimulatorFixture;
    let broker: SimulatedMqttBroker;
    const opened: ConnectedChannel[] = [];
    let deviceCount = 0;

    before(async function () {
      sim = await startSimulator();
      broker = sim.simulator.broker;
    });

    afterEach(async function () {
      await closeChannels(opened);
    });

    after(async function () {
      await sim?.close();
    });

    async function newChannel(): Promise<ConnectedChannel> {
      const deviceName = `dev${++deviceCount}`;
      const created = await sim.createDevice(PRODUCT_ID, deviceName);
      return openChannel({ deviceName, deviceSecret: created.deviceSecret ?? '', port: sim.addresses.ports.mqtts, caCertPem: sim.caPem }, opened);
    }

    const fromDevice = (deviceName: string) => (publish: DevicePublish) => publish.deviceName === deviceName;

    it('subscribes to $ota/update/<productId>/<deviceName> with QoS 1, and to nothing else', async function () {
      const deviceName = `dev${++deviceCount}`;
      const created = await sim.createDevice(PRODUCT_ID, deviceName);
      const subscriptions: DeviceSubscribe[] = [];
      const onSubscribe = (subscription: DeviceSubscribe) => {
        if (subscription.deviceName === deviceName) subscriptions.push(subscription);
      };
      broker.on('device-subscribe', onSubscribe);
      try {
        await openChannel({ deviceName, deviceSecret: created.deviceSecret ?? '', port: sim.addresses.ports.mqtts, caCertPem: sim.caPem }, opened);
      } finally {
        broker.off('device-subscribe', onSubscribe);
      }
      // The broker tells of the SUBSCRIBE as it answers it, before the device can be connected.
      assert.deepEqual(subscriptions, [{ productId: 'OTACHAN001', deviceName, topic: `$ota/update/OTACHAN001/${deviceName}`, grantedQos: 1 }]);
    });

    it('publishes report_version on $ota/report/<productId>/<deviceName> with QoS 1 and resolves with the stand-in reply', async function () {
      const { identity, channel } = await newChannel();
      const published = nextEvent<DevicePublish>(broker, 'device-publish', fromDevice(identity.deviceName));
      const announced = nextEvent<ReportVersionResponse>(channel, 'version-response');
      const reply = await channel.reportVersion('1.0.0');
      assert.deepEqual(onTheWire(await published), {
        topic: `$ota/report/OTACHAN001/${identity.deviceName}`,
        qos: 1,
        message: { type: 'report_version', report: { version: '1.0.0' } },
      });
      assert.deepEqual(reply, { type: 'report_version_rsp', result_code: 0, result_msg: 'success', version: '1.0.0' });
      assert.deepEqual(await announced, reply, 'the reply is announced as version-response too');
      assert.equal((await sim.console.getDevice(PRODUCT_ID, identity.deviceName)).version, '1.0.0', 'the console shows the reported version');
    });

    it('sends downloading with QoS 0 and burning, done and fail with QoS 1, as the protocol writes them', async function () {
      const { identity, channel } = await newChannel();
      const published = firstEvents<DevicePublish>(broker, 'device-publish', 4, fromDevice(identity.deviceName));
      await channel.reportProgress('2.0.0', { state: 'downloading', percent: 13.7 });
      await channel.reportProgress('2.0.0', { state: 'burning' });
      await channel.reportProgress('2.0.0', { state: 'done' });
      await channel.reportProgress('2.0.0', { state: 'fail', resultCode: -4, resultMessage: 'MD5 mismatch' });
      const topic = `$ota/report/OTACHAN001/${identity.deviceName}`;
      assert.deepEqual((await published).map(onTheWire), [
        {
          topic,
          qos: 0,
          message: { type: 'report_progress', report: { progress: { state: 'downloading', percent: '13', result_code: '0', result_msg: '' }, version: '2.0.0' } },
        },
        { topic, qos: 1, message: { type: 'report_progress', report: { progress: { state: 'burning', result_code: '0', result_msg: '' }, version: '2.0.0' } } },
        { topic, qos: 1, message: { type: 'report_progress', report: { progress: { state: 'done', result_code: '0', result_msg: '' }, version: '2.0.0' } } },
        {
          topic,
          qos: 1,
          message: { type: 'report_progress', report: { progress: { state: 'fail', result_code: '-4', result_msg: 'MD5 mismatch' }, version: '2.0.0' } },
        },
      ]);
    });

    it("hands the stand-in's update_firmware for a console update out as 'update-command', and it parses", async function () {
      const { identity, channel } = await newChannel();
      const bytes = randomBytes(2048);
      await sim.uploadFirmware(PRODUCT_ID, '3.0.0', bytes);
      const command = nextEvent<Buffer>(channel, 'update-command');
      await sim.console.startUpdate({ productId: PRODUCT_ID, version: '3.0.0', deviceNames: [identity.deviceName] });
      const parsed = parseUpdateFirmwareCommand(await command);
      assert.ok(parsed.ok, 'the command is a valid update_firmware');
      assert.equal(parsed.value.version, '3.0.0');
      assert.equal(parsed.value.md5sum, createHash('md5').update(bytes).digest('hex'));
      assert.equal(parsed.value.file_size, 2048);
      assert.match(parsed.value.url, /^https:\/\/127\.0\.0\.1:\d+\//);
    });

    for (const qos of [0, 1] as const) {
      it(`hands an update_firmware the cloud publishes with QoS ${qos} out as 'update-command', byte for byte`, async function () {
        const { identity, channel } = await newChannel();
        const payload =
          '{"file_size":511774,"md5sum":"b550fe42dec6fe0bc2d66f23e8074a5d","type":"update_firmware",' +
          '"url":"https://ota-1254092559.cos.ap-guangzhou.myqcloud.com/100008273549_OTACHAN001_0.0.2?sign=abc","version":"0.0.2",' +
          '"user_defined":"{\\"time\\":\\"2024-05-16\\"}"}';
        const command = nextEvent<Buffer>(channel, 'update-command');
        await broker.publishToDevice(identity, `$ota/update/OTACHAN001/${identity.deviceName}`, payload, qos);
        assert.equal((await command).toString('utf8'), payload);
      });
    }

    it("hands an update_firmware out as 'update-command' even when its fields are wrong: its user parses it strictly", async function () {
      const { identity, channel } = await newChannel();
      const payload = '{"type":"update_firmware","version":"0.0.2","url":"ftp://example.com/fw","md5sum":"nope","file_size":0}';
      const command = nextEvent<Buffer>(channel, 'update-command');
      const unknown: unknown[] = [];
      channel.on('unknown-message', (message) => unknown.push(message));
      await broker.publishToDevice(identity, `$ota/update/OTACHAN001/${identity.deviceName}`, payload);
      assert.equal((await command).toString('utf8'), payload);
      assert.deepEqual(unknown, []);
    });

    it("emits 'unknown-message' with a reason for each message it cannot use, in the order they came", async function () {
      const { identity, channel } = await newChannel();
      const sent = [
        ['{"type":"ping"}', 'unknown type "ping"'],
        ['not json at all', 'not an OTA message'],
        ['{"version":"1.0.0","result_code":0}', 'not an OTA message'],
        ['["update_firmware"]', 'not an OTA message'],
        ['{"type":"report_version_rsp","result_code":"ok","version":"1.0.0"}', 'report_version_rsp: result_code must be an integer'],
      ];
      const received: string[][] = [];
      const all = new Promise<void>((resolve) => {
        channel.on('unknown-message', (payload, reason) => {
          received.push([payload.toString('utf8'), reason]);
          if (received.length === sent.length) resolve();
        });
      });
      const commands: Buffer[] = [];
      channel.on('update-command', (payload) => commands.push(payload));
      for (const [payload] of sent) await broker.publishToDevice(identity, `$ota/update/OTACHAN001/${identity.deviceName}`, payload);
      await all;
      assert.deepEqual(received, sent);
      assert.deepEqual(commands, []);
    });
  });

  describe('with the cloud replies sent by the test', function () {
    // The stand-in's broker without its cloud OTA service: nothing answers a report unless the test does.
    let dataDir: string;
    let certificateAuthority: CertificateAuthority;
    let registry: DeviceRegistry;
    let broker: SimulatedMqttBroker;
    let mqttsPort: number;
    const opened: ConnectedChannel[] = [];
    let deviceCount = 0;

    before(async function () {
      dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ota-channel-'));
      certificateAuthority = await CertificateAuthority.loadOrCreate(dataDir);
      registry = await DeviceRegistry.open(dataDir);
      broker = new SimulatedMqttBroker({ registry, certificateAuthority });
      mqttsPort = (await broker.listen({ mqttPort: 0, mqttsPort: 0, wssPort: 0 })).mqtts.port;
    });

    afterEach(async function () {
      await closeChannels(opened);
    });

    after(async function () {
      await broker?.close();
      await fs.rm(dataDir, { recursive: true, force: true });
    });

    async function newChannel(): Promise<ConnectedChannel> {
      const { device } = await registry.create(PRODUCT_ID, `quiet${++deviceCount}`, 'key', certificateAuthority);
      return openChannel({ deviceName: device.deviceName, deviceSecret: device.deviceSecret, port: mqttsPort, caCertPem: certificateAuthority.caCertPem }, opened);
    }

    const updateTopic = (identity: DeviceIdentity) => `$ota/update/${identity.productId}/${identity.deviceName}`;
    const reply = (version: string, resultCode: number | string = 0, resultMessage = 'success') =>
      JSON.stringify({ result_code: resultCode, result_msg: resultMessage, type: 'report_version_rsp', version });

    /** Resolves once the device has handled everything the cloud sent before (messages of one connection arrive in order). */
    async function drain(connected: ConnectedChannel): Promise<void> {
      const marker = `{"type":"marker-${randomBytes(4).toString('hex')}"}`;
      const seen = nextEvent<Buffer>(connected.channel as unknown as EventEmitter, 'unknown-message', (payload) => payload.toString('utf8') === marker);
      await broker.publishToDevice(connected.identity, updateTopic(connected.identity), marker);
      await seen;
    }

    /**
     * Resolves once every QoS 1 publish the device made before has been acknowledged: the broker
     * acknowledges in order, so the PUBACK of one more publish comes after theirs.
     */
    async function acknowledgedSoFar(connected: ConnectedChannel): Promise<void> {
      const { productId, deviceName } = connected.identity;
      await connected.connection.publish(`${productId}/${deviceName}/data`, '{}', { qos: 1 });
    }

    it('does not take a report_version_rsp for another version as the reply, and resolves with the one for the reported version', async function () {
      const connected = await newChannel();
      const { identity, channel } = connected;
      const responses: ReportVersionResponse[] = [];
      channel.on('version-response', (response) => responses.push(response));
      const pending = channel.reportVersion('2.0.0', 60_000);
      const state = track(pending);
      // From here on only the reply can settle it.
      await acknowledgedSoFar(connected);

      await broker.publishToDevice(identity, updateTopic(identity), reply('1.0.0'));
      await drain(connected);
      assert.equal(state.settled(), false, 'a reply for 1.0.0 does not answer the report of 2.0.0');
      assert.deepEqual(
        responses.map((response) => response.version),
        ['1.0.0'],
        'the other reply is still announced as version-response',
      );

      await broker.publishToDevice(identity, updateTopic(identity), reply('2.0.0'));
      assert.deepEqual(await pending, { type: 'report_version_rsp', result_code: 0, result_msg: 'success', version: '2.0.0' });
    });

    it('answers two pending reports each with the reply for its own version, whatever the order of the replies', async function () {
      const { identity, channel } = await newChannel();
      const reported = firstEvents<DevicePublish>(broker, 'device-publish', 2, (publish) => publish.deviceName === identity.deviceName);
      const first = channel.reportVersion('1.0.0', 60_000);
      const second = channel.reportVersion('2.0.0', 60_000);
      await reported;
      await broker.publishToDevice(identity, updateTopic(identity), reply('2.0.0', 0, 'second'));
      await broker.publishToDevice(identity, updateTopic(identity), reply('1.0.0', 0, 'first'));
      assert.equal((await first).result_msg, 'first');
      assert.equal((await second).result_msg, 'second');
    });

    it('resolves with a refusing reply as the cloud sent it, result_code as a number even when it came as a string', async function () {
      const { identity, channel } = await newChannel();
      const reported = nextEvent<DevicePublish>(broker, 'device-publish', (publish) => publish.deviceName === identity.deviceName);
      const pending = channel.reportVersion('1.0.0', 60_000);
      await reported;
      await broker.publishToDevice(identity, updateTopic(identity), reply('1.0.0', '-1', 'version refused'));
      assert.deepEqual(await pending, { type: 'report_version_rsp', result_code: -1, result_msg: 'version refused', version: '1.0.0' });
    });

    it('takes a report_version_rsp without a version for the reply', async function () {
      const { identity, channel } = await newChannel();
      const reported = nextEvent<DevicePublish>(broker, 'device-publish', (publish) => publish.deviceName === identity.deviceName);
      const pending = channel.reportVersion('1.0.0', 60_000);
      await reported;
      await broker.publishToDevice(identity, updateTopic(identity), '{"type":"report_version_rsp","result_code":0,"result_msg":"success"}');
      assert.deepEqual(await pending, { type: 'report_version_rsp', result_code: 0, result_msg: 'success', version: '' });
    });

    it('fails with ReportVersionTimeoutError when no reply comes, after the report reached the cloud, and stops waiting', async function () {
      const { identity, channel } = await newChannel();
      const published = nextEvent<DevicePublish>(broker, 'device-publish', (publish) => publish.deviceName === identity.deviceName);
      // Long enough for the PUBACK on a busy machine: only the reply is missing.
      await assert.rejects(
        channel.reportVersion('1.0.0', 3000),
        (error: Error) => error instanceof ReportVersionTimeoutError && error.message === 'no report_version_rsp for version 1.0.0 within 3 s',
      );
      assert.deepEqual(onTheWire(await published), {
        topic: `$ota/report/OTACHAN001/${identity.deviceName}`,
        qos: 1,
        message: { type: 'report_version', report: { version: '1.0.0' } },
      });
      assert.equal(channel.listenerCount('version-response'), 0, 'nothing waits for the reply any more');
      // A reply that comes late is only announced.
      const late = nextEvent<ReportVersionResponse>(channel, 'version-response');
      await broker.publishToDevice(identity, updateTopic(identity), reply('1.0.0'));
      assert.equal((await late).version, '1.0.0');
    });

    it('fails when its report cannot be delivered because the connection closes, and stops waiting for the reply', async function () {
      const { connection, channel } = await newChannel();
      const pending = channel.reportVersion('1.0.0', 60_000);
      const closed = connection.close();
      await assert.rejects(pending, /closed before \$ota\/report\/OTACHAN001\/quiet\d+ was acknowledged/);
      await closed;
      assert.equal(channel.listenerCount('version-response'), 0);
    });

    it('stops handing out messages once closed, while other users of the connection still get them', async function () {
      const { identity, connection, channel } = await newChannel();
      const command = '{"type":"update_firmware","version":"0.0.2","url":"https://example.com/fw","md5sum":"b550fe42dec6fe0bc2d66f23e8074a5d","file_size":1}';
      const other: string[] = [];
      const delivered = new Promise<void>((resolve) => {
        connection.subscribe(updateTopic(identity), 1, (payload) => {
          other.push(payload.toString('utf8'));
          if (payload.toString('utf8') === command) resolve();
        });
      });
      channel.close();
      const handedOut: unknown[] = [];
      for (const event of ['update-command', 'version-response', 'unknown-message'] as const) {
        (channel as unknown as EventEmitter).on(event, (...args: unknown[]) => handedOut.push([event, ...args]));
      }

      await broker.publishToDevice(identity, updateTopic(identity), reply('1.0.0'));
      await broker.publishToDevice(identity, updateTopic(identity), '{"type":"ping"}');
      await broker.publishToDevice(identity, updateTopic(identity), command);
      await delivered;
      assert.deepEqual(other, [reply('1.0.0'), '{"type":"ping"}', command]);
      assert.deepEqual(handedOut, []);
    });
  });
});
