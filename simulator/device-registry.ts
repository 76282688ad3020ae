/** The stand-in's devices, as the console creates them: persisted in `<dataDir>/devices.json`. */
import { EventEmitter } from 'events';
import { existsSync } from 'fs';
import * as path from 'path';
import { randomBytes } from 'crypto';
import { readJsonFile, writeFileAtomic } from '../lib/atomic-file';
import { clientIdOf } from '../lib/device-signing';
import { describeInvalidDeviceName, describeInvalidProductId } from '../lib/device-info';
import type { CertificateAuthority } from './certificate-authority';

export type DeviceAuthMode = 'key' | 'cert';
/** An ordinary device, or a gateway that brings sub-devices online on its own connection (PROTOCOL.md §6). */
export type DeviceType = 'device' | 'gateway';

export interface RegisteredDevice {
  productId: string;
  deviceName: string;
  authMode: DeviceAuthMode;
  deviceType: DeviceType;
  /** Base64 of 16 random bytes; cert devices have one too, as on the console. */
  deviceSecret: string;
  /** Cert devices: the fingerprint of the client certificate issued at creation. */
  certificateFingerprint256?: string;
  createdAt: string;
}

export interface CreatedDevice {
  device: RegisteredDevice;
  /**
   * The console's device_info.json (PROTOCOL.md §1). For cert devices `cert_deviceinfo` also carries
   * devCertPem, devPrivateKeyPem and devCaPem, since an API cannot hand out files.
   */
  deviceInfo: Record<string, unknown>;
}

export class DeviceExistsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceExistsError';
  }
}

export class InvalidDeviceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidDeviceError';
  }
}

interface DevicesFile {
  devices: RegisteredDevice[];
}

function isRegisteredDevice(value: unknown): value is RegisteredDevice {
  if (typeof value !== 'object' || value === null) return false;
  const device = value as Record<string, unknown>;
  return (
    typeof device.productId === 'string' &&
    typeof device.deviceName === 'string' &&
    (device.authMode === 'key' || device.authMode === 'cert') &&
    (device.deviceType === undefined || device.deviceType === 'device' || device.deviceType === 'gateway') &&
    typeof device.deviceSecret === 'string' &&
    typeof device.createdAt === 'string' &&
    (device.certificateFingerprint256 === undefined || typeof device.certificateFingerprint256 === 'string')
  );
}

export interface DeviceRegistryEvents {
  /** A device was created and saved (the record holds its secret: not for the outside as it is). */
  created: [RegisteredDevice];
  /** A device was deleted and the registry saved. */
  removed: [RegisteredDevice];
}

export class DeviceRegistry extends EventEmitter<DeviceRegistryEvents> {
  /** Keyed by client id (productId + deviceName), which the broker looks devices up by. */
  private readonly devices = new Map<string, RegisteredDevice>();
  /** Saves run one after another so that the file always ends with the latest state. */
  private saving: Promise<void> = Promise.resolve();

  private constructor(private readonly filePath: string) {
    super();
  }

  static async open(dataDir: string): Promise<DeviceRegistry> {
    const registry = new DeviceRegistry(path.join(dataDir, 'devices.json'));
    const stored = await readJsonFile<DevicesFile>(registry.filePath);
    if (stored === undefined && existsSync(registry.filePath)) {
      // Starting empty would overwrite every device at the next save.
      throw new Error(`${registry.filePath} is not valid JSON`);
    }
    for (const device of stored?.devices ?? []) {
      if (!isRegisteredDevice(device)) throw new Error(`${registry.filePath} holds an invalid device entry: ${JSON.stringify(device)}`);
      // Files written before gateways existed hold ordinary devices only.
      registry.devices.set(clientIdOf(device), { ...device, deviceType: device.deviceType ?? 'device' });
    }
    return registry;
  }

  async create(
    productId: string,
    deviceName: string,
    authMode: DeviceAuthMode,
    certificateAuthority: CertificateAuthority,
    deviceType: DeviceType = 'device',
  ): Promise<CreatedDevice> {
    const problem = describeInvalidProductId(productId) ?? describeInvalidDeviceName(deviceName);
    if (problem) throw new InvalidDeviceError(problem);
    const clientId = clientIdOf({ productId, deviceName });
    const existing = this.devices.get(clientId);
    if (existing) {
      // Client ids have no separator, so "AB"+"c" and "A"+"Bc" would share one; the broker could not tell them apart.
      throw new DeviceExistsError(
        existing.productId === productId
          ? `device ${productId}/${deviceName} already exists`
          : `client id ${clientId} is already used by ${existing.productId}/${existing.deviceName}`,
      );
    }

    const device: RegisteredDevice = {
      productId,
      deviceName,
      authMode,
      deviceType,
      deviceSecret: randomBytes(16).toString('base64'),
      createdAt: new Date().toISOString(),
    };
    let deviceInfo: Record<string, unknown>;
    if (authMode === 'cert') {
      const certificate = certificateAuthority.issueClientCertificate(productId, deviceName);
      device.certificateFingerprint256 = certificate.fingerprint256;
      deviceInfo = {
        auth_mode: 'CERT',
        productId,
        deviceName,
        cert_deviceinfo: {
          devCaFile: 'ca.crt',
          devCertFile: `${deviceName}_cert.crt`,
          devPrivateKeyFile: `${deviceName}_private.key`,
          devCaPem: certificateAuthority.caCertPem,
          devCertPem: certificate.certPem,
          devPrivateKeyPem: certificate.keyPem,
        },
      };
    } else {
      deviceInfo = { auth_mode: 'KEY', productId, deviceName, key_deviceinfo: { deviceSecret: device.deviceSecret } };
    }

    // Claimed before the save so that a concurrent create of the same device is refused.
    this.devices.set(clientId, device);
    try {
      await this.save();
    } catch (error) {
      this.devices.delete(clientId);
      throw error;
    }
    this.emit('created', { ...device });
    return { device: { ...device }, deviceInfo };
  }

  find(productId: string, deviceName: string): RegisteredDevice | undefined {
    const device = this.devices.get(clientIdOf({ productId, deviceName }));
    return device && device.productId === productId && device.deviceName === deviceName ? { ...device } : undefined;
  }

  /** Deletes the device and saves; undefined when there was none. Whatever else knows it is for the caller to tell. */
  async remove(productId: string, deviceName: string): Promise<RegisteredDevice | undefined> {
    const device = this.find(productId, deviceName);
    if (!device) return undefined;
    const clientId = clientIdOf(device);
    const stored = this.devices.get(clientId);
    this.devices.delete(clientId);
    try {
      await this.save();
    } catch (error) {
      if (stored && !this.devices.has(clientId)) this.devices.set(clientId, stored);
      throw error;
    }
    this.emit('removed', { ...device });
    return device;
  }

  findByClientId(clientId: string): RegisteredDevice | undefined {
    const device = this.devices.get(clientId);
    return device ? { ...device } : undefined;
  }

  /** In creation order; only one product's devices when productId is given. */
  list(productId?: string): RegisteredDevice[] {
    return [...this.devices.values()].filter((device) => productId === undefined || device.productId === productId).map((device) => ({ ...device }));
  }

  private save(): Promise<void> {
    const next = this.saving
      .catch(() => undefined)
      .then(() => {
        const file: DevicesFile = { devices: [...this.devices.values()] };
        // Device secrets: readable by the owner only.
        return writeFileAtomic(this.filePath, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
      });
    this.saving = next;
    return next;
  }
}
