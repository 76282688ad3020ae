/**
 * The cloud's side of gateways (PROTOCOL.md §6): answers what a gateway publishes on
 * `$gateway/operation/<pid>/<dn>` (online, offline, bind, unbind, describe_sub_devices) on its result
 * topic, keeps the bindings, tells a connected gateway about bindings made on the console (`change`,
 * `unbind_all`) and decides which sub-devices are online on the gateway's connection, which is what
 * lets the broker grant the gateway their topics.
 */
import { EventEmitter } from 'events';
import { timingSafeEqual } from 'crypto';
import {
  buildChange,
  buildDescribeSubDevicesReply,
  buildSubDeviceResults,
  buildUnbindAll,
  gatewayOperationResultTopic,
  GatewayResultCode,
  parseGatewayRequest,
  parseGatewayTopic,
  signBind,
  SUB_DEVICE_OPERATIONS,
  type GatewayRequest,
  type SubDeviceOperation,
  type SubDeviceResult,
} from '../lib/gateway-messages';
import { parseJsonObject } from '../lib/ota-messages';
import type { DeviceIdentity } from '../lib/ota-topics';
import type { DeviceRegistry, RegisteredDevice } from './device-registry';
import type { GatewayBinding, GatewayBindings } from './gateway-bindings';
import type { DevicePublish, SimulatedMqttBroker } from './mqtt-broker';

/** How far a bind's timestamp may be from the cloud's clock. */
export const BIND_TIMESTAMP_TOLERANCE_SECONDS = 600;
const MAX_HISTORY_ENTRIES = 200;

/** One gateway operation as the cloud saw it: what the gateway asked and what it was answered, or what the cloud sent unasked. */
export interface GatewayHistoryEntry {
  time: string;
  /** 'gateway': the gateway published it (with the cloud's answer); 'cloud': the cloud sent it unasked. */
  from: 'gateway' | 'cloud';
  /** The operation, or 'invalid' for a payload that names none. */
  type: SubDeviceOperation | 'describe_sub_devices' | 'change' | 'unbind_all' | 'invalid';
  /** The sub-devices of the operation, with the result the cloud answered for each (none for what the cloud sent). */
  devices?: (DeviceIdentity & { result?: number })[];
  /** change from the cloud: 1 bound, 0 unbound. */
  status?: 0 | 1;
  /** The gateway's answer to change or unbind_all; 801 for an operation without a device list. */
  result?: number;
  /** Why the payload was refused. */
  error?: string;
  /** The raw payload of a refused operation, cut to 512 characters. */
  payload?: string;
}

/** A sub-device bound to a gateway, as the console shows it. */
export interface SubDeviceBinding extends DeviceIdentity {
  boundAt: string;
  /** Online on the gateway's connection, as the gateway reported it. */
  online: boolean;
}

/** What deleting a device unbound: a sub-device from its gateway, or a gateway's sub-devices. */
export interface ForgottenBindings {
  gateway?: DeviceIdentity;
  subDevices?: DeviceIdentity[];
}

/** A console request about bindings the cloud refuses: 400 bad request, 404 unknown, 409 conflicting. */
export class GatewayRequestError extends Error {
  constructor(
    readonly status: 400 | 404 | 409,
    message: string,
  ) {
    super(message);
    this.name = 'GatewayRequestError';
  }
}

export interface GatewayServiceEvents {
  /** A gateway operation was handled (answered, if it gets an answer) or the cloud sent one unasked. */
  operation: [DeviceIdentity & { entry: GatewayHistoryEntry }];
}

export interface GatewayServiceOptions {
  broker: SimulatedMqttBroker;
  registry: DeviceRegistry;
  bindings: GatewayBindings;
  now?: () => number;
}

type BindRequestEntry = Extract<GatewayRequest, { type: 'bind' }>['devices'][number];

function keyOf(device: DeviceIdentity): string {
  return `${device.productId}/${device.deviceName}`;
}

function identityOf(device: DeviceIdentity): DeviceIdentity {
  return { productId: device.productId, deviceName: device.deviceName };
}

function sameSignature(received: string, expected: string): boolean {
  const a = Buffer.from(received, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

function isSubDeviceOperation(type: unknown): type is SubDeviceOperation {
  return typeof type === 'string' && (SUB_DEVICE_OPERATIONS as readonly string[]).includes(type);
}

export class GatewayService extends EventEmitter<GatewayServiceEvents> {
  private readonly broker: SimulatedMqttBroker;
  private readonly registry: DeviceRegistry;
  private readonly bindings: GatewayBindings;
  private readonly now: () => number;
  private readonly histories = new Map<string, GatewayHistoryEntry[]>();
  /** The operations of one gateway are handled one after another, in the order they arrived. */
  private readonly queues = new Map<string, Promise<void>>();
  private closed = false;
  private readonly onPublish = (publish: DevicePublish) => this.enqueueOperation(publish);

  constructor(options: GatewayServiceOptions) {
    super();
    this.broker = options.broker;
    this.registry = options.registry;
    this.bindings = options.bindings;
    this.now = options.now ?? Date.now;
    this.broker.on('device-publish', this.onPublish);
  }

  /** The gateway's sub-devices with their online state (console: GET .../bindings). */
  listBindings(gateway: DeviceIdentity): SubDeviceBinding[] {
    this.requireGateway(gateway);
    return this.bindings.subDevicesOf(gateway).map((binding) => this.viewOf(binding));
  }

  /** The gateway a sub-device is bound to, if any. */
  gatewayOf(subDevice: DeviceIdentity): DeviceIdentity | undefined {
    return this.bindings.gatewayOf(subDevice);
  }

  /** What the gateway asked and was answered, oldest first. */
  history(gateway: DeviceIdentity): GatewayHistoryEntry[] {
    return (this.histories.get(keyOf(gateway)) ?? []).map((entry) => JSON.parse(JSON.stringify(entry)) as GatewayHistoryEntry);
  }

  /** Binds on the console; a connected gateway is told with `change` status 1. */
  bindFromConsole(gateway: DeviceIdentity, subDevice: DeviceIdentity): Promise<SubDeviceBinding> {
    this.requireGateway(gateway);
    return this.runForGateway(gateway, async () => {
      const registered = this.registry.find(subDevice.productId, subDevice.deviceName);
      if (!registered) throw new GatewayRequestError(404, `device ${keyOf(subDevice)} does not exist`);
      if (registered.deviceType === 'gateway') throw new GatewayRequestError(400, `${keyOf(subDevice)} is a gateway, not an ordinary device`);
      const boundTo = this.bindings.gatewayOf(subDevice);
      if (boundTo) {
        const where = keyOf(boundTo) === keyOf(gateway) ? 'this gateway' : `gateway ${keyOf(boundTo)}`;
        throw new GatewayRequestError(409, `${keyOf(subDevice)} is already bound to ${where}`);
      }
      const binding = await this.bindings.bind(gateway, subDevice);
      await this.tellGateway(gateway, buildChange(1, [subDevice]), { from: 'cloud', type: 'change', status: 1, devices: [identityOf(subDevice)] });
      return this.viewOf(binding);
    });
  }

  /** Unbinds on the console: the sub-device goes offline and a connected gateway is told with `change` status 0. */
  unbindFromConsole(gateway: DeviceIdentity, subDevice: DeviceIdentity): Promise<void> {
    this.requireGateway(gateway);
    return this.runForGateway(gateway, async () => {
      if (!this.bindings.isBound(gateway, subDevice)) throw new GatewayRequestError(404, `${keyOf(subDevice)} is not bound to gateway ${keyOf(gateway)}`);
      await this.unbind(gateway, subDevice);
      await this.tellGateway(gateway, buildChange(0, [subDevice]), { from: 'cloud', type: 'change', status: 0, devices: [identityOf(subDevice)] });
    });
  }

  /** Unbinds every sub-device of the gateway on the console; a connected gateway is sent `unbind_all`. */
  unbindAllFromConsole(gateway: DeviceIdentity): Promise<DeviceIdentity[]> {
    this.requireGateway(gateway);
    return this.runForGateway(gateway, async () => {
      const unbound: DeviceIdentity[] = [];
      for (const binding of this.bindings.subDevicesOf(gateway)) {
        await this.unbind(gateway, binding.subDevice);
        unbound.push(identityOf(binding.subDevice));
      }
      await this.tellGateway(gateway, buildUnbindAll(), { from: 'cloud', type: 'unbind_all', devices: unbound });
      return unbound;
    });
  }

  /**
   * Drops the bindings of a device that is being deleted, as the cloud does: a bound sub-device is unbound
   * (it goes offline; a connected gateway is told `change` status 0), a gateway's sub-devices are all unbound
   * (offline with it, nothing sent: its connection is about to end). Answers what was unbound.
   */
  async forgetDevice(device: RegisteredDevice): Promise<ForgottenBindings> {
    const gateway = this.bindings.gatewayOf(device);
    if (gateway) {
      await this.runForGateway(gateway, async () => {
        if (!this.bindings.isBound(gateway, device)) return;
        await this.unbind(gateway, device);
        await this.tellGateway(gateway, buildChange(0, [device]), { from: 'cloud', type: 'change', status: 0, devices: [identityOf(device)] });
      });
      return { gateway: identityOf(gateway) };
    }
    if (device.deviceType !== 'gateway') return {};
    return this.runForGateway(device, async () => {
      const subDevices: DeviceIdentity[] = [];
      for (const binding of this.bindings.subDevicesOf(device)) {
        await this.unbind(device, binding.subDevice);
        subDevices.push(identityOf(binding.subDevice));
      }
      this.histories.delete(keyOf(device));
      return { subDevices };
    });
  }

  /** Stops listening and waits for the operations being handled and the bindings being saved. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.broker.off('device-publish', this.onPublish);
    await Promise.all([...this.queues.values()]);
    await this.bindings.flush();
  }

  private requireGateway(gateway: DeviceIdentity): RegisteredDevice {
    const registered = this.registry.find(gateway.productId, gateway.deviceName);
    if (!registered) throw new GatewayRequestError(404, `device ${keyOf(gateway)} does not exist`);
    if (registered.deviceType !== 'gateway') throw new GatewayRequestError(404, `${keyOf(gateway)} is not a gateway`);
    return registered;
  }

  private viewOf(binding: GatewayBinding): SubDeviceBinding {
    return { ...identityOf(binding.subDevice), boundAt: binding.boundAt, online: this.broker.isOnline(binding.subDevice) };
  }

  private runForGateway<T>(gateway: DeviceIdentity, work: () => Promise<T>): Promise<T> {
    const key = keyOf(gateway);
    const previous = this.queues.get(key) ?? Promise.resolve();
    const result = previous.then(work);
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(key, settled);
    void settled.then(() => {
      if (this.queues.get(key) === settled) this.queues.delete(key);
    });
    return result;
  }

  private enqueueOperation(publish: DevicePublish): void {
    const topic = parseGatewayTopic(publish.topic);
    if (!topic || topic.direction !== 'operation' || this.closed) return;
    // The broker lets only the gateway itself publish on its operation topic.
    const gateway = { productId: topic.productId, deviceName: topic.deviceName };
    if (keyOf(gateway) !== keyOf(publish)) return;
    void this.runForGateway(gateway, () => this.handleOperation(gateway, publish)).catch(() => undefined);
  }

  private async handleOperation(gateway: DeviceIdentity, publish: DevicePublish): Promise<void> {
    const entry: GatewayHistoryEntry = { time: publish.time.toISOString(), from: 'gateway', type: 'invalid' };
    const parsed = parseGatewayRequest(publish.payload);
    if (parsed.ok) return this.handleRequest(gateway, parsed.value, entry);

    // Not a whole valid request: each sub-device entry that parses on its own is still handled, the rest get 801.
    const raw = parseJsonObject(publish.payload);
    const type = raw.ok ? raw.value.type : undefined;
    entry.error = `${parsed.field}: ${parsed.error}`;
    entry.payload = publish.payload.toString('utf8').slice(0, 512);
    if (!raw.ok || !isSubDeviceOperation(type)) {
      // Not addressed to any operation: nothing to answer.
      return this.record(gateway, entry);
    }
    entry.type = type;
    const list = (raw.value.payload as { devices?: unknown } | undefined)?.devices;
    if (!Array.isArray(list)) {
      entry.result = GatewayResultCode.parameterError;
      this.record(gateway, entry);
      return this.reply(gateway, { type, payload: { result: GatewayResultCode.parameterError, devices: [] } });
    }
    const results: SubDeviceResult[] = [];
    for (const item of list) {
      const single = parseGatewayRequest({ type, payload: { devices: [item] } });
      if (single.ok && single.value.type === type && 'devices' in single.value) {
        results.push(...(await this.handleSubDevices(gateway, single.value)));
        continue;
      }
      const fields = typeof item === 'object' && item !== null ? (item as Record<string, unknown>) : {};
      results.push({
        productId: typeof fields.product_id === 'string' ? fields.product_id : '',
        deviceName: typeof fields.device_name === 'string' ? fields.device_name : '',
        result: GatewayResultCode.parameterError,
      });
    }
    entry.devices = results.map((result) => ({ ...result }));
    this.record(gateway, entry);
    await this.reply(gateway, buildSubDeviceResults(type, results));
  }

  /** Handles a valid request; what the gateway is answered is recorded before it is sent. */
  private async handleRequest(gateway: DeviceIdentity, request: GatewayRequest, entry: GatewayHistoryEntry): Promise<void> {
    entry.type = request.type;
    switch (request.type) {
      case 'describe_sub_devices': {
        const devices = this.bindings.subDevicesOf(gateway).map((binding) => identityOf(binding.subDevice));
        entry.devices = devices.map((device) => ({ ...device }));
        this.record(gateway, entry);
        return this.reply(gateway, buildDescribeSubDevicesReply(devices));
      }
      case 'change':
      case 'unbind_all':
        // The gateway's answer to what the cloud sent: recorded, not answered.
        entry.result = request.result;
        return this.record(gateway, entry);
      default: {
        const results = await this.handleSubDevices(gateway, request);
        entry.devices = results.map((result) => ({ ...result }));
        this.record(gateway, entry);
        return this.reply(gateway, buildSubDeviceResults(request.type, results));
      }
    }
  }

  private async handleSubDevices(gateway: DeviceIdentity, request: Extract<GatewayRequest, { devices: unknown }>): Promise<SubDeviceResult[]> {
    const results: SubDeviceResult[] = [];
    for (const device of request.devices) {
      let result: number;
      if (request.type === 'bind') result = await this.bindFromGateway(gateway, device as BindRequestEntry);
      else if (request.type === 'unbind') result = await this.unbindFromGateway(gateway, device);
      else result = this.setOnline(gateway, device, request.type === 'online');
      results.push({ ...identityOf(device), result });
    }
    return results;
  }

  private setOnline(gateway: DeviceIdentity, subDevice: DeviceIdentity, online: boolean): number {
    if (!this.registry.find(subDevice.productId, subDevice.deviceName)) return GatewayResultCode.noSuchDevice;
    if (!this.bindings.isBound(gateway, subDevice)) return GatewayResultCode.notBound;
    if (!online) {
      this.broker.setSubDeviceOffline(subDevice);
      return GatewayResultCode.success;
    }
    // False only if the gateway's connection has just gone.
    return this.broker.setSubDeviceOnline(gateway, subDevice) ? GatewayResultCode.success : GatewayResultCode.systemError;
  }

  private async bindFromGateway(gateway: DeviceIdentity, entry: BindRequestEntry): Promise<number> {
    const subDevice = identityOf(entry);
    const registered = this.registry.find(subDevice.productId, subDevice.deviceName);
    if (!registered) return GatewayResultCode.noSuchDevice;
    if (registered.deviceType === 'gateway') return GatewayResultCode.notAnOrdinaryDevice;
    if (entry.signmethod !== 'hmacsha1' && entry.signmethod !== 'hmacsha256') return GatewayResultCode.signMethodUnsupported;
    const expected = signBind(subDevice, registered.deviceSecret, entry.random, entry.timestamp, entry.signmethod);
    if (!sameSignature(entry.signature, expected)) return GatewayResultCode.badSignature;
    if (Math.abs(Math.floor(this.now() / 1000) - entry.timestamp) > BIND_TIMESTAMP_TOLERANCE_SECONDS) return GatewayResultCode.signatureExpired;
    const boundTo = this.bindings.gatewayOf(subDevice);
    if (boundTo) return keyOf(boundTo) === keyOf(gateway) ? GatewayResultCode.alreadyBound : GatewayResultCode.boundToAnotherGateway;
    try {
      await this.bindings.bind(gateway, subDevice);
    } catch {
      return GatewayResultCode.systemError;
    }
    return GatewayResultCode.success;
  }

  private async unbindFromGateway(gateway: DeviceIdentity, subDevice: DeviceIdentity): Promise<number> {
    if (!this.registry.find(subDevice.productId, subDevice.deviceName)) return GatewayResultCode.noSuchDevice;
    if (!this.bindings.isBound(gateway, subDevice)) return GatewayResultCode.notBound;
    try {
      await this.unbind(gateway, subDevice);
    } catch {
      return GatewayResultCode.systemError;
    }
    return GatewayResultCode.success;
  }

  /** Takes the sub-device offline (its gateway loses its topics at once), then unbinds it. */
  private async unbind(gateway: DeviceIdentity, subDevice: DeviceIdentity): Promise<void> {
    this.broker.setSubDeviceOffline(subDevice);
    await this.bindings.unbind(gateway, subDevice);
  }

  /** Sends an unasked message to the gateway and records it, if the gateway is connected (nothing is queued for later). */
  private async tellGateway(gateway: DeviceIdentity, message: object, entry: Omit<GatewayHistoryEntry, 'time'>): Promise<void> {
    if (!this.broker.isConnected(gateway)) return;
    this.record(gateway, { time: new Date(this.now()).toISOString(), ...entry });
    await this.reply(gateway, message);
  }

  /** Publishes on the gateway's result topic with QoS 0, as the cloud sends its messages. */
  private async reply(gateway: DeviceIdentity, message: object): Promise<void> {
    try {
      await this.broker.publishToDevice(gateway, gatewayOperationResultTopic(gateway), JSON.stringify(message), 0);
    } catch {
      // The broker is closing; the gateway asks again after it reconnects.
    }
  }

  private record(gateway: DeviceIdentity, entry: GatewayHistoryEntry): void {
    const key = keyOf(gateway);
    const history = this.histories.get(key) ?? [];
    history.push(entry);
    if (history.length > MAX_HISTORY_ENTRIES) history.splice(0, history.length - MAX_HISTORY_ENTRIES);
    this.histories.set(key, history);
    this.emit('operation', { ...identityOf(gateway), entry: JSON.parse(JSON.stringify(entry)) as GatewayHistoryEntry });
  }
}
