/**
 * Which sub-device is bound to which gateway (PROTOCOL.md §6), persisted in `<dataDir>/gateway-bindings.json`.
 * A sub-device is bound to at most one gateway. Whether the devices exist and are of the right type is
 * for the caller (the gateway service) to check.
 */
import { existsSync } from 'fs';
import * as path from 'path';
import { readJsonFile, writeFileAtomic } from '../lib/atomic-file';
import type { DeviceIdentity } from '../lib/ota-topics';

export interface GatewayBinding {
  gateway: DeviceIdentity;
  subDevice: DeviceIdentity;
  boundAt: string;
}

interface BindingsFile {
  bindings: GatewayBinding[];
}

function keyOf(device: DeviceIdentity): string {
  return `${device.productId}/${device.deviceName}`;
}

function isIdentity(value: unknown): value is DeviceIdentity {
  if (typeof value !== 'object' || value === null) return false;
  const fields = value as Record<string, unknown>;
  return typeof fields.productId === 'string' && typeof fields.deviceName === 'string';
}

function isBinding(value: unknown): value is GatewayBinding {
  if (typeof value !== 'object' || value === null) return false;
  const fields = value as Record<string, unknown>;
  return isIdentity(fields.gateway) && isIdentity(fields.subDevice) && typeof fields.boundAt === 'string';
}

function copy(binding: GatewayBinding): GatewayBinding {
  return { gateway: { ...binding.gateway }, subDevice: { ...binding.subDevice }, boundAt: binding.boundAt };
}

export class GatewayBindings {
  /** Keyed by the sub-device, in the order of binding. */
  private readonly bindings = new Map<string, GatewayBinding>();
  /** Saves run one after another so that the file always ends with the latest state. */
  private saving: Promise<void> = Promise.resolve();

  private constructor(
    private readonly filePath: string,
    private readonly now: () => number,
  ) {}

  static async open(dataDir: string, now: () => number = Date.now): Promise<GatewayBindings> {
    const store = new GatewayBindings(path.join(dataDir, 'gateway-bindings.json'), now);
    const stored = await readJsonFile<BindingsFile>(store.filePath);
    if (stored === undefined && existsSync(store.filePath)) {
      // Starting empty would drop every binding at the next save.
      throw new Error(`${store.filePath} is not valid JSON`);
    }
    for (const binding of stored?.bindings ?? []) {
      if (!isBinding(binding)) throw new Error(`${store.filePath} holds an invalid binding: ${JSON.stringify(binding)}`);
      store.bindings.set(keyOf(binding.subDevice), copy(binding));
    }
    return store;
  }

  /** The gateway the sub-device is bound to, if any. */
  gatewayOf(subDevice: DeviceIdentity): DeviceIdentity | undefined {
    const binding = this.bindings.get(keyOf(subDevice));
    return binding ? { ...binding.gateway } : undefined;
  }

  isBound(gateway: DeviceIdentity, subDevice: DeviceIdentity): boolean {
    const bound = this.bindings.get(keyOf(subDevice));
    return bound !== undefined && keyOf(bound.gateway) === keyOf(gateway);
  }

  /** The gateway's sub-devices, in the order they were bound. */
  subDevicesOf(gateway: DeviceIdentity): GatewayBinding[] {
    return [...this.bindings.values()].filter((binding) => keyOf(binding.gateway) === keyOf(gateway)).map(copy);
  }

  /** Binds a sub-device that is bound to no gateway (it throws otherwise) and saves. */
  async bind(gateway: DeviceIdentity, subDevice: DeviceIdentity): Promise<GatewayBinding> {
    const key = keyOf(subDevice);
    const existing = this.bindings.get(key);
    if (existing) throw new Error(`${key} is already bound to ${keyOf(existing.gateway)}`);
    const binding: GatewayBinding = {
      gateway: { productId: gateway.productId, deviceName: gateway.deviceName },
      subDevice: { productId: subDevice.productId, deviceName: subDevice.deviceName },
      boundAt: new Date(this.now()).toISOString(),
    };
    // Claimed before the save so that a concurrent bind of the same sub-device is refused.
    this.bindings.set(key, binding);
    try {
      await this.save();
    } catch (error) {
      if (this.bindings.get(key) === binding) this.bindings.delete(key);
      throw error;
    }
    return copy(binding);
  }

  /** Unbinds the sub-device from this gateway and saves; false when it was not bound to it. */
  async unbind(gateway: DeviceIdentity, subDevice: DeviceIdentity): Promise<boolean> {
    const key = keyOf(subDevice);
    const existing = this.bindings.get(key);
    if (!existing || keyOf(existing.gateway) !== keyOf(gateway)) return false;
    this.bindings.delete(key);
    try {
      await this.save();
    } catch (error) {
      if (!this.bindings.has(key)) this.bindings.set(key, existing);
      throw error;
    }
    return true;
  }

  /** Waits for the saves under way. */
  async flush(): Promise<void> {
    await this.saving.catch(() => undefined);
  }

  private save(): Promise<void> {
    const next = this.saving
      .catch(() => undefined)
      .then(() => {
        const file: BindingsFile = { bindings: [...this.bindings.values()] };
        return writeFileAtomic(this.filePath, `${JSON.stringify(file, null, 2)}\n`);
      });
    this.saving = next;
    return next;
  }
}
