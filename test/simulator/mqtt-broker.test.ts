import { strict as assert } from 'assert';
import type { EventEmitter } from 'events';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { IClientOptions, MqttClient } from 'mqtt';
import { buildUsername, clientIdOf, randomConnectionId, signPassword, type SignatureAlgorithm } from '../../lib/device-signing';
import { otaReportTopic, otaUpdateTopic, type DeviceIdentity } from '../../lib/ota-topics';
import { CertificateAuthority, type IssuedCertificate } from '../../simulator/certificate-authority';
import { DeviceRegistry, type CreatedDevice, type RegisteredDevice } from '../../simulator/device-registry';
import { SimulatedMqttBroker, type BrokerAddresses, type SimulatedMqttBrokerEvents } from '../../simulator/mqtt-broker';
import { attemptConnection, connectionClosed, connectOrFail, endClient, type ConnectionAttempt } from '../support/mqtt-connection-attempt';

/** The broker's clock: signatures are checked against it, not against the machine's. */
const NOW = Date.UTC(2030, 0, 2, 3, 4, 5);
const NOW_SECONDS = Math.floor(NOW / 1000);
const PRODUCT = 'PRODUCTID1';
const CONNACK_BAD_USERNAME_OR_PASSWORD = 4;
const CONNACK_NOT_AUTHORIZED = 5;
const SUBACK_FAILURE = 0x80;

function nextEvent<E extends keyof SimulatedMqttBrokerEvents>(
  broker: SimulatedMqttBroker,
  event: E,
  matches: (payload: SimulatedMqttBrokerEvents[E][0]) => boolean = () => true,
): Promise<SimulatedMqttBrokerEvents[E][0]> {
  const emitter = broker as unknown as EventEmitter;
  return new Promise((resolve) => {
    const listener = (payload: SimulatedMqttBrokerEvents[E][0]) => {
      if (!matches(payload)) return;
      emitter.off(event, listener);
      resolve(payload);
    };
    emitter.on(event, listener);
  });
}

interface KeySigning {
  algorithm?: SignatureAlgorithm;
  sdkAppId?: string;
  /** The username's expiry field as sent: Unix seconds, or the Python SDK's current time in milliseconds. */
  expiry?: number;
}

function keyCredentials(device: RegisteredDevice, signing: KeySigning = {}): IClientOptions {
  const clientId = clientIdOf(device);
  const username = buildUsername(clientId, randomConnectionId(), signing.expiry ?? NOW_SECONDS + 3600, signing.sdkAppId);
  return { clientId, username, password: signPassword(username, device.deviceSecret, signing.algorithm), keepalive: 60, clean: true };
}

function certCredentials(device: DeviceIdentity, certificate: Pick<IssuedCertificate, 'certPem' | 'keyPem'>, caPem: string): IClientOptions {
  const clientId = clientIdOf(device);
  // The cloud ignores the password of a cert device; send something that could never verify.
  return {
    clientId,
    username: buildUsername(clientId, 'abcde', NOW_SECONDS + 3600),
    password: 'not-a-signature',
    cert: certificate.certPem,
    key: certificate.keyPem,
    ca: [caPem],
  };
}

function assertRefused(attempt: ConnectionAttempt, returnCode: number): void {
  assert.equal(attempt.outcome, 'refused', `expected a CONNACK refusal, got ${attempt.outcome}`);
  if (attempt.outcome === 'refused') assert.equal(attempt.returnCode, returnCode);
}

function subscribe(client: MqttClient, topic: string, qos: 0 | 1 | 2): Promise<number> {
  return new Promise((resolve, reject) => {
    client.subscribe(topic, { qos }, (error, _granted, packet) => {
      // mqtt.js reports a 0x80 grant as an error; the SUBACK itself is what the device received.
      if (packet && 'granted' in packet) resolve(packet.granted[0] as number);
      else reject(error ?? new Error('no SUBACK'));
    });
  });
}

function publish(client: MqttClient, topic: string, payload: string, options: { qos: 0 | 1 | 2; retain?: boolean }): Promise<void> {
  return new Promise((resolve, reject) => client.publish(topic, payload, options, (error) => (error ? reject(error) : resolve())));
}

function nextMessage(client: MqttClient, topic: string): Promise<{ payload: string; qos: number; retain: boolean }> {
  return new Promise((resolve) => {
    const listener = (receivedTopic: string, payload: Buffer, packet: { qos: number; retain: boolean }) => {
      if (receivedTopic !== topic) return;
      client.off('message', listener);
      resolve({ payload: payload.toString('utf8'), qos: packet.qos, retain: packet.retain });
    };
    client.on('message', listener);
  });
}

describe('simulated MQTT broker', () => {
  let dataDir: string;
  let foreignDataDir: string;
  let certificateAuthority: CertificateAuthority;
  let registry: DeviceRegistry;
  let keyDevice: RegisteredDevice;
  let otherKeyDevice: RegisteredDevice;
  let longNameDevice: RegisteredDevice;
  let certDevice: CreatedDevice;
  let otherCertDevice: CreatedDevice;
  let foreignCertificate: IssuedCertificate;

  let broker: SimulatedMqttBroker;
  let addresses: BrokerAddresses;
  let clients: MqttClient[];

  async function connect(url: string, options: IClientOptions): Promise<MqttClient> {
    const client = await connectOrFail(url, options);
    clients.push(client);
    return client;
  }

  function certificateOf(created: CreatedDevice): Pick<IssuedCertificate, 'certPem' | 'keyPem'> {
    const info = created.deviceInfo.cert_deviceinfo as { devCertPem: string; devPrivateKeyPem: string };
    return { certPem: info.devCertPem, keyPem: info.devPrivateKeyPem };
  }

  before(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'mqtt-broker-test-'));
    foreignDataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'mqtt-broker-foreign-ca-'));
    certificateAuthority = await CertificateAuthority.loadOrCreate(dataDir);
    registry = await DeviceRegistry.open(dataDir);
    keyDevice = (await registry.create(PRODUCT, 'dev1', 'key', certificateAuthority)).device;
    otherKeyDevice = (await registry.create(PRODUCT, 'dev2', 'key', certificateAuthority)).device;
    longNameDevice = (await registry.create(PRODUCT, 'a-device-name-well-over-23-bytes', 'key', certificateAuthority)).device;
    certDevice = await registry.create(PRODUCT, 'cert1', 'cert', certificateAuthority);
    otherCertDevice = await registry.create(PRODUCT, 'cert2', 'cert', certificateAuthority);
    // Same subject as cert1's certificate, signed by a CA the broker does not know.
    const foreignAuthority = await CertificateAuthority.loadOrCreate(foreignDataDir);
    foreignCertificate = foreignAuthority.issueClientCertificate(PRODUCT, 'cert1');
  });

  after(async () => {
    await fs.rm(dataDir, { recursive: true, force: true });
    await fs.rm(foreignDataDir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    clients = [];
    broker = new SimulatedMqttBroker({ registry, certificateAuthority, now: () => NOW });
    addresses = await broker.listen({ mqttPort: 0, mqttsPort: 0, wssPort: 0 });
  });

  afterEach(async () => {
    await Promise.all(clients.map(endClient));
    await broker.close();
  });

  describe('key authentication', () => {
    const variants: { algorithm: SignatureAlgorithm; sdkAppId: string; unit: 'seconds' | 'milliseconds' }[] = [];
    for (const algorithm of ['hmacsha256', 'hmacsha1'] as const) {
      for (const sdkAppId of ['12010126', '21010406']) {
        for (const unit of ['seconds', 'milliseconds'] as const) variants.push({ algorithm, sdkAppId, unit });
      }
    }
    for (const { algorithm, sdkAppId, unit } of variants) {
      it(`accepts a ${algorithm} signature with sdkappid ${sdkAppId} and the expiry in ${unit}`, async () => {
        // Milliseconds as the Python SDK sends them: its clock when it signed, a moment before the broker checks.
        const expiry = unit === 'seconds' ? NOW_SECONDS + 60 : NOW - 1000;
        const attempt = await attemptConnection(addresses.mqtt.url, keyCredentials(keyDevice, { algorithm, sdkAppId, expiry }));
        if (attempt.outcome === 'connected') clients.push(attempt.client);
        assert.equal(attempt.outcome, 'connected');
        assert.equal(broker.connectCount(keyDevice), 1);
      });
    }

    it('refuses a signature that expired by the broker clock with return code 4 and says why', async () => {
      const refused = nextEvent(broker, 'connect-refused');
      const attempt = await attemptConnection(addresses.mqtt.url, keyCredentials(keyDevice, { expiry: NOW_SECONDS - 1 }));
      assertRefused(attempt, CONNACK_BAD_USERNAME_OR_PASSWORD);
      const event = await refused;
      assert.equal(event.clientId, clientIdOf(keyDevice));
      assert.equal(event.returnCode, CONNACK_BAD_USERNAME_OR_PASSWORD);
      assert.match(event.reason, /expired/);
      assert.equal(broker.connectCount(keyDevice), 0);
    });

    it('accepts a login as the Python SDK makes it, the expiry its current time in milliseconds, on the real clock', async () => {
      const realClockBroker = new SimulatedMqttBroker({ registry, certificateAuthority });
      const realClockAddresses = await realClockBroker.listen({ mqttPort: 0, mqttsPort: 0, wssPort: 0 });
      try {
        const clientId = clientIdOf(keyDevice);
        const username = `${clientId};21010406;${randomConnectionId()};${Date.now()}`;
        await new Promise((resolve) => setTimeout(resolve, 20));
        const attempt = await attemptConnection(realClockAddresses.mqtt.url, {
          clientId,
          username,
          password: signPassword(username, keyDevice.deviceSecret),
          protocolId: 'MQIsdp',
          protocolVersion: 3,
          keepalive: 60,
        });
        if (attempt.outcome === 'connected') await endClient(attempt.client);
        assert.equal(attempt.outcome, 'connected');
      } finally {
        await realClockBroker.close();
      }
    });

    it('reads the expiry as seconds: one a second in the past is refused, any larger value is accepted', async () => {
      assertRefused(await attemptConnection(addresses.mqtt.url, keyCredentials(keyDevice, { expiry: NOW_SECONDS - 1 })), CONNACK_BAD_USERNAME_OR_PASSWORD);
      await connect(addresses.mqtt.url, keyCredentials(keyDevice, { expiry: NOW_SECONDS }));
      await connect(addresses.mqtt.url, keyCredentials(otherKeyDevice, { expiry: 99999999999999 }));
    });

    it('refuses a password signed with another device secret with return code 4', async () => {
      const credentials = keyCredentials(keyDevice);
      credentials.password = signPassword(String(credentials.username), otherKeyDevice.deviceSecret);
      assertRefused(await attemptConnection(addresses.mqtt.url, credentials), CONNACK_BAD_USERNAME_OR_PASSWORD);
    });

    it('refuses a username naming another client id with return code 4', async () => {
      const credentials = keyCredentials(keyDevice);
      const username = buildUsername(clientIdOf(otherKeyDevice), 'abcde', NOW_SECONDS + 60);
      const attempt = await attemptConnection(addresses.mqtt.url, { ...credentials, username, password: signPassword(username, keyDevice.deviceSecret) });
      assertRefused(attempt, CONNACK_BAD_USERNAME_OR_PASSWORD);
    });

    it('refuses a client id that belongs to no device with return code 5', async () => {
      const stranger = { ...keyDevice, deviceName: 'nobody' };
      const refused = nextEvent(broker, 'connect-refused');
      assertRefused(await attemptConnection(addresses.mqtt.url, keyCredentials(stranger)), CONNACK_NOT_AUTHORIZED);
      assert.equal((await refused).clientId, `${PRODUCT}nobody`);
    });

    it('accepts MQTT 3.1 (MQIsdp) with a client id longer than 23 bytes, as the Python SDK connects', async () => {
      assert.ok(clientIdOf(longNameDevice).length > 23);
      const connected = nextEvent(broker, 'device-connect');
      await connect(addresses.mqtt.url, { ...keyCredentials(longNameDevice), protocolId: 'MQIsdp', protocolVersion: 3 });
      const info = await connected;
      assert.equal(info.protocolVersion, 3);
      assert.equal(info.clientId, clientIdOf(longNameDevice));
    });

    it('refuses MQTT 5 with return code 1 (unacceptable protocol version)', async () => {
      const refused = nextEvent(broker, 'connect-refused');
      const attempt = await attemptConnection(addresses.mqtt.url, { ...keyCredentials(keyDevice), protocolVersion: 5 });
      assertRefused(attempt, 1);
      assert.equal((await refused).returnCode, 1);
      assert.equal(broker.connectCount(keyDevice), 0);
    });

    it('refuses a CONNECT carrying a will message with return code 5, since the platform has no wills', async () => {
      const credentials = { ...keyCredentials(keyDevice), will: { topic: `${PRODUCT}/dev1/event`, payload: Buffer.from('gone'), qos: 0 as const, retain: false } };
      assertRefused(await attemptConnection(addresses.mqtt.url, credentials), CONNACK_NOT_AUTHORIZED);
    });

    it('accepts keepalives of 0 and 900 seconds and refuses 901 with return code 5', async () => {
      await connect(addresses.mqtt.url, { ...keyCredentials(keyDevice), keepalive: 0 });
      await connect(addresses.mqtt.url, { ...keyCredentials(otherKeyDevice), keepalive: 900 });
      assertRefused(await attemptConnection(addresses.mqtt.url, { ...keyCredentials(longNameDevice), keepalive: 901 }), CONNACK_NOT_AUTHORIZED);
    });
  });

  describe('connection bookkeeping', () => {
    it('reports connect and disconnect events, counts accepted CONNECTs and knows who is online', async () => {
      assert.equal(broker.isOnline(keyDevice), false);
      const connected = nextEvent(broker, 'device-connect');
      const first = await connect(addresses.mqtt.url, keyCredentials(keyDevice));
      const info = await connected;
      assert.deepEqual(
        { ...info, username: typeof info.username },
        { productId: PRODUCT, deviceName: 'dev1', clientId: `${PRODUCT}dev1`, protocolVersion: 4, transport: 'mqtt', username: 'string' },
      );
      assert.match(info.username, new RegExp(`^${PRODUCT}dev1;12010126;[A-Za-z0-9]{5};\\d+$`));
      assert.equal(broker.isOnline(keyDevice), true);
      assert.equal(broker.isOnline(otherKeyDevice), false);

      const disconnected = nextEvent(broker, 'device-disconnect');
      await endClient(first);
      assert.deepEqual(await disconnected, { productId: PRODUCT, deviceName: 'dev1' });
      assert.equal(broker.isOnline(keyDevice), false);

      await connect(addresses.mqtt.url, keyCredentials(keyDevice));
      assert.equal(broker.connectCount(keyDevice), 2);
      assert.equal(broker.isOnline(keyDevice), true);
      assert.equal(broker.connectCount(otherKeyDevice), 0);
    });

    it('keeps the device online when a second connection with its client id replaces the first', async () => {
      const first = await connect(addresses.mqtt.url, keyCredentials(keyDevice));
      const firstClosed = connectionClosed(first);
      await connect(addresses.mqtt.url, keyCredentials(keyDevice));
      await firstClosed;
      assert.equal(broker.isOnline(keyDevice), true);
      assert.equal(broker.connectCount(keyDevice), 2);
    });
  });

  describe('TLS and WebSocket', () => {
    it('accepts MQTT over TLS when the device trusts the simulator CA', async () => {
      const connected = nextEvent(broker, 'device-connect');
      await connect(addresses.mqtts.url, { ...keyCredentials(keyDevice), ca: [certificateAuthority.caCertPem] });
      assert.equal((await connected).transport, 'mqtts');
    });

    it('fails the TLS handshake with a certificate error when the device does not trust the simulator CA', async () => {
      const attempt = await attemptConnection(addresses.mqtts.url, keyCredentials(keyDevice));
      assert.equal(attempt.outcome, 'failed');
      if (attempt.outcome === 'failed') {
        assert.match(String(attempt.error.code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED_CERT/);
      }
      assert.equal(broker.connectCount(keyDevice), 0);
    });

    it('serves MQTT over WebSocket/TLS on /mqtt', async () => {
      assert.match(addresses.wss.url, /^wss:\/\/127\.0\.0\.1:\d+\/mqtt$/);
      const connected = nextEvent(broker, 'device-connect');
      const client = await connect(addresses.wss.url, { ...keyCredentials(keyDevice), ca: [certificateAuthority.caCertPem] });
      assert.equal((await connected).transport, 'wss');
      assert.equal(await subscribe(client, otaUpdateTopic(keyDevice), 1), 1);
    });

    it('serves MQTT 3.1 over WebSocket with the mqttv3.1 subprotocol', async () => {
      await connect(addresses.wss.url, { ...keyCredentials(keyDevice), ca: [certificateAuthority.caCertPem], protocolId: 'MQIsdp', protocolVersion: 3 });
      assert.equal(broker.isOnline(keyDevice), true);
    });
  });

  describe('certificate authentication', () => {
    it('accepts the certificate issued to the device over TLS, ignoring the password', async () => {
      await connect(addresses.mqtts.url, certCredentials(certDevice.device, certificateOf(certDevice), certificateAuthority.caCertPem));
      assert.equal(broker.isOnline(certDevice.device), true);
    });

    it('accepts the issued certificate over WebSocket/TLS too', async () => {
      await connect(addresses.wss.url, certCredentials(certDevice.device, certificateOf(certDevice), certificateAuthority.caCertPem));
      assert.equal(broker.isOnline(certDevice.device), true);
    });

    it('refuses a certificate with the right subject from another CA with return code 5', async () => {
      const refused = nextEvent(broker, 'connect-refused');
      const attempt = await attemptConnection(addresses.mqtts.url, certCredentials(certDevice.device, foreignCertificate, certificateAuthority.caCertPem));
      assertRefused(attempt, CONNACK_NOT_AUTHORIZED);
      assert.match((await refused).reason, /not issued by the simulator CA/);
    });

    it('refuses the certificate of another device with return code 5', async () => {
      const attempt = await attemptConnection(addresses.mqtts.url, certCredentials(certDevice.device, certificateOf(otherCertDevice), certificateAuthority.caCertPem));
      assertRefused(attempt, CONNACK_NOT_AUTHORIZED);
    });

    it('refuses the right certificate with a username naming another device with return code 4', async () => {
      const credentials = certCredentials(certDevice.device, certificateOf(certDevice), certificateAuthority.caCertPem);
      const refused = nextEvent(broker, 'connect-refused');
      const attempt = await attemptConnection(addresses.mqtts.url, {
        ...credentials,
        username: buildUsername(clientIdOf(otherCertDevice.device), 'abcde', NOW_SECONDS + 3600),
      });
      assertRefused(attempt, CONNACK_BAD_USERNAME_OR_PASSWORD);
      assert.match((await refused).reason, new RegExp(`names client id ${clientIdOf(otherCertDevice.device)}`));
      assert.equal(broker.connectCount(certDevice.device), 0);
    });

    it('refuses the right certificate with an empty username with return code 4', async () => {
      const credentials = certCredentials(certDevice.device, certificateOf(certDevice), certificateAuthority.caCertPem);
      assertRefused(await attemptConnection(addresses.mqtts.url, { ...credentials, username: '' }), CONNACK_BAD_USERNAME_OR_PASSWORD);
      const { username: _username, password: _password, ...withoutUsername } = credentials;
      assertRefused(await attemptConnection(addresses.mqtts.url, withoutUsername), CONNACK_BAD_USERNAME_OR_PASSWORD);
      assert.equal(broker.connectCount(certDevice.device), 0);
    });

    it('refuses a certificate device that connects without a certificate or over plain MQTT with return code 5', async () => {
      const { cert: _cert, key: _key, ...withoutCertificate } = certCredentials(certDevice.device, certificateOf(certDevice), certificateAuthority.caCertPem);
      assertRefused(await attemptConnection(addresses.mqtts.url, withoutCertificate), CONNACK_NOT_AUTHORIZED);
      assertRefused(await attemptConnection(addresses.mqtt.url, withoutCertificate), CONNACK_NOT_AUTHORIZED);
      assert.equal(broker.connectCount(certDevice.device), 0);
    });
  });

  describe('topic rules', () => {
    let client: MqttClient;
    beforeEach(async () => {
      client = await connect(addresses.mqtt.url, keyCredentials(keyDevice));
    });

    it('grants QoS 1 on the device own update topic and reports the subscription', async () => {
      const subscribed = nextEvent(broker, 'device-subscribe');
      assert.equal(await subscribe(client, otaUpdateTopic(keyDevice), 1), 1);
      assert.deepEqual(await subscribed, { productId: PRODUCT, deviceName: 'dev1', topic: otaUpdateTopic(keyDevice), grantedQos: 1 });
    });

    it('grants QoS 1 when QoS 2 is asked for, and QoS 0 when QoS 0 is asked for', async () => {
      assert.equal(await subscribe(client, otaUpdateTopic(keyDevice), 2), 1);
      assert.equal(await subscribe(client, `${PRODUCT}/dev1/control`, 0), 0);
      assert.equal(await subscribe(client, `${PRODUCT}/dev1/+`, 2), 1);
    });

    it("answers 0x80 to a subscription to another device's update topic and keeps the connection", async () => {
      assert.equal(await subscribe(client, otaUpdateTopic(otherKeyDevice), 1), SUBACK_FAILURE);
      assert.equal(await subscribe(client, '#', 0), SUBACK_FAILURE);
      assert.equal(await subscribe(client, `${PRODUCT}/+/control`, 0), SUBACK_FAILURE);
      assert.equal(await subscribe(client, otaReportTopic(keyDevice), 0), SUBACK_FAILURE);
      // Still connected: an allowed subscription right after succeeds.
      assert.equal(await subscribe(client, otaUpdateTopic(keyDevice), 1), 1);
      assert.equal(broker.isOnline(keyDevice), true);
    });

    it('acknowledges a QoS 1 report on the own report topic and hands it to the cloud', async () => {
      const published = nextEvent(broker, 'device-publish');
      const report = '{"type":"report_version","report":{"version":"1.0.0"}}';
      await publish(client, otaReportTopic(keyDevice), report, { qos: 1 });
      const event = await published;
      assert.equal(event.topic, otaReportTopic(keyDevice));
      assert.equal(event.payload.toString('utf8'), report);
      assert.equal(event.qos, 1);
      assert.equal(event.time.getTime(), NOW);
      assert.deepEqual([event.productId, event.deviceName], [PRODUCT, 'dev1']);
    });

    const refusedPublishes: { title: string; topic: (device: DeviceIdentity) => string; qos: 0 | 1 | 2; retain?: boolean; reason: RegExp }[] = [
      { title: "to another device's report topic", topic: () => otaReportTopic(otherKeyDevice), qos: 0, reason: /not allowed/ },
      { title: "to another device's user topic", topic: () => `${PRODUCT}/dev2/event`, qos: 1, reason: /not allowed/ },
      { title: 'to its own update topic', topic: (device) => otaUpdateTopic(device), qos: 0, reason: /not allowed/ },
      { title: 'with QoS 2', topic: (device) => otaReportTopic(device), qos: 2, reason: /QoS 2/ },
      { title: 'with the retain flag', topic: (device) => otaReportTopic(device), qos: 0, retain: true, reason: /retained/ },
    ];
    for (const refusal of refusedPublishes) {
      it(`closes the connection of a device that publishes ${refusal.title}`, async () => {
        const delivered: string[] = [];
        broker.on('device-publish', (event) => delivered.push(event.topic));
        const refused = nextEvent(broker, 'publish-refused');
        const disconnected = nextEvent(broker, 'device-disconnect');
        const closed = connectionClosed(client);
        client.publish(refusal.topic(keyDevice), 'x', { qos: refusal.qos, retain: refusal.retain ?? false });
        await closed;
        await disconnected;
        const event = await refused;
        assert.equal(event.topic, refusal.topic(keyDevice));
        assert.match(event.reason, refusal.reason);
        assert.deepEqual(delivered, []);
        assert.equal(broker.isOnline(keyDevice), false);
      });
    }
  });

  describe('publishing to a device', () => {
    it('delivers a cloud message to the subscribed device with the QoS asked for, not retained', async () => {
      const client = await connect(addresses.mqtt.url, keyCredentials(keyDevice));
      await subscribe(client, otaUpdateTopic(keyDevice), 1);
      const command = '{"type":"update_firmware","version":"2.0.0"}';
      const atQos0 = nextMessage(client, otaUpdateTopic(keyDevice));
      await broker.publishToDevice(keyDevice, otaUpdateTopic(keyDevice), command);
      assert.deepEqual(await atQos0, { payload: command, qos: 0, retain: false });
      const atQos1 = nextMessage(client, otaUpdateTopic(keyDevice));
      await broker.publishToDevice(keyDevice, otaUpdateTopic(keyDevice), Buffer.from(command), 1);
      assert.deepEqual(await atQos1, { payload: command, qos: 1, retain: false });
    });

    it('refuses to publish to a device on a topic that device cannot receive', async () => {
      await assert.rejects(broker.publishToDevice(keyDevice, otaUpdateTopic(otherKeyDevice), 'x'), /cannot receive/);
      await assert.rejects(broker.publishToDevice(keyDevice, otaReportTopic(keyDevice), 'x'), /cannot receive/);
    });
  });

  describe('closing', () => {
    it('ends every connection at once and frees the ports for a broker started right after', async () => {
      const plain = await connect(addresses.mqtt.url, keyCredentials(keyDevice));
      const secure = await connect(addresses.mqtts.url, { ...keyCredentials(otherKeyDevice), ca: [certificateAuthority.caCertPem] });
      const overWebSocket = await connect(addresses.wss.url, { ...keyCredentials(longNameDevice), ca: [certificateAuthority.caCertPem] });
      const allClosed = Promise.all([plain, secure, overWebSocket].map(connectionClosed));
      await broker.close();
      await allClosed;

      broker = new SimulatedMqttBroker({ registry, certificateAuthority, now: () => NOW });
      const again = await broker.listen({ mqttPort: addresses.mqtt.port, mqttsPort: addresses.mqtts.port, wssPort: addresses.wss.port });
      assert.deepEqual(again, addresses);
      await connect(again.mqtt.url, keyCredentials(keyDevice));
      assert.equal(broker.connectCount(keyDevice), 1);
    });
  });
});
