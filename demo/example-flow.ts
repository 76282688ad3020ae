/** Loads an example flow from examples/ with its device node bound to a real (or stand-in) device. */
import { promises as fs } from 'fs';
import * as path from 'path';
import { PACKAGE_DIR } from './node-red-process';

export interface DeviceBinding {
  productId: string;
  deviceName: string;
  deviceSecret: string;
  host: string;
  port: number;
  transport: 'mqtt' | 'mqtts' | 'wss';
  caCertPem?: string;
  stateDir: string;
  runningVersion?: string;
  name?: string;
  /** For an example with sub-devices: bound in order to its tencent-iot-subdevice nodes. */
  subDevices?: SubDeviceBinding[];
}

export interface SubDeviceBinding {
  productId: string;
  deviceName: string;
  /** Given to the node's credentials, so that the gateway binds the sub-device when it is not bound. */
  deviceSecret?: string;
  stateDir: string;
  runningVersion?: string;
}

export interface BoundFlow {
  flows: Array<Record<string, unknown>>;
  credentials: Record<string, Record<string, string>>;
}

export async function readExampleFlow(name: string): Promise<Array<Record<string, unknown>>> {
  return JSON.parse(await fs.readFile(path.join(PACKAGE_DIR, 'examples', `${name}.json`), 'utf8')) as Array<Record<string, unknown>>;
}

export async function loadExampleFlow(name: string, binding: DeviceBinding): Promise<BoundFlow> {
  const flows = await readExampleFlow(name);
  const credentials: BoundFlow['credentials'] = {};
  for (const node of flows) {
    if (node.type !== 'tencent-iot-device') continue;
    Object.assign(node, {
      name: binding.name ?? `${binding.productId}/${binding.deviceName}`,
      productId: binding.productId,
      deviceName: binding.deviceName,
      transport: binding.transport,
      host: binding.host,
      port: String(binding.port),
      stateDir: binding.stateDir,
      runningVersion: binding.runningVersion ?? node.runningVersion,
    });
    credentials[node.id as string] = { deviceSecret: binding.deviceSecret, ...(binding.caCertPem ? { caCert: binding.caCertPem } : {}) };
  }
  const subDevices = [...(binding.subDevices ?? [])];
  for (const node of flows) {
    if (node.type !== 'tencent-iot-subdevice') continue;
    const subDevice = subDevices.shift();
    if (!subDevice) throw new Error(`the example ${name} has more sub-devices than were bound`);
    Object.assign(node, {
      name: `${subDevice.productId}/${subDevice.deviceName}`,
      productId: subDevice.productId,
      deviceName: subDevice.deviceName,
      stateDir: subDevice.stateDir,
      runningVersion: subDevice.runningVersion ?? node.runningVersion,
    });
    if (subDevice.deviceSecret) credentials[node.id as string] = { deviceSecret: subDevice.deviceSecret };
  }
  return { flows, credentials };
}
