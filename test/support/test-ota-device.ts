/**
 * A bare OTA device for tests: a real mqtt.js client signed with lib's signConnection (or a client
 * certificate), subscribed to its update topic, that sends reports by hand and collects what the
 * cloud sends. It never reconnects by itself, so every connection a test sees is one it asked for.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { signConnection } from '../../lib/device-signing';
import { buildReportProgress, buildReportVersion, reportQos, type ProgressReport } from '../../lib/ota-messages';
import { otaReportTopic, otaUpdateTopic, type DeviceIdentity } from '../../lib/ota-topics';

export interface TestDeviceCredentials extends DeviceIdentity {
  /** Key devices. */
  deviceSecret?: string;
  /** Cert devices: client certificate and key PEM. */
  certPem?: string;
  keyPem?: string;
}

export interface TestDeviceOptions {
  /** CA PEM to trust for mqtts:// and wss:// URLs. */
  ca?: string;
  /** Subscribe to $ota/update/... with QoS 1 on connect (default true). */
  subscribe?: boolean;
  protocolVersion?: 3 | 4;
}

/** A message the cloud sent on the device's update topic, parsed as JSON. */
export type CloudMessage = Record<string, unknown> & { type?: string };

export class TestOtaDevice {
  /** Everything received on the update topic, oldest first. */
  readonly received: CloudMessage[] = [];
  /** Client errors after the connection was made (kept so that they do not go unhandled). */
  readonly errors: Error[] = [];
  private readonly unread: CloudMessage[] = [];
  private waiters: { matches: (message: CloudMessage) => boolean; resolve: (message: CloudMessage) => void }[] = [];

  private constructor(
    readonly client: MqttClient,
    readonly identity: DeviceIdentity,
  ) {
    client.on('error', (error) => this.errors.push(error));
    client.on('message', (topic, payload) => {
      if (topic !== otaUpdateTopic(identity)) return;
      let message: CloudMessage;
      try {
        message = JSON.parse(payload.toString('utf8')) as CloudMessage;
      } catch {
        message = { type: 'unparseable', raw: payload.toString('utf8') };
      }
      this.received.push(message);
      const waiter = this.waiters.find((candidate) => candidate.matches(message));
      if (waiter) {
        this.waiters = this.waiters.filter((candidate) => candidate !== waiter);
        waiter.resolve(message);
      } else {
        this.unread.push(message);
      }
    });
  }

  static async connect(url: string, credentials: TestDeviceCredentials, options: TestDeviceOptions = {}): Promise<TestOtaDevice> {
    const identity = { productId: credentials.productId, deviceName: credentials.deviceName };
    const signed = signConnection(identity, credentials.deviceSecret ?? 'AAAAAAAAAAAAAAAAAAAAAA==');
    const clientOptions: IClientOptions = {
      ...signed,
      clean: true,
      keepalive: 60,
      reconnectPeriod: 0,
      connectTimeout: 30_000,
      protocolVersion: options.protocolVersion ?? 4,
    };
    if (options.ca) clientOptions.ca = [options.ca];
    if (credentials.certPem) clientOptions.cert = credentials.certPem;
    if (credentials.keyPem) clientOptions.key = credentials.keyPem;
    const client = mqtt.connect(url, clientOptions);
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', (error) => {
        client.end(true);
        reject(error);
      });
      client.once('close', () => reject(new Error(`connection to ${url} closed before CONNACK`)));
    });
    const device = new TestOtaDevice(client, identity);
    if (options.subscribe !== false) await client.subscribeAsync(otaUpdateTopic(identity), { qos: 1 });
    return device;
  }

  reportVersion(version: string): Promise<void> {
    return this.publish(JSON.stringify(buildReportVersion(version)), 1);
  }

  /** Sends report_progress with the QoS PROTOCOL.md §2 gives its state, unless told otherwise. */
  reportProgress(version: string, report: ProgressReport, qos?: 0 | 1): Promise<void> {
    const message = buildReportProgress(version, report);
    return this.publish(JSON.stringify(message), qos ?? reportQos(message));
  }

  /** Publishes any payload on the device's report topic. */
  async publish(payload: string, qos: 0 | 1): Promise<void> {
    await this.client.publishAsync(otaReportTopic(this.identity), payload, { qos });
  }

  /** The first unread cloud message that matches (by type when a string is given), waiting for it if needed. */
  nextMessage(matches: string | ((message: CloudMessage) => boolean) = () => true, timeoutMs = 20_000): Promise<CloudMessage> {
    const predicate = typeof matches === 'string' ? (message: CloudMessage) => message.type === matches : matches;
    const index = this.unread.findIndex(predicate);
    if (index >= 0) return Promise.resolve(this.unread.splice(index, 1)[0]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((candidate) => candidate.resolve !== done);
        reject(new Error(`no matching message on ${otaUpdateTopic(this.identity)} within ${timeoutMs} ms; received: ${JSON.stringify(this.received)}`));
      }, timeoutMs);
      const done = (message: CloudMessage) => {
        clearTimeout(timer);
        resolve(message);
      };
      this.waiters.push({ matches: predicate, resolve: done });
    });
  }

  /** Messages received so far and not taken by nextMessage. */
  unreadMessages(): CloudMessage[] {
    return [...this.unread];
  }

  /** Closes the connection at once (like a crash: no DISCONNECT is awaited). */
  close(): Promise<void> {
    return new Promise((resolve) => this.client.end(true, {}, () => resolve()));
  }
}
