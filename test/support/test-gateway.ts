/**
 * A bare gateway for tests (PROTOCOL.md §6): a real mqtt.js client signed with lib's signConnection,
 * subscribed to its operation result topic, that publishes operations by hand and collects every
 * message it receives, on any topic. It never reconnects by itself.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { signConnection } from '../../lib/device-signing';
import { gatewayOperationResultTopic, gatewayOperationTopic } from '../../lib/gateway-messages';
import type { DeviceIdentity } from '../../lib/ota-topics';

export interface TestGatewayCredentials extends DeviceIdentity {
  deviceSecret?: string;
}

export interface TestGatewayOptions {
  /** CA PEM to trust for mqtts:// and wss:// URLs. */
  ca?: string;
  /** Subscribe to the result topic with QoS 1 on connect (default true). */
  subscribe?: boolean;
}

export interface ReceivedMessage {
  topic: string;
  /** The payload parsed as JSON, or `{type: 'unparseable', raw}`. */
  message: Record<string, unknown>;
  qos: number;
}

/** SUBACK return code of a refused subscription. */
export const SUBACK_FAILURE = 0x80;

export class TestGateway {
  /** Everything received, oldest first. */
  readonly received: ReceivedMessage[] = [];
  readonly errors: Error[] = [];
  private readonly unread: ReceivedMessage[] = [];
  private waiters: { matches: (received: ReceivedMessage) => boolean; resolve: (received: ReceivedMessage) => void }[] = [];

  private constructor(
    readonly client: MqttClient,
    readonly identity: DeviceIdentity,
  ) {
    client.on('error', (error) => this.errors.push(error));
    client.on('message', (topic, payload, packet) => {
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
      } catch {
        message = { type: 'unparseable', raw: payload.toString('utf8') };
      }
      const received = { topic, message, qos: packet.qos };
      this.received.push(received);
      const waiter = this.waiters.find((candidate) => candidate.matches(received));
      if (waiter) {
        this.waiters = this.waiters.filter((candidate) => candidate !== waiter);
        waiter.resolve(received);
      } else {
        this.unread.push(received);
      }
    });
  }

  static async connect(url: string, credentials: TestGatewayCredentials, options: TestGatewayOptions = {}): Promise<TestGateway> {
    const identity = { productId: credentials.productId, deviceName: credentials.deviceName };
    const clientOptions: IClientOptions = {
      ...signConnection(identity, credentials.deviceSecret ?? 'AAAAAAAAAAAAAAAAAAAAAA=='),
      clean: true,
      keepalive: 60,
      reconnectPeriod: 0,
      connectTimeout: 30_000,
    };
    if (options.ca) clientOptions.ca = [options.ca];
    const client = mqtt.connect(url, clientOptions);
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', (error) => {
        client.end(true);
        reject(error);
      });
      client.once('close', () => reject(new Error(`connection to ${url} closed before CONNACK`)));
    });
    const gateway = new TestGateway(client, identity);
    if (options.subscribe !== false) {
      const granted = await gateway.subscribe(gatewayOperationResultTopic(identity), 1);
      if (granted !== 1) throw new Error(`the result topic was granted ${granted}`);
    }
    return gateway;
  }

  /** Publishes an operation (an object is sent as JSON) on the gateway's operation topic, QoS 0 as the SDKs do. */
  async operate(operation: object | string, qos: 0 | 1 = 0): Promise<void> {
    await this.client.publishAsync(gatewayOperationTopic(this.identity), typeof operation === 'string' ? operation : JSON.stringify(operation), { qos });
  }

  /** Publishes an operation and waits for the cloud's message of the same type on the result topic. */
  async request(operation: { type: string } & Record<string, unknown>): Promise<Record<string, unknown>> {
    const answer = this.nextResult(operation.type);
    await this.operate(operation);
    return answer;
  }

  /** The SUBACK return code: 0 or 1 when granted, 0x80 when refused. */
  subscribe(topic: string, qos: 0 | 1): Promise<number> {
    return new Promise((resolve, reject) => {
      this.client.subscribe(topic, { qos }, (error, _granted, packet) => {
        // mqtt.js reports a 0x80 grant as an error; the SUBACK itself is what the gateway received.
        if (packet && 'granted' in packet) resolve(packet.granted[0] as number);
        else reject(error ?? new Error('no SUBACK'));
      });
    });
  }

  async publish(topic: string, payload: string, qos: 0 | 1): Promise<void> {
    await this.client.publishAsync(topic, payload, { qos });
  }

  /** The next unread message on the result topic of this type. */
  async nextResult(type: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    const resultTopic = gatewayOperationResultTopic(this.identity);
    return (await this.next((received) => received.topic === resultTopic && received.message.type === type, timeoutMs)).message;
  }

  /** The next unread message on this topic. */
  async nextOn(topic: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    return (await this.next((received) => received.topic === topic, timeoutMs)).message;
  }

  /** Messages received so far and not taken by a wait. */
  unreadMessages(): ReceivedMessage[] {
    return [...this.unread];
  }

  /** Resolves when the connection has closed; it never reconnects, so a close is final. */
  closed(): Promise<void> {
    return new Promise((resolve) => {
      if (this.client.disconnected) return resolve();
      this.client.once('close', () => resolve());
    });
  }

  /** Closes the connection at once (like a crash). */
  close(): Promise<void> {
    return new Promise((resolve) => this.client.end(true, {}, () => resolve()));
  }

  private next(matches: (received: ReceivedMessage) => boolean, timeoutMs: number): Promise<ReceivedMessage> {
    const index = this.unread.findIndex(matches);
    if (index >= 0) return Promise.resolve(this.unread.splice(index, 1)[0]);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((candidate) => candidate.resolve !== done);
        reject(new Error(`no matching message within ${timeoutMs} ms; received: ${JSON.stringify(this.received)}`));
      }, timeoutMs);
      const done = (received: ReceivedMessage) => {
        clearTimeout(timer);
        resolve(received);
      };
      this.waiters.push({ matches, resolve: done });
    });
  }
}
