/** Reads a tencent-iot-device config node's properties and credentials into OtaDevice options. */
import * as os from 'os';
import * as path from 'path';
import { REGIONS, TRANSPORTS, type Region, type Transport } from '../../lib/device-endpoint';
import { describeInvalidDeviceName, describeInvalidProductId, type AuthMode } from '../../lib/device-info';
import { describeInvalidFirmwareKey, type FirmwareKey } from '../../lib/firmware-signature';
import type { OtaDeviceOptions } from '../../lib/ota-device';

export interface DeviceConfigProperties {
  productId?: unknown;
  deviceName?: unknown;
  authMode?: unknown;
  region?: unknown;
  transport?: unknown;
  host?: unknown;
  port?: unknown;
  keepalive?: unknown;
  stateDir?: unknown;
  runningVersion?: unknown;
  /** Minutes an update may take from its command to its final report; 0 for no limit. */
  updateTimeout?: unknown;
  /** As a gateway: downloads (its own and its sub-devices') that run at once. */
  maxDownloads?: unknown;
  /** Public keys firmware signatures are checked with: [{id, pem}]. */
  firmwareKeys?: unknown;
  requireSignedFirmware?: unknown;
}

export interface DeviceCredentials {
  deviceSecret?: string;
  caCert?: string;
  clientCert?: string;
  clientKey?: string;
}

export function text(value: unknown): string {
  return typeof value === 'string' ? value.trim() : typeof value === 'number' ? String(value) : '';
}

/** The folder for a device's state when none is configured: one per device under Node-RED's user directory. */
export function defaultStateDir(userDir: string | undefined, productId: string, deviceName: string): string {
  return path.join(userDir ?? path.join(os.homedir(), '.node-red'), 'tencent-iot-ota', `${productId}-${deviceName}`);
}

/** The configured firmware verification keys and whether a signature is required; throws when a key is wrong. */
export function readSignatureConfig(properties: { firmwareKeys?: unknown; requireSignedFirmware?: unknown }): {
  firmwareKeys: FirmwareKey[];
  requireSignedFirmware: boolean;
} {
  const listed = properties.firmwareKeys === undefined || properties.firmwareKeys === '' ? [] : properties.firmwareKeys;
  if (!Array.isArray(listed)) throw new Error('firmware verification keys must be a list of {id, pem}');
  const firmwareKeys: FirmwareKey[] = [];
  for (const entry of listed as unknown[]) {
    const key = { id: text((entry as Partial<FirmwareKey> | null)?.id), pem: text((entry as Partial<FirmwareKey> | null)?.pem) };
    if (key.id === '' && key.pem === '') continue;
    const problem = describeInvalidFirmwareKey(key);
    if (problem) throw new Error(problem);
    if (firmwareKeys.some((known) => known.id === key.id)) throw new Error(`firmware key id ${key.id} is listed twice`);
    firmwareKeys.push(key);
  }
  return { firmwareKeys, requireSignedFirmware: properties.requireSignedFirmware === true || properties.requireSignedFirmware === 'true' };
}

/** Returns the device options, or throws an Error that says which setting is wrong. */
export function readDeviceConfig(properties: DeviceConfigProperties, credentials: DeviceCredentials, userDir: string | undefined): OtaDeviceOptions {
  const productId = text(properties.productId);
  const deviceName = text(properties.deviceName);
  const productProblem = describeInvalidProductId(productId);
  if (productProblem) throw new Error(productProblem);
  const nameProblem = describeInvalidDeviceName(deviceName);
  if (nameProblem) throw new Error(nameProblem);
  const authMode: AuthMode = text(properties.authMode) === 'cert' ? 'cert' : 'key';
  const regionText = text(properties.region) || 'china';
  if (!(REGIONS as readonly string[]).includes(regionText)) throw new Error(`unknown region "${regionText}"`);
  const transportText = text(properties.transport) || 'mqtts';
  if (!(TRANSPORTS as readonly string[]).includes(transportText)) throw new Error(`unknown transport "${transportText}"`);
  const portText = text(properties.port);
  const port = portText ? Number(portText) : undefined;
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new Error(`port "${portText}" is not a TCP port`);
  const keepaliveText = text(properties.keepalive);
  const keepaliveSeconds = keepaliveText ? Number(keepaliveText) : 60;
  if (!Number.isInteger(keepaliveSeconds) || keepaliveSeconds < 0 || keepaliveSeconds > 900) {
    throw new Error('keepalive must be a whole number of seconds from 0 to 900');
  }
  const updateTimeoutText = text(properties.updateTimeout);
  const updateTimeoutMinutes = updateTimeoutText ? Number(updateTimeoutText) : 30;
  if (!Number.isFinite(updateTimeoutMinutes) || updateTimeoutMinutes < 0) throw new Error('update time limit must be a number of minutes, 0 for none');
  const maxDownloadsText = text(properties.maxDownloads);
  const maxConcurrentDownloads = maxDownloadsText ? Number(maxDownloadsText) : 2;
  if (!Number.isInteger(maxConcurrentDownloads) || maxConcurrentDownloads < 1) throw new Error('downloads at once must be a whole number of at least 1');
  const stateDir = text(properties.stateDir) || defaultStateDir(userDir, productId, deviceName);
  return {
    productId,
    deviceName,
    authMode,
    region: regionText as Region,
    transport: transportText as Transport,
    host: text(properties.host) || undefined,
    port,
    keepaliveSeconds,
    stateDir: path.resolve(stateDir),
    runningVersion: text(properties.runningVersion) || undefined,
    updateDeadlineMs: Math.round(updateTimeoutMinutes * 60_000),
    maxConcurrentDownloads,
    ...readSignatureConfig(properties),
    deviceSecret: credentials.deviceSecret?.trim() || undefined,
    caCertPem: credentials.caCert?.trim() || undefined,
    clientCertPem: credentials.clientCert?.trim() || undefined,
    clientKeyPem: credentials.clientKey?.trim() || undefined,
  };
}
