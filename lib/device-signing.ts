/**
 * Tencent IoT Hub key authentication (PROTOCOL.md §1): the one place that signs and checks
 * MQTT usernames and passwords. The stand-in checks with the same functions the device signs with.
 */
import { createHmac, randomInt } from 'crypto';
import type { DeviceIdentity } from './ota-topics';

export type SignatureAlgorithm = 'hmacsha256' | 'hmacsha1';

/** sdkappid sent by the docs and the Java SDK; the Python and C SDKs send 21010406. */
export const SDK_APP_ID = '12010126';
export const KNOWN_SDK_APP_IDS: readonly string[] = ['12010126', '21010406'];

/** How long a signature we make stays valid. */
export const DEFAULT_SIGNATURE_LIFETIME_SECONDS = 24 * 60 * 60;

export class DeviceSecretError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceSecretError';
  }
}

/** Decodes a console deviceSecret (standard base64), refusing text that is not base64. */
export function decodeDeviceSecret(deviceSecret: string): Buffer {
  const text = deviceSecret.trim();
  if (text.length === 0) throw new DeviceSecretError('device secret is empty');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new DeviceSecretError('device secret is not valid base64');
  }
  return Buffer.from(text, 'base64');
}

export function clientIdOf(device: DeviceIdentity): string {
  return `${device.productId}${device.deviceName}`;
}

const CONNID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

export function randomConnectionId(): string {
  let id = '';
  for (let i = 0; i < 5; i++) id += CONNID_ALPHABET[randomInt(CONNID_ALPHABET.length)];
  return id;
}

export function buildUsername(clientId: string, connectionId: string, expirySeconds: number, sdkAppId = SDK_APP_ID): string {
  return `${clientId};${sdkAppId};${connectionId};${expirySeconds}`;
}

/** Lowercase hex HMAC of the username with the decoded secret, followed by `;<algorithm>`. */
export function signPassword(username: string, deviceSecret: string, algorithm: SignatureAlgorithm = 'hmacsha256'): string {
  const key = decodeDeviceSecret(deviceSecret);
  const digest = createHmac(algorithm === 'hmacsha256' ? 'sha256' : 'sha1', key)
    .update(username)
    .digest('hex');
  return `${digest};${algorithm}`;
}

export interface MqttCredentials {
  clientId: string;
  username: string;
  password: string;
}

/** A fresh username (new connid, new expiry) and its password, for one (re)connect. */
export function signConnection(device: DeviceIdentity, deviceSecret: string, nowMs = Date.now(), lifetimeSeconds = DEFAULT_SIGNATURE_LIFETIME_SECONDS): MqttCredentials {
  const clientId = clientIdOf(device);
  const username = buildUsername(clientId, randomConnectionId(), Math.floor(nowMs / 1000) + lifetimeSeconds);
  return { clientId, username, password: signPassword(username, deviceSecret) };
}

export interface ParsedUsername {
  clientId: string;
  sdkAppId: string;
  connectionId: string;
  /**
   * Unix seconds until which the signature is valid, read as the cloud reads it. The Python SDK sends
   * the current time in milliseconds here: as seconds that lies far in the future, and the cloud accepts it.
   */
  expirySeconds: number;
}

export function parseUsername(username: string): ParsedUsername | undefined {
  const parts = username.split(';');
  if (parts.length !== 4) return undefined;
  const [clientId, sdkAppId, connectionId, expiry] = parts;
  if (!clientId || !/^\d+$/.test(expiry)) return undefined;
  return { clientId, sdkAppId, connectionId, expirySeconds: Number(expiry) };
}

export type SignatureCheck = { ok: true } | { ok: false; reason: string };

/**
 * Checks what the cloud checks in the username of every device, whatever its authentication: its shape,
 * and that it names the client id (for a certificate device, the device its certificate was issued to).
 */
export function checkUsername(clientId: string, username: string): { ok: true; parsed: ParsedUsername } | { ok: false; reason: string } {
  const parsed = parseUsername(username);
  if (!parsed) return { ok: false, reason: username === '' ? 'empty username' : 'malformed username' };
  if (parsed.clientId !== clientId) return { ok: false, reason: `username names client id ${parsed.clientId}, not ${clientId}` };
  return { ok: true, parsed };
}

/** Checks a key-auth CONNECT as the cloud does: username shape, sdkappid, expiry and HMAC. */
export function checkSignedConnection(clientId: string, username: string, password: string, deviceSecret: string, nowMs = Date.now()): SignatureCheck {
  const checked = checkUsername(clientId, username);
  if (!checked.ok) return checked;
  const parsed = checked.parsed;
  if (!KNOWN_SDK_APP_IDS.includes(parsed.sdkAppId)) return { ok: false, reason: `unknown sdkappid ${parsed.sdkAppId}` };
  if (parsed.expirySeconds * 1000 < nowMs) return { ok: false, reason: 'signature expired' };
  const [, algorithm] = password.split(';');
  if (algorithm !== 'hmacsha256' && algorithm !== 'hmacsha1') return { ok: false, reason: 'unknown signature method' };
  let expected: string;
  try {
    expected = signPassword(username, deviceSecret, algorithm);
  } catch (error) {
    return { ok: false, reason: (error as Error).message };
  }
  return expected === password.toLowerCase() ? { ok: true } : { ok: false, reason: 'bad signature' };
}
