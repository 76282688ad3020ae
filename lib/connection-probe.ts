/**
 * One connection attempt with a device's settings, made exactly as the device connects (the same
 * signed username, client certificate and CA), to tell a person whether the settings work before
 * they rely on them. It never retries and disconnects as soon as the broker has answered.
 *
 * IoT Hub keeps one connection per client id, and the client id is fixed by the product ID and
 * device name: an accepted probe takes the place of the device's running connection, which then
 * reconnects by itself. A refused probe is turned away before that and disturbs nothing.
 */
import * as mqtt from 'mqtt';
import { describeConnectionError, mqttClientOptions, type DeviceConnectionOptions } from './device-connection';
import { resolveEndpoint } from './device-endpoint';

export type ProbeOutcome = 'connected' | 'bad-credentials' | 'tls-untrusted' | 'host-not-found' | 'refused' | 'timed-out' | 'invalid-settings' | 'other';

export interface ProbeResult {
  outcome: ProbeOutcome;
  /** Where the attempt went: mqtts://host:port, wss://host:port/mqtt or mqtt://host:port. */
  url: string;
  /** The short reason, as the device's status would give it; absent when connected. */
  reason?: string;
  /** The CONNACK return code of a refused CONNECT. */
  returnCode?: number;
}

export interface ProbeOptions {
  /** How long to wait for the CONNACK, connecting and TLS included (default 10 s). */
  timeoutMs?: number;
}

const TLS_VERIFY_ERRORS = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Which of the outcomes a person can act on an error of a connection attempt is. */
export function probeOutcomeOf(error: Error & { code?: string | number }): ProbeOutcome {
  const code = error.code;
  if (code === 4 || code === 5 || code === 134 || code === 135) return 'bad-credentials';
  if (typeof code === 'number' || code === 'ECONNREFUSED') return 'refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host-not-found';
  if (typeof code === 'string' && TLS_VERIFY_ERRORS.has(code)) return 'tls-untrusted';
  if (code === 'ETIMEDOUT' || /connack timeout/i.test(error.message)) return 'timed-out';
  return 'other';
}

/** Connects once with the device's settings, disconnects at once and says what happened. */
export function probeConnection(options: DeviceConnectionOptions, probe: ProbeOptions = {}): Promise<ProbeResult> {
  let url: string;
  let clientOptions: mqtt.IClientOptions;
  try {
    const endpoint = resolveEndpoint(options);
    url = endpoint.url;
    clientOptions = { ...mqttClientOptions(options, endpoint), connectTimeout: probe.timeoutMs ?? 10_000 };
  } catch (error) {
    return Promise.resolve({ outcome: 'invalid-settings', url: '', reason: (error as Error).message });
  }
  return new Promise((resolve) => {
    let client: mqtt.MqttClient;
    try {
      client = mqtt.connect(url, clientOptions);
    } catch (error) {
      // MQTT.js refuses some settings (an unusable certificate or key) before it opens a socket.
      resolve({ outcome: 'invalid-settings', url, reason: (error as Error).message });
      return;
    }
    let settled = false;
    const settle = (result: ProbeResult) => {
      if (settled) return;
      settled = true;
      client.removeAllListeners();
      client.on('error', () => undefined);
      // A DISCONNECT right after the CONNACK when accepted; the socket torn down otherwise.
      client.end(result.outcome !== 'connected', {}, () => resolve(result));
    };
    client.once('connect', () => settle({ outcome: 'connected', url }));
    client.on('error', (error: Error & { code?: string | number }) => {
      settle({
        outcome: probeOutcomeOf(error),
        url,
        reason: describeConnectionError(error),
        ...(typeof error.code === 'number' ? { returnCode: error.code } : {}),
      });
    });
    client.once('close', () => settle({ outcome: 'other', url, reason: 'connection closed before the CONNACK' }));
  });
}
