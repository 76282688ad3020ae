/**
 * One MQTT connection attempt with a real mqtt.js client (never reconnecting), answering what the
 * device saw: connected, refused with a CONNACK return code, or failed before that (e.g. TLS).
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

export type ConnectionAttempt =
  | { outcome: 'connected'; client: MqttClient }
  | { outcome: 'refused'; returnCode: number; message: string }
  | { outcome: 'failed'; error: Error & { code?: string | number } };

export function attemptConnection(url: string, options: IClientOptions): Promise<ConnectionAttempt> {
  return new Promise((resolve) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 30_000, ...options });
    let settled = false;
    const settle = (attempt: ConnectionAttempt) => {
      if (settled) return;
      settled = true;
      if (attempt.outcome !== 'connected') client.end(true);
      resolve(attempt);
    };
    client.once('connect', () => settle({ outcome: 'connected', client }));
    client.on('error', (error: Error & { code?: string | number }) => {
      if (typeof error.code === 'number') settle({ outcome: 'refused', returnCode: error.code, message: error.message });
      else settle({ outcome: 'failed', error });
    });
    client.once('close', () => settle({ outcome: 'failed', error: new Error('connection closed before CONNACK') }));
  });
}

/** Connects or throws, saying what happened instead. */
export async function connectOrFail(url: string, options: IClientOptions): Promise<MqttClient> {
  const attempt = await attemptConnection(url, options);
  if (attempt.outcome === 'connected') return attempt.client;
  const what = attempt.outcome === 'refused' ? `refused with return code ${attempt.returnCode}` : `failed: ${attempt.error.message}`;
  throw new Error(`expected the connection to ${url} to be accepted, but it was ${what}`);
}

/** Resolves when the connection has closed; the client never reconnects, so a close is final. */
export function connectionClosed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (client.disconnected) return resolve();
    client.once('close', () => resolve());
  });
}

export function endClient(client: MqttClient): Promise<void> {
  return new Promise((resolve) => client.end(true, {}, () => resolve()));
}
