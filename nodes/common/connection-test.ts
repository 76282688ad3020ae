/**
 * The device dialog's "Test connection": the editor posts the dialog's current settings, deployed
 * or not, and the runtime makes one connection attempt with them, as the device would, from where
 * the device runs. A password credential the dialog only shows as stored (`__PWRD__`) is taken from
 * the deployed config node of that id.
 */
import { probeConnection, type ProbeResult } from '../../lib/connection-probe';
import { clientIdOf } from '../../lib/device-signing';
import { readDeviceConfig, type DeviceConfigProperties, type DeviceCredentials } from './device-config';
import type { AdminRequest, AdminResponse, NodeRedRuntime, TencentIotDeviceNode } from './node-red-runtime';

export const TEST_CONNECTION_PATH = '/tencent-iot-ota/test-connection';

/** What Node-RED puts in a password field whose value it keeps to itself. */
const STORED_PASSWORD = '__PWRD__';

const SETTINGS = ['productId', 'deviceName', 'authMode', 'region', 'transport', 'host', 'port', 'keepalive'] as const;
const CREDENTIALS = ['deviceSecret', 'caCert', 'clientCert', 'clientKey'] as const;

export interface ConnectionTestAnswer extends ProbeResult {
  /** `running`: the deployed device is connected with these very settings, so nothing was tried. */
  via: 'probe' | 'running';
  /** The probe was accepted while the deployed device was connected: it took that connection's place. */
  tookOver?: boolean;
}

function pick<K extends string>(source: unknown, keys: readonly K[]): Partial<Record<K, string>> {
  const picked: Partial<Record<K, string>> = {};
  if (!source || typeof source !== 'object') return picked;
  for (const key of keys) {
    const value = (source as Record<string, unknown>)[key];
    if (typeof value === 'string' || typeof value === 'number') picked[key] = String(value);
  }
  return picked;
}

export async function testDeviceConnection(RED: NodeRedRuntime, body: unknown): Promise<ConnectionTestAnswer> {
  const request = (body && typeof body === 'object' ? body : {}) as { id?: unknown; settings?: unknown; credentials?: unknown };
  const found = typeof request.id === 'string' && request.id ? RED.nodes.getNode(request.id) : null;
  const deployed = found && found.type === 'tencent-iot-device' ? (found as TencentIotDeviceNode) : undefined;
  const credentials: DeviceCredentials = pick(request.credentials, CREDENTIALS);
  for (const key of CREDENTIALS) {
    if (credentials[key] !== STORED_PASSWORD) continue;
    credentials[key] = deployed?.credentials?.[key];
    if (!credentials[key]) return { outcome: 'invalid-settings', url: '', via: 'probe', reason: `no stored ${key}: type it again` };
  }
  let options;
  try {
    options = readDeviceConfig(pick(request.settings, SETTINGS) as DeviceConfigProperties, credentials, RED.settings.userDir);
  } catch (error) {
    return { outcome: 'invalid-settings', url: '', via: 'probe', reason: (error as Error).message };
  }
  const running = deployed?.device?.connection;
  if (running?.connected && running.connectsAs(options)) return { outcome: 'connected', url: running.endpoint.url, via: 'running' };
  const wasConnected = running?.connected === true && running.clientId === clientIdOf(options);
  const result = await probeConnection(options);
  return { ...result, via: 'probe', ...(wasConnected && result.outcome === 'connected' ? { tookOver: true } : {}) };
}

/** Serves the test to editor users who may change device config nodes. */
export function serveConnectionTest(RED: NodeRedRuntime): void {
  RED.httpAdmin.post(TEST_CONNECTION_PATH, RED.auth.needsPermission('tencent-iot-device.write'), (request: AdminRequest, response: AdminResponse) => {
    testDeviceConnection(RED, request.body).then(
      (answer) => response.json(answer),
      (error: Error) => response.status(500).json({ outcome: 'other', url: '', via: 'probe', reason: error.message }),
    );
  });
}
