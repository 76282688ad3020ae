/**
 * The one MQTT connection of a device, shared by every flow node that uses it.
 *
 * It connects when the first user registers and disconnects when the last one leaves, signs a
 * fresh username for every (re)connect, reconnects with jittered exponential backoff, restores its
 * subscriptions before it tells anyone it is connected, and keeps QoS 1 publishes made while
 * disconnected in a queue until they are acknowledged or time out.
 *
 * Each connection attempt uses a new MQTT.js client; the QoS 1 publishes in flight belong to the
 * connection's PublishQueue, so one sent but not acknowledged when the link dropped goes out again
 * after the reconnect.
 */
import { EventEmitter } from 'events';
import * as mqtt from 'mqtt';
import { resolveEndpoint, type Endpoint, type Region, type Transport } from './device-endpoint';
import { DeviceSecretError, clientIdOf, signConnection } from './device-signing';
import type { AuthMode } from './device-info';
import type { DeviceIdentity } from './ota-topics';
import { PublishQueue } from './publish-queue';
import { TENCENT_IOTHUB_CA_PEM } from './tencent-iothub-ca';

export { PublishTimeoutError } from './publish-queue';

export interface DeviceConnectionOptions extends DeviceIdentity {
  authMode: AuthMode;
  deviceSecret?: string;
  /** PEM that replaces the bundled Tencent IoT Hub CA (a private deployment or the stand-in). */
  caCertPem?: string;
  clientCertPem?: string;
  clientKeyPem?: string;
  region: Region;
  transport: Transport;
  host?: string;
  port?: number;
  keepaliveSeconds?: number;
  /**
   * The first backoff window; it doubles on every failed attempt up to reconnectMaxMs and starts
   * over after a connection. Each reconnect waits a random time from half the window to all of it.
   */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Where the reconnect jitter comes from: a number in [0, 1), as Math.random (the default) gives. */
  random?: () => number;
  connectTimeoutMs?: number;
  /** How long a QoS 1 publish may wait for its PUBACK, queued time included. */
  publishTimeoutMs?: number;
}

export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'disconnected';

export interface ConnectionStatus {
  state: ConnectionState;
  /** Short, human reason for a disconnection, e.g. "bad credentials". */
  reason?: string;
}

export interface PublishOptions extends TopicGate {
  qos: 0 | 1;
  /** Overrides the connection's publishTimeoutMs for this message; 0 waits for ever. */
  timeoutMs?: number;
}

export type MessageHandler = (payload: Buffer, topic: string) => void;

interface Subscription {
  qos: 0 | 1;
  handlers: Set<MessageHandler>;
  /** For a sub-device's topics: subscribed on the broker only while this says so (it is online). */
  when?: () => boolean;
  /** Subscribed on the current client. */
  onBroker: boolean;
}

/** A gate: a topic of a sub-device may be used only while it is online through its gateway. */
export interface TopicGate {
  when?: () => boolean;
}

const isOpen = (gate: TopicGate): boolean => !gate.when || gate.when();

export class NotConnectedError extends Error {
  constructor(topic: string, status: ConnectionStatus) {
    super(`cannot publish to ${topic} with QoS 0 while ${status.state}${status.reason ? ` (${status.reason})` : ''}`);
    this.name = 'NotConnectedError';
  }
}

const DEFAULTS = {
  keepaliveSeconds: 60,
  reconnectMinMs: 1000,
  reconnectMaxMs: 60_000,
  connectTimeoutMs: 30_000,
  publishTimeoutMs: 60_000,
};

/** Turns what MQTT.js and the socket report into the short reason a user sees in the status. */
export function describeConnectionError(error: Error & { code?: string | number }): string {
  const code = error.code;
  switch (code) {
    case 1:
      return 'refused: unacceptable protocol version';
    case 2:
      return 'refused: client id rejected';
    case 3:
      return 'refused: server unavailable';
    case 4:
    case 134:
      return 'bad credentials';
    case 5:
    case 135:
      return 'not authorized';
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host not found';
    case 'ETIMEDOUT':
      return 'connection timed out';
    case 'ECONNRESET':
      return 'connection reset';
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return 'TLS: host name does not match the server certificate';
    case 'CERT_HAS_EXPIRED':
      return 'TLS: server certificate expired';
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return 'TLS: server certificate not trusted';
    default:
      if (/connack timeout/i.test(error.message)) return 'no answer to CONNECT';
      return error.message.slice(0, 80);
  }
}

/**
 * The MQTT.js options of one connection attempt: a freshly signed username, the client certificate
 * for a certificate device, and the CA the server must be signed by. Throws DeviceSecretError when
 * the credentials cannot make a CONNECT.
 */
export function mqttClientOptions(options: DeviceConnectionOptions, endpoint: Endpoint): mqtt.IClientOptions {
  const device = { productId: options.productId, deviceName: options.deviceName };
  const clientId = clientIdOf(device);
  const base: mqtt.IClientOptions = {
    clientId,
    protocolVersion: 4,
    clean: true,
    keepalive: options.keepaliveSeconds ?? DEFAULTS.keepaliveSeconds,
    reconnectPeriod: 0,
    connectTimeout: options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
    resubscribe: false,
  };
  if (options.authMode === 'key') {
    if (!options.deviceSecret) throw new DeviceSecretError('device secret missing');
    const credentials = signConnection(device, options.deviceSecret);
    base.username = credentials.username;
    base.password = credentials.password;
  } else {
    if (!options.clientCertPem || !options.clientKeyPem) throw new DeviceSecretError('client certificate or key missing');
    if (endpoint.transport === 'mqtt') throw new DeviceSecretError('certificate authentication needs TLS (mqtts or wss)');
    base.cert = options.clientCertPem;
    base.key = options.clientKeyPem;
    // The platform ignores the password of a certificate device; a signed string is sent all the same.
    const credentials = signConnection(device, options.deviceSecret ?? Buffer.from(clientId).toString('base64'));
    base.username = credentials.username;
    base.password = credentials.password;
  }
  if (endpoint.transport !== 'mqtt') {
    base.ca = options.caCertPem && options.caCertPem.trim() ? options.caCertPem : TENCENT_IOTHUB_CA_PEM;
    base.rejectUnauthorized = true;
  }
  return base;
}

export interface DeviceConnectionEvents {
  status: [ConnectionStatus];
  /** Connected and every subscription restored. */
  connect: [];
  /** A problem worth logging that does not change the status (a refused subscription). */
  warning: [string];
  /** The connection was lost or refused; the next attempt comes after delayMs. */
  'reconnect-scheduled': [{ delayMs: number }];
}

export class DeviceConnection extends EventEmitter<DeviceConnectionEvents> {
  readonly device: DeviceIdentity;
  readonly endpoint: Endpoint;
  private readonly options: DeviceConnectionOptions;
  private readonly users = new Set<string>();
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly queue = new PublishQueue(this);
  private client?: mqtt.MqttClient;
  private currentStatus: ConnectionStatus = { state: 'idle' };
  private reconnectTimer?: NodeJS.Timeout;
  /** The current backoff window, from which the next reconnect delay is drawn. */
  private reconnectWindowMs: number;
  private closing = false;
  /** Set when the configuration itself is wrong; retrying would not help. */
  private configurationError?: string;

  constructor(options: DeviceConnectionOptions) {
    super();
    this.options = options;
    this.device = { productId: options.productId, deviceName: options.deviceName };
    this.endpoint = resolveEndpoint(options);
    this.reconnectWindowMs = options.reconnectMinMs ?? DEFAULTS.reconnectMinMs;
  }

  get status(): ConnectionStatus {
    return this.currentStatus;
  }

  /** The client publishes go out on, while connected. */
  get currentClient(): mqtt.MqttClient | undefined {
    return this.connected ? this.client : undefined;
  }

  get connected(): boolean {
    return this.currentStatus.state === 'connected';
  }

  get clientId(): string {
    return clientIdOf(this.device);
  }

  /**
   * True when a connection made with these settings would be this one: the same identity,
   * credentials, CA and endpoint.
   */
  connectsAs(options: DeviceConnectionOptions): boolean {
    const mine = this.options;
    const same = (a?: string, b?: string) => (a?.trim() || undefined) === (b?.trim() || undefined);
    return (
      mine.productId === options.productId &&
      mine.deviceName === options.deviceName &&
      mine.authMode === options.authMode &&
      // Only the credentials of the authentication in use: the others are never sent.
      (options.authMode === 'key'
        ? same(mine.deviceSecret, options.deviceSecret)
        : same(mine.clientCertPem, options.clientCertPem) && same(mine.clientKeyPem, options.clientKeyPem)) &&
      same(mine.caCertPem, options.caCertPem) &&
      this.endpoint.url === resolveEndpoint(options).url
    );
  }

  /** A flow node starts using the connection; the first one opens it. */
  register(userId: string): void {
    this.users.add(userId);
    if (this.users.size === 1 && !this.client && !this.reconnectTimer) {
      this.closing = false;
      this.attemptConnect();
    }
  }

  /** A flow node stops using the connection; the last one closes it. */
  async deregister(userId: string): Promise<void> {
    this.users.delete(userId);
    if (this.users.size === 0) await this.close();
  }

  /**
   * Adds a handler for messages on a topic; the subscription is kept across reconnects. With a
   * gate, the topic is subscribed on the broker only while the gate is open (see syncSubscriptions).
   */
  subscribe(topic: string, qos: 0 | 1, handler: MessageHandler, gate: TopicGate = {}): () => void {
    let subscription = this.subscriptions.get(topic);
    if (!subscription) {
      subscription = { qos, handlers: new Set(), when: gate.when, onBroker: false };
      this.subscriptions.set(topic, subscription);
      if (this.client && this.connected && isOpen(subscription)) {
        subscription.onBroker = true;
        this.subscribeOnBroker(this.client, [topic]).catch(() => undefined);
      }
    }
    subscription.handlers.add(handler);
    return () => {
      const current = this.subscriptions.get(topic);
      if (!current) return;
      current.handlers.delete(handler);
      if (current.handlers.size === 0) {
        this.subscriptions.delete(topic);
        if (this.client && this.connected && current.onBroker) this.client.unsubscribe(topic);
      }
    };
  }

  /**
   * Brings the broker's subscriptions in line with their gates: subscribes the gated topics that
   * opened (resolving on the SUBACK) and unsubscribes those that closed. A gateway calls it once a
   * sub-device is online, and after it went offline.
   */
  async syncSubscriptions(): Promise<void> {
    const client = this.client;
    if (!client || !this.connected) return;
    const opened: string[] = [];
    const closed: string[] = [];
    for (const [topic, subscription] of this.subscriptions) {
      const open = isOpen(subscription);
      if (open && !subscription.onBroker) opened.push(topic);
      if (!open && subscription.onBroker) closed.push(topic);
      subscription.onBroker = open;
    }
    if (closed.length > 0) client.unsubscribe(closed);
    await this.subscribeOnBroker(client, opened);
  }

  /** Hands the QoS 1 publishes whose gate has opened to the broker. */
  flushQueue(): void {
    this.queue.flush();
  }

  /**
   * Publishes a message. QoS 1 settles on the PUBACK and waits through disconnections, up to its
   * timeout; QoS 0 settles once written and fails at once while disconnected.
   */
  publish(topic: string, payload: string | Buffer | object, options: PublishOptions): Promise<void> {
    const body = Buffer.isBuffer(payload) ? payload : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload));
    if (options.qos === 0) {
      const client = this.client;
      if (!client || !this.connected || !isOpen(options)) return Promise.reject(new NotConnectedError(topic, this.currentStatus));
      return new Promise((resolve, reject) => {
        client.publish(topic, body, { qos: 0, retain: false }, (error) => (error ? reject(error) : resolve()));
      });
    }
    return this.queue.add(topic, body, options.timeoutMs ?? this.options.publishTimeoutMs ?? DEFAULTS.publishTimeoutMs, options.when);
  }

  /** Closes the connection; queued QoS 1 publishes fail with a clear error. */
  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const client = this.client;
    this.client = undefined;
    this.queue.rejectAll((topic) => new Error(`connection to ${this.endpoint.host} closed before ${topic} was acknowledged`));
    if (client) {
      client.removeAllListeners();
      client.on('error', () => undefined);
      await new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
    }
    this.setStatus({ state: 'idle' });
  }

  private setStatus(status: ConnectionStatus): void {
    if (this.currentStatus.state === status.state && this.currentStatus.reason === status.reason) return;
    this.currentStatus = status;
    this.emit('status', status);
  }

  private attemptConnect(): void {
    this.reconnectTimer = undefined;
    if (this.closing || this.users.size === 0) return;
    let clientOptions: mqtt.IClientOptions;
    try {
      clientOptions = mqttClientOptions(this.options, this.endpoint);
      this.configurationError = undefined;
    } catch (error) {
      this.configurationError = (error as Error).message;
      this.setStatus({ state: 'disconnected', reason: this.configurationError });
      return;
    }
    this.setStatus({ state: 'connecting' });
    const client = mqtt.connect(this.endpoint.url, clientOptions);
    this.client = client;
    let lastError: string | undefined;
    client.on('connect', () => {
      this.reconnectWindowMs = this.options.reconnectMinMs ?? DEFAULTS.reconnectMinMs;
      const open: string[] = [];
      for (const [topic, subscription] of this.subscriptions) {
        subscription.onBroker = isOpen(subscription);
        if (subscription.onBroker) open.push(topic);
      }
      this.subscribeOnBroker(client, open)
        .catch((error: Error) => this.emit('warning', `subscription failed: ${error.message}`))
        .finally(() => {
          if (this.client !== client) return;
          this.setStatus({ state: 'connected' });
          this.emit('connect');
          this.queue.flush();
        });
    });
    client.on('message', (topic, payload) => {
      const subscription = this.subscriptions.get(topic);
      // A gated topic that closed may still bring a message before the UNSUBACK.
      if (!subscription || !isOpen(subscription)) return;
      for (const handler of subscription.handlers) handler(payload, topic);
    });
    client.on('error', (error) => {
      lastError = describeConnectionError(error as Error & { code?: string | number });
    });
    client.on('close', () => {
      if (this.client !== client) return;
      this.client = undefined;
      client.removeAllListeners();
      client.on('error', () => undefined);
      client.end(true);
      // Whatever was handed to this client and not acknowledged goes out again after reconnect.
      this.queue.clientLost(client);
      this.setStatus({ state: 'disconnected', reason: lastError ?? 'connection lost' });
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.closing || this.users.size === 0 || this.reconnectTimer) return;
    const windowMs = this.reconnectWindowMs;
    this.reconnectWindowMs = Math.min(windowMs * 2, this.options.reconnectMaxMs ?? DEFAULTS.reconnectMaxMs);
    // "Equal jitter": devices that lost the broker together come back spread over half of each window
    // instead of in lockstep waves, and none retries sooner than half the window, so a device the
    // broker refuses (bad credentials) still backs off, which "full jitter" (0 to all of it) does not promise.
    const random = this.options.random ?? Math.random;
    const delayMs = Math.floor(windowMs / 2 + (random() * windowMs) / 2);
    this.reconnectTimer = setTimeout(() => this.attemptConnect(), delayMs);
    this.emit('reconnect-scheduled', { delayMs });
  }

  private subscribeOnBroker(client: mqtt.MqttClient, topics: string[]): Promise<void> {
    if (topics.length === 0) return Promise.resolve();
    const request: Record<string, { qos: 0 | 1 }> = {};
    for (const topic of topics) request[topic] = { qos: this.subscriptions.get(topic)?.qos ?? 1 };
    return new Promise((resolve, reject) => {
      client.subscribe(request, (error, granted) => {
        if (error) return reject(error);
        for (const grant of granted ?? []) {
          if (grant.qos === 128) this.emit('warning', `subscription to ${grant.topic} refused by the broker`);
        }
        resolve();
      });
    });
  }
}
