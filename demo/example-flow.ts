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
  return { flows, credentials };
}
