/**
 * The gateway operations of PROTOCOL.md §6 as types: the two topics, one builder for each message
 * a gateway sends and one strict parser for each it receives (and, for the stand-in, the reverse),
 * and the bind signature. A sub-device's OTA uses its own $ota topics with the messages of §3.
 */
import { createHmac, randomInt } from 'crypto';
import { printable } from './printable-text';
import type { DeviceIdentity } from './ota-topics';
import { parseJsonObject, type ParseResult } from './ota-messages';

/** gateway → cloud (QoS 0). */
export function gatewayOperationTopic(gateway: DeviceIdentity): string {
  return `$gateway/operation/${gateway.productId}/${gateway.deviceName}`;
}

/** cloud → gateway (the gateway subscribes with QoS 1). */
export function gatewayOperationResultTopic(gateway: DeviceIdentity): string {
  return `$gateway/operation/result/${gateway.productId}/${gateway.deviceName}`;
}

/** Splits `$gateway/operation/<pid>/<dn>` (direction 'operation') or `$gateway/operation/result/<pid>/<dn>` ('result'). */
export function parseGatewayTopic(topic: string): ({ direction: 'operation' | 'result' } & DeviceIdentity) | undefined {
  const parts = topic.split('/');
  if (parts[0] !== '$gateway' || parts[1] !== 'operation') return undefined;
  if (parts.length === 4 && parts[2] && parts[3]) return { direction: 'operation', productId: parts[2], deviceName: parts[3] };
  if (parts.length === 5 && parts[2] === 'result' && parts[3] && parts[4]) return { direction: 'result', productId: parts[3], deviceName: parts[4] };
  return undefined;
}

/** Result codes of gateway operations. */
export const GatewayResultCode = {
  success: 0,
  notBound: -1,
  systemError: -2,
  parameterError: 801,
  noSuchDevice: 802,
  badSignature: 803,
  signMethodUnsupported: 804,
  signatureExpired: 805,
  boundToAnotherGateway: 806,
  notAnOrdinaryDevice: 807,
  forbidden: 808,
  alreadyBound: 809,
  unsupportedSubDevice: 810,
} as const;

const RESULT_DESCRIPTIONS: Record<number, string> = {
  0: 'ok',
  [-1]: 'gateway not bound to this sub-device',
  [-2]: 'system error',
  801: 'parameter error',
  802: 'no such device',
  803: 'signature check failed',
  804: 'sign method unsupported',
  805: 'signature expired',
  806: 'bound to another gateway',
  807: 'not an ordinary device',
  808: 'forbidden',
  809: 'already bound to this gateway',
  810: 'unsupported sub-device',
};

/** "gateway not bound to this sub-device (-1)". */
export function describeGatewayResult(code: number): string {
  return `${RESULT_DESCRIPTIONS[code] ?? 'unknown result'} (${code})`;
}

/** Bind a sub-device that answers this and it counts as bound (809: already bound to this gateway). */
export function isBoundResult(code: number): boolean {
  return code === GatewayResultCode.success || code === GatewayResultCode.alreadyBound;
}

export type SubDeviceOperation = 'online' | 'offline' | 'bind' | 'unbind';
export const SUB_DEVICE_OPERATIONS: readonly SubDeviceOperation[] = ['online', 'offline', 'bind', 'unbind'];
export type BindSignMethod = 'hmacsha256' | 'hmacsha1';

/** A sub-device on the wire. */
export interface WireSubDevice {
  product_id: string;
  device_name: string;
}

export interface BindEntry extends WireSubDevice {
  signature: string;
  random: number;
  timestamp: number;
  signmethod: BindSignMethod;
  authtype: 'psk';
}

export type GatewayOperationMessage =
  | { type: 'online' | 'offline' | 'unbind'; payload: { devices: WireSubDevice[] } }
  | { type: 'bind'; payload: { devices: BindEntry[] } }
  | { type: 'describe_sub_devices' }
  /** The gateway's answers to what the cloud sends. */
  | { type: 'change'; result: number }
  | { type: 'unbind_all'; payload: { result: number } };

/** A sub-device in a reply, with its result. */
export interface SubDeviceResult extends DeviceIdentity {
  result: number;
}

/** What the cloud sends on the result topic, as the gateway reads it. */
export type GatewayCloudMessage =
  /** The reply to online, offline, bind or unbind ('bind' may answer an unbind, as a doc example does). */
  | { type: SubDeviceOperation; devices: SubDeviceResult[] }
  | { type: 'describe_sub_devices'; devices: DeviceIdentity[] }
  /** Bindings changed on the console: status 1 bound, 0 unbound. */
  | { type: 'change'; status: 0 | 1; devices: DeviceIdentity[] }
  | { type: 'unbind_all' };

const toWire = (device: DeviceIdentity): WireSubDevice => ({ product_id: device.productId, device_name: device.deviceName });

export function buildSubDeviceOperation(type: 'online' | 'offline' | 'unbind', devices: DeviceIdentity[]): GatewayOperationMessage {
  return { type, payload: { devices: devices.map(toWire) } };
}

/** The signed string of a bind: `<productId><deviceName>;<random>;<timestamp>`. */
export function bindSignContent(device: DeviceIdentity, random: number, timestamp: number): string {
  return `${device.productId}${device.deviceName};${random};${timestamp}`;
}

/** Base64 HMAC of the bind content, keyed with the sub-device's secret string as it is (not base64-decoded). */
export function signBind(device: DeviceIdentity, deviceSecret: string, random: number, timestamp: number, method: BindSignMethod = 'hmacsha256'): string {
  return createHmac(method === 'hmacsha1' ? 'sha1' : 'sha256', deviceSecret)
    .update(bindSignContent(device, random, timestamp))
    .digest('base64');
}

export interface BindOptions {
  /** Unix seconds (default now). */
  timestamp?: number;
  random?: number;
  signMethod?: BindSignMethod;
}

export function buildBind(device: DeviceIdentity, deviceSecret: string, options: BindOptions = {}): GatewayOperationMessage {
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const random = options.random ?? randomInt(1, 2 ** 31 - 1);
  const signmethod = options.signMethod ?? 'hmacsha256';
  const entry: BindEntry = {
    ...toWire(device),
    signature: signBind(device, deviceSecret, random, timestamp, signmethod),
    random,
    timestamp,
    signmethod,
    authtype: 'psk',
  };
  return { type: 'bind', payload: { devices: [entry] } };
}

export function buildDescribeSubDevices(): GatewayOperationMessage {
  return { type: 'describe_sub_devices' };
}

export function buildChangeAnswer(result = 0): GatewayOperationMessage {
  return { type: 'change', result };
}

export function buildUnbindAllAnswer(result = 0): GatewayOperationMessage {
  return { type: 'unbind_all', payload: { result } };
}

function fail<T>(field: string, error: string): ParseResult<T> {
  return { ok: false, field, error };
}

function integerOf(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) return Number(value);
  return undefined;
}

function identityOf(value: unknown, field: string): ParseResult<DeviceIdentity> {
  if (typeof value !== 'object' || value === null) return fail(field, `${field} is not an object`);
  const fields = value as Record<string, unknown>;
  if (typeof fields.product_id !== 'string' || fields.product_id === '') return fail(`${field}.product_id`, `${field}.product_id is missing`);
  if (typeof fields.device_name !== 'string' || fields.device_name === '') return fail(`${field}.device_name`, `${field}.device_name is missing`);
  return { ok: true, value: { productId: fields.product_id, deviceName: fields.device_name } };
}

function devicesOf(payload: unknown): ParseResult<unknown[]> {
  const devices = (payload as { devices?: unknown } | undefined)?.devices;
  if (!Array.isArray(devices)) return fail('payload.devices', 'payload.devices is not a list');
  return { ok: true, value: devices };
}

/** Parses what the cloud sends a gateway on its result topic. */
export function parseGatewayCloudMessage(payload: Buffer | string | object): ParseResult<GatewayCloudMessage> {
  const parsed = parseJsonObject(payload);
  if (!parsed.ok) return parsed;
  const message = parsed.value;
  const type = message.type;
  if (type === 'unbind_all') return { ok: true, value: { type: 'unbind_all' } };
  if (typeof type !== 'string' || !['online', 'offline', 'bind', 'unbind', 'describe_sub_devices', 'change'].includes(type)) {
    return fail('type', `type "${printable(String(type), 40)}" is not a gateway operation`);
  }
  const list = devicesOf(message.payload);
  if (!list.ok) return list;
  const identities: DeviceIdentity[] = [];
  const results: SubDeviceResult[] = [];
  for (const [index, entry] of list.value.entries()) {
    const identity = identityOf(entry, `payload.devices[${index}]`);
    if (!identity.ok) return identity;
    identities.push(identity.value);
    if (type !== 'describe_sub_devices' && type !== 'change') {
      const result = integerOf((entry as Record<string, unknown>).result);
      if (result === undefined) return fail(`payload.devices[${index}].result`, `payload.devices[${index}].result must be an integer`);
      results.push({ ...identity.value, result });
    }
  }
  if (type === 'describe_sub_devices') return { ok: true, value: { type, devices: identities } };
  if (type === 'change') {
    const status = integerOf((message.payload as Record<string, unknown>).status);
    if (status !== 0 && status !== 1) return fail('payload.status', 'payload.status must be 0 or 1');
    return { ok: true, value: { type, status, devices: identities } };
  }
  return { ok: true, value: { type: type as SubDeviceOperation, devices: results } };
}

/** What a gateway asks, as the cloud reads it. */
export type GatewayRequest =
  | { type: 'online' | 'offline' | 'unbind'; devices: DeviceIdentity[] }
  | { type: 'bind'; devices: (DeviceIdentity & { signature: string; random: number; timestamp: number; signmethod: string })[] }
  | { type: 'describe_sub_devices' }
  | { type: 'change' | 'unbind_all'; result: number };

/** Parses what a gateway publishes on its operation topic (for the stand-in). */
export function parseGatewayRequest(payload: Buffer | string | object): ParseResult<GatewayRequest> {
  const parsed = parseJsonObject(payload);
  if (!parsed.ok) return parsed;
  const message = parsed.value;
  const type = message.type;
  if (type === 'describe_sub_devices') return { ok: true, value: { type } };
  if (type === 'change' || type === 'unbind_all') {
    const raw = type === 'change' ? message.result : (message.payload as Record<string, unknown> | undefined)?.result;
    return { ok: true, value: { type, result: integerOf(raw) ?? 0 } };
  }
  if (typeof type !== 'string' || !(SUB_DEVICE_OPERATIONS as readonly string[]).includes(type)) {
    return fail('type', `type "${printable(String(type), 40)}" is not a gateway operation`);
  }
  const list = devicesOf(message.payload);
  if (!list.ok) return list;
  const devices: (DeviceIdentity & { signature: string; random: number; timestamp: number; signmethod: string })[] = [];
  for (const [index, entry] of list.value.entries()) {
    const identity = identityOf(entry, `payload.devices[${index}]`);
    if (!identity.ok) return identity;
    const fields = entry as Record<string, unknown>;
    if (type !== 'bind') {
      devices.push({ ...identity.value, signature: '', random: 0, timestamp: 0, signmethod: '' });
      continue;
    }
    const random = integerOf(fields.random);
    const timestamp = integerOf(fields.timestamp);
    if (typeof fields.signature !== 'string' || fields.signature === '') return fail(`payload.devices[${index}].signature`, 'signature is missing');
    if (random === undefined) return fail(`payload.devices[${index}].random`, 'random must be an integer');
    if (timestamp === undefined) return fail(`payload.devices[${index}].timestamp`, 'timestamp must be an integer');
    const signmethod = typeof fields.signmethod === 'string' ? fields.signmethod : '';
    devices.push({ ...identity.value, signature: fields.signature, random, timestamp, signmethod });
  }
  if (type === 'bind') return { ok: true, value: { type, devices } };
  return { ok: true, value: { type: type as 'online' | 'offline' | 'unbind', devices: devices.map(({ productId, deviceName }) => ({ productId, deviceName })) } };
}

/** The cloud's reply to an operation on sub-devices. */
export function buildSubDeviceResults(type: SubDeviceOperation, results: SubDeviceResult[]): object {
  return { type, payload: { devices: results.map((entry) => ({ ...toWire(entry), result: entry.result })) } };
}

export function buildDescribeSubDevicesReply(devices: DeviceIdentity[]): object {
  return { type: 'describe_sub_devices', payload: { devices: devices.map(toWire) } };
}

export function buildChange(status: 0 | 1, devices: DeviceIdentity[]): object {
  return { type: 'change', payload: { status, devices: devices.map(toWire) } };
}

export function buildUnbindAll(): object {
  return { type: 'unbind_all' };
}
