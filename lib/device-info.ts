/** The console's device_info.json (PROTOCOL.md §1), read into the fields the config node holds. */
import { REGIONS, TRANSPORTS, type Region, type Transport } from './device-endpoint';
import { decodeDeviceSecret } from './device-signing';

export type AuthMode = 'key' | 'cert';

export interface DeviceInfo {
  productId: string;
  deviceName: string;
  authMode: AuthMode;
  deviceSecret?: string;
  /** File names given in cert_deviceinfo; the PEM contents are pasted separately. */
  certificateFiles?: { caFile?: string; certFile?: string; privateKeyFile?: string };
  region?: Region;
  /** From `stand_in`, which `tencent-iot-hub-sim device create --for-stand-in` adds: where the stand-in listens, and its CA. */
  endpoint?: { host: string; port: number; transport: Transport; caPem?: string };
}

export const PRODUCT_ID_PATTERN = /^[A-Za-z0-9]{1,32}$/;
export const DEVICE_NAME_PATTERN = /^[A-Za-z0-9_\-.:@]{1,48}$/;

export function describeInvalidProductId(value: string): string | undefined {
  return PRODUCT_ID_PATTERN.test(value) ? undefined : 'productId must be 1-32 letters or digits';
}

export function describeInvalidDeviceName(value: string): string | undefined {
  return DEVICE_NAME_PATTERN.test(value) ? undefined : 'deviceName must be 1-48 characters of letters, digits and _-.:@';
}

export function parseDeviceInfo(text: string): DeviceInfo {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error('device_info.json is not valid JSON');
  }
  if (typeof value !== 'object' || value === null) throw new Error('device_info.json is not a JSON object');
  const fields = value as Record<string, unknown>;
  const productId = String(fields.productId ?? '');
  const deviceName = String(fields.deviceName ?? '');
  const productProblem = describeInvalidProductId(productId);
  if (productProblem) throw new Error(productProblem);
  const nameProblem = describeInvalidDeviceName(deviceName);
  if (nameProblem) throw new Error(nameProblem);
  const authMode: AuthMode = String(fields.auth_mode ?? 'KEY').toUpperCase() === 'CERT' ? 'cert' : 'key';
  const info: DeviceInfo = { productId, deviceName, authMode };
  if (typeof fields.region === 'string') {
    const region = fields.region.toLowerCase() as Region;
    if (REGIONS.includes(region)) info.region = region;
  }
  if (authMode === 'key') {
    const keyInfo = fields.key_deviceinfo as Record<string, unknown> | undefined;
    const secret = keyInfo?.deviceSecret;
    if (typeof secret !== 'string') throw new Error('key_deviceinfo.deviceSecret is missing');
    decodeDeviceSecret(secret);
    info.deviceSecret = secret;
  } else {
    const certInfo = (fields.cert_deviceinfo ?? {}) as Record<string, unknown>;
    const text = (key: string) => (typeof certInfo[key] === 'string' ? (certInfo[key] as string) : undefined);
    info.certificateFiles = { caFile: text('devCaFile'), certFile: text('devCertFile'), privateKeyFile: text('devPrivateKeyFile') };
  }
  if (fields.stand_in !== undefined) info.endpoint = parseStandInEndpoint(fields.stand_in);
  return info;
}

function parseStandInEndpoint(value: unknown): NonNullable<DeviceInfo['endpoint']> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('stand_in is not a JSON object');
  const fields = value as Record<string, unknown>;
  if (typeof fields.host !== 'string' || fields.host.trim() === '') throw new Error('stand_in.host is missing');
  const port = Number(fields.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error('stand_in.port is not a TCP port');
  const transport = fields.transport ?? 'mqtts';
  if (typeof transport !== 'string' || !(TRANSPORTS as readonly string[]).includes(transport))
    throw new Error(`stand_in.transport must be one of ${TRANSPORTS.join(', ')}`);
  if (fields.caPem !== undefined && typeof fields.caPem !== 'string') throw new Error('stand_in.caPem is not text');
  const endpoint: NonNullable<DeviceInfo['endpoint']> = { host: fields.host.trim(), port, transport: transport as Transport };
  if (typeof fields.caPem === 'string') endpoint.caPem = fields.caPem;
  return endpoint;
}
