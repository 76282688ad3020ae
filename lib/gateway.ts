/**
 * A gateway speaking for the devices behind it over its one connection (PROTOCOL.md §6): its
 * operations on `$gateway/operation` and their replies, and one SubDeviceLink per sub-device that
 * the sub-device's OTA channel uses. A sub-device's topics are used only while it is online: its
 * subscriptions and reports wait until the cloud has answered its `online`, which the gateway
 * asks again after every reconnect before anything else of the sub-device goes out.
 */
import { EventEmitter } from 'events';
import type { DeviceConnection, MessageHandler, PublishOptions } from './device-connection';
import {
  buildBind,
  buildChangeAnswer,
  buildDescribeSubDevices,
  buildSubDeviceOperation,
  buildUnbindAllAnswer,
  describeGatewayResult,
  gatewayOperationResultTopic,
  gatewayOperationTopic,
  GatewayResultCode,
  isBoundResult,
  parseGatewayCloudMessage,
  type GatewayCloudMessage,
  type GatewayOperationMessage,
  type SubDeviceOperation,
  type SubDeviceResult,
} from './gateway-messages';
import type { OtaTransport } from './ota-channel';
import type { DeviceIdentity } from './ota-topics';

export const DEFAULT_GATEWAY_REPLY_TIMEOUT_MS = 20_000;

export class GatewayReplyTimeoutError extends Error {
  constructor(type: string, timeoutMs: number) {
    super(`no reply to ${type} within ${Math.round(timeoutMs / 1000)} s`);
    this.name = 'GatewayReplyTimeoutError';
  }
}

export type SubDeviceState = 'offline' | 'going-online' | 'online' | 'refused';

export interface SubDeviceStatus {
  state: SubDeviceState;
  /** For refused: the cloud's result code and what it means, e.g. "gateway not bound to this sub-device (-1)". */
  resultCode?: number;
  reason?: string;
}

const keyOf = (device: DeviceIdentity) => `${device.productId}/${device.deviceName}`;
const sameDevice = (a: DeviceIdentity, b: DeviceIdentity) => a.productId === b.productId && a.deviceName === b.deviceName;

export interface SubDeviceLinkEvents {
  status: [SubDeviceStatus];
  /** Online, and its subscriptions are in place: time to report its version. */
  online: [];
}

/** One sub-device on its gateway's connection: the transport of its OTA channel. */
export class SubDeviceLink extends EventEmitter<SubDeviceLinkEvents> implements OtaTransport {
  readonly device: DeviceIdentity;
  /** When given and the cloud answers online with -1 (not bound), the gateway binds it first. */
  deviceSecret?: string;
  private currentStatus: SubDeviceStatus = { state: 'offline' };
  private readonly users = new Set<string>();

  constructor(
    private readonly gateway: Gateway,
    device: DeviceIdentity,
  ) {
    super();
    this.device = { productId: device.productId, deviceName: device.deviceName };
  }

  get status(): SubDeviceStatus {
    return this.currentStatus;
  }

  get online(): boolean {
    return this.currentStatus.state === 'online';
  }

  get inUse(): boolean {
    return this.users.size > 0;
  }

  subscribe(topic: string, qos: 0 | 1, handler: MessageHandler): () => void {
    return this.gateway.connection.subscribe(topic, qos, handler, { when: () => this.online });
  }

  publish(topic: string, payload: string | Buffer | object, options: PublishOptions): Promise<void> {
    return this.gateway.connection.publish(topic, payload, { ...options, when: () => this.online });
  }

  /** A flow node of the sub-device starts: the first brings it online. */
  register(userId: string): void {
    this.users.add(userId);
    this.gateway.connection.register(`${keyOf(this.device)}:${userId}`);
    if (this.users.size === 1) void this.gateway.bringOnline([this]);
  }

  /** A flow node stops: the last takes the sub-device offline. */
  async deregister(userId: string): Promise<void> {
    if (!this.users.delete(userId)) return;
    if (this.users.size === 0 && this.gateway.connection.connected) {
      await this.gateway.takeOffline(this).catch(() => undefined);
    }
    await this.gateway.connection.deregister(`${keyOf(this.device)}:${userId}`);
  }

  /** @internal the gateway's view of the sub-device changed. */
  setStatus(status: SubDeviceStatus): void {
    const changed = status.state !== this.currentStatus.state || status.reason !== this.currentStatus.reason;
    this.currentStatus = status;
    if (changed) this.emit('status', status);
  }
}

export interface GatewayEvents {
  /** What the cloud sends unasked: `change` (bindings changed on the console) and `unbind_all`. */
  'cloud-message': [GatewayCloudMessage];
  warning: [string];
}

export interface GatewayOptions {
  /** How long an operation waits for its reply (default 20 s, as the C SDK). */
  replyTimeoutMs?: number;
}

interface PendingReply {
  matches: (message: GatewayCloudMessage) => boolean;
  resolve: (message: GatewayCloudMessage) => void;
}

export class Gateway extends EventEmitter<GatewayEvents> {
  readonly connection: DeviceConnection;
  private readonly replyTimeoutMs: number;
  private readonly links = new Map<string, SubDeviceLink>();
  private pending: PendingReply[] = [];
  private readonly stopListening: () => void;

  constructor(connection: DeviceConnection, options: GatewayOptions = {}) {
    super();
    this.connection = connection;
    this.replyTimeoutMs = options.replyTimeoutMs ?? DEFAULT_GATEWAY_REPLY_TIMEOUT_MS;
    this.stopListening = connection.subscribe(gatewayOperationResultTopic(connection.device), 1, (payload) => this.dispatch(payload));
    connection.on('connect', this.onConnect);
    connection.on('status', this.onStatus);
  }

  /** The link of a sub-device (one per sub-device, however many ask). */
  link(device: DeviceIdentity): SubDeviceLink {
    const key = keyOf(device);
    let link = this.links.get(key);
    if (!link) {
      link = new SubDeviceLink(this, device);
      this.links.set(key, link);
    }
    return link;
  }

  /** Sends online, offline or unbind for the devices and resolves with the cloud's result for each. */
  async operate(type: 'online' | 'offline' | 'unbind', devices: DeviceIdentity[]): Promise<SubDeviceResult[]> {
    // Tencent's doc shows an unbind answered with type "bind": both are taken.
    const types: SubDeviceOperation[] = type === 'unbind' ? ['unbind', 'bind'] : [type];
    const reply = await this.request(buildSubDeviceOperation(type, devices), type, (message) => {
      if (!(types as string[]).includes(message.type) || !('devices' in message)) return false;
      const results = message.devices as SubDeviceResult[];
      return devices.every((device) => results.some((result) => sameDevice(result, device)));
    });
    return (reply as { devices: SubDeviceResult[] }).devices.filter((result) => devices.some((device) => sameDevice(result, device)));
  }

  /** Binds the sub-device to this gateway with its secret; resolves with the result code (809: it already was). */
  async bind(device: DeviceIdentity, deviceSecret: string): Promise<number> {
    const reply = await this.request(
      buildBind(device, deviceSecret),
      'bind',
      (message) => message.type === 'bind' && message.devices.some((result) => sameDevice(result, device)),
    );
    const result = (reply as { devices: SubDeviceResult[] }).devices.find((entry) => sameDevice(entry, device));
    return result?.result ?? GatewayResultCode.systemError;
  }

  /** The sub-devices bound to this gateway, as the cloud knows them. */
  async describeSubDevices(): Promise<DeviceIdentity[]> {
    const reply = await this.request(buildDescribeSubDevices(), 'describe_sub_devices', (message) => message.type === 'describe_sub_devices');
    return (reply as { devices: DeviceIdentity[] }).devices;
  }

  /**
   * Brings the sub-devices online (one request), binding first those the cloud says are not bound
   * when their secret is known; each link then opens its topics and says it is online.
   */
  async bringOnline(links: SubDeviceLink[]): Promise<void> {
    const wanted = links.filter((link) => link.inUse);
    if (wanted.length === 0 || !this.connection.connected) return;
    for (const link of wanted) link.setStatus({ state: 'going-online' });
    let results: SubDeviceResult[];
    try {
      results = await this.operate(
        'online',
        wanted.map((link) => link.device),
      );
    } catch (error) {
      for (const link of wanted) link.setStatus({ state: 'offline', reason: (error as Error).message });
      return;
    }
    const online: SubDeviceLink[] = [];
    for (const link of wanted) {
      let code = results.find((result) => sameDevice(result, link.device))?.result ?? GatewayResultCode.systemError;
      if (code === GatewayResultCode.notBound && link.deviceSecret) {
        try {
          const bound = await this.bind(link.device, link.deviceSecret);
          code = isBoundResult(bound) ? ((await this.operate('online', [link.device]))[0]?.result ?? GatewayResultCode.systemError) : bound;
        } catch (error) {
          link.setStatus({ state: 'offline', reason: (error as Error).message });
          continue;
        }
      }
      if (code === GatewayResultCode.success) online.push(link);
      else link.setStatus({ state: 'refused', resultCode: code, reason: describeGatewayResult(code) });
    }
    if (online.length === 0) return;
    for (const link of online) link.setStatus({ state: 'online' });
    // Subscriptions first, then the reports that waited: the cloud re-pushes a command right after a report_version.
    await this.connection.syncSubscriptions().catch((error: Error) => this.emit('warning', `subscribing for sub-devices failed: ${error.message}`));
    this.connection.flushQueue();
    for (const link of online) link.emit('online');
  }

  /** Takes a sub-device offline (its topics close before the request goes out). */
  async takeOffline(link: SubDeviceLink): Promise<SubDeviceResult[]> {
    link.setStatus({ state: 'offline' });
    await this.connection.syncSubscriptions().catch(() => undefined);
    return this.operate('offline', [link.device]);
  }

  close(): void {
    this.stopListening();
    this.connection.off('connect', this.onConnect);
    this.connection.off('status', this.onStatus);
    for (const link of this.links.values()) link.setStatus({ state: 'offline' });
  }

  private readonly onConnect = () => {
    void this.bringOnline([...this.links.values()]);
  };

  private readonly onStatus = () => {
    // With the connection gone, so is every sub-device's online state.
    if (this.connection.connected) return;
    for (const link of this.links.values()) link.setStatus({ state: 'offline' });
  };

  private async request(message: GatewayOperationMessage, type: string, matches: (message: GatewayCloudMessage) => boolean): Promise<GatewayCloudMessage> {
    let entry: PendingReply | undefined;
    let timer: NodeJS.Timeout | undefined;
    const reply = new Promise<GatewayCloudMessage>((resolve, reject) => {
      entry = { matches, resolve };
      this.pending.push(entry);
      timer = setTimeout(() => reject(new GatewayReplyTimeoutError(type, this.replyTimeoutMs)), this.replyTimeoutMs);
    });
    reply.catch(() => undefined);
    try {
      // Listening starts before the publish: the reply may come before the publish settles.
      await this.connection.publish(gatewayOperationTopic(this.connection.device), message, { qos: 0 });
      return await reply;
    } finally {
      clearTimeout(timer);
      this.pending = this.pending.filter((pending) => pending !== entry);
    }
  }

  private dispatch(payload: Buffer): void {
    const parsed = parseGatewayCloudMessage(payload);
    if (!parsed.ok) {
      this.emit('warning', `ignored a message on the gateway's result topic: ${parsed.error}`);
      return;
    }
    const message = parsed.value;
    const waiting = this.pending.find((pending) => pending.matches(message));
    if (waiting) {
      this.pending = this.pending.filter((pending) => pending !== waiting);
      waiting.resolve(message);
      return;
    }
    if (message.type === 'change') {
      this.connection.publish(gatewayOperationTopic(this.connection.device), buildChangeAnswer(0), { qos: 0 }).catch(() => undefined);
      for (const device of message.devices) {
        const link = this.links.get(keyOf(device));
        if (!link) continue;
        if (message.status === 0) {
          link.setStatus({ state: 'refused', resultCode: GatewayResultCode.notBound, reason: describeGatewayResult(GatewayResultCode.notBound) });
          void this.connection.syncSubscriptions().catch(() => undefined);
        } else if (!link.online) {
          void this.bringOnline([link]);
        }
      }
    } else if (message.type === 'unbind_all') {
      this.connection.publish(gatewayOperationTopic(this.connection.device), buildUnbindAllAnswer(0), { qos: 0 }).catch(() => undefined);
      for (const link of this.links.values()) {
        link.setStatus({ state: 'refused', resultCode: GatewayResultCode.notBound, reason: describeGatewayResult(GatewayResultCode.notBound) });
      }
      void this.connection.syncSubscriptions().catch(() => undefined);
    }
    this.emit('cloud-message', message);
  }
}
