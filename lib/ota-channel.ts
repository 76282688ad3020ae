/**
 * A device's OTA conversation with the cloud over its shared connection: it listens on the update
 * topic, hands out update commands and version replies, and sends the device's reports with the
 * QoS the protocol gives each of them.
 */
import { EventEmitter } from 'events';
import type { MessageHandler, PublishOptions } from './device-connection';
import type { DeviceIdentity } from './ota-topics';
import {
  buildReportProgress,
  buildReportVersion,
  otaMessageType,
  parseReportVersionResponse,
  reportQos,
  type ProgressReport,
  type ReportVersionResponse,
} from './ota-messages';
import { otaReportTopic, otaUpdateTopic } from './ota-topics';

export class ReportVersionTimeoutError extends Error {
  constructor(version: string, timeoutMs: number) {
    super(`no report_version_rsp for version ${version} within ${Math.round(timeoutMs / 1000)} s`);
    this.name = 'ReportVersionTimeoutError';
  }
}

export interface OtaChannelEvents {
  /** Raw update_firmware payload, to be parsed strictly by whoever acts on it. */
  'update-command': [Buffer];
  'version-response': [ReportVersionResponse];
  /** A message on the update topic that is not an OTA message we know. */
  'unknown-message': [Buffer, string];
}

export interface ReportOptions {
  /** For QoS 1 reports: how long to wait for the PUBACK, queued time included; 0 waits for ever. */
  timeoutMs?: number;
}

/**
 * How the channel reaches the cloud for its device: the device's own connection, or for a
 * sub-device the gateway's connection, used only while the sub-device is online.
 */
export interface OtaTransport {
  readonly device: DeviceIdentity;
  subscribe(topic: string, qos: 0 | 1, handler: MessageHandler): () => void;
  publish(topic: string, payload: string | Buffer | object, options: PublishOptions): Promise<void>;
}

export class OtaChannel extends EventEmitter<OtaChannelEvents> {
  readonly connection: OtaTransport;
  private readonly stopListening: () => void;

  constructor(connection: OtaTransport) {
    super();
    this.connection = connection;
    this.stopListening = connection.subscribe(otaUpdateTopic(connection.device), 1, (payload) => this.dispatch(payload));
  }

  /** Publishes report_version (QoS 1) and resolves with the cloud's reply. */
  async reportVersion(version: string, replyTimeoutMs = 30_000): Promise<ReportVersionResponse> {
    let stopWaiting = () => undefined as void;
    // Listening starts before the publish: the reply can arrive before the PUBACK.
    const reply = new Promise<ReportVersionResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        stopWaiting();
        reject(new ReportVersionTimeoutError(version, replyTimeoutMs));
      }, replyTimeoutMs);
      const onResponse = (response: ReportVersionResponse) => {
        if (response.version && response.version !== version) return;
        stopWaiting();
        resolve(response);
      };
      stopWaiting = () => {
        clearTimeout(timer);
        this.off('version-response', onResponse);
      };
      this.on('version-response', onResponse);
    });
    // Handled here too, so that a timeout while the publish is still pending is never unhandled.
    reply.catch(() => undefined);
    try {
      await this.connection.publish(otaReportTopic(this.connection.device), buildReportVersion(version), {
        qos: 1,
        timeoutMs: replyTimeoutMs,
      });
    } catch (error) {
      stopWaiting();
      throw error;
    }
    return reply;
  }

  /** Publishes report_progress for the target version: downloading with QoS 0, the rest with QoS 1. */
  async reportProgress(targetVersion: string, report: ProgressReport, options: ReportOptions = {}): Promise<void> {
    const message = buildReportProgress(targetVersion, report);
    await this.connection.publish(otaReportTopic(this.connection.device), message, { qos: reportQos(message), timeoutMs: options.timeoutMs });
  }

  close(): void {
    this.stopListening();
    this.removeAllListeners();
  }

  private dispatch(payload: Buffer): void {
    const type = otaMessageType(payload);
    if (type === 'update_firmware') {
      this.emit('update-command', payload);
      return;
    }
    if (type === 'report_version_rsp') {
      const parsed = parseReportVersionResponse(payload);
      if (parsed.ok) {
        this.emit('version-response', parsed.value);
        return;
      }
      this.emit('unknown-message', payload, `report_version_rsp: ${parsed.error}`);
      return;
    }
    this.emit('unknown-message', payload, type ? `unknown type "${type}"` : 'not an OTA message');
  }
}
