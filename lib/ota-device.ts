/**
 * Everything a Node-RED host needs to be one IoT Hub device: its shared connection, its OTA
 * channel, its update session, and its state folder (running version, downloads and checkpoints).
 * Nothing is written outside stateDir.
 */
import * as path from 'path';
import { DeviceConnection, type DeviceConnectionOptions } from './device-connection';
import { DownloadsFolder } from './downloads-folder';
import { describeInvalidFirmwareVersion } from './firmware-version';
import { OtaChannel } from './ota-channel';
import type { ReportVersionResponse } from './ota-messages';
import { RunningVersionStore } from './running-version-store';
import { UpdateSession } from './update-session';

export interface OtaDeviceOptions extends DeviceConnectionOptions {
  stateDir: string;
  /** The version the device runs before any update recorded under stateDir. */
  runningVersion?: string;
  /** How long a report_version waits for report_version_rsp. */
  versionReplyTimeoutMs?: number;
  /** How long an update may take from its command to its final report (default 30 min; 0 for no limit). */
  updateDeadlineMs?: number;
}

export interface ConnectReport {
  version: string;
  response?: ReportVersionResponse;
  error?: Error;
}

export class OtaDevice {
  readonly connection: DeviceConnection;
  readonly channel: OtaChannel;
  readonly stateDir: string;
  readonly downloadsDir: string;
  readonly downloads: DownloadsFolder;
  readonly session: UpdateSession;
  readonly runningVersions: RunningVersionStore;
  readonly configuredVersion?: string;
  readonly versionReplyTimeoutMs: number;
  /**
   * The configured server CA, also trusted (beside Node's default CAs) for firmware downloads: a
   * private deployment or the stand-in serves its firmware under the same CA.
   */
  readonly customCaPem?: string;
  private readonly connectReportListeners = new Set<(report: ConnectReport) => void>();

  constructor(options: OtaDeviceOptions) {
    this.stateDir = path.resolve(options.stateDir);
    this.downloadsDir = path.join(this.stateDir, 'downloads');
    this.downloads = new DownloadsFolder(this.downloadsDir);
    this.runningVersions = new RunningVersionStore(this.stateDir);
    this.configuredVersion = options.runningVersion?.trim() || undefined;
    this.versionReplyTimeoutMs = options.versionReplyTimeoutMs ?? 30_000;
    this.customCaPem = options.caCertPem?.trim() || undefined;
    this.connection = new DeviceConnection(options);
    this.channel = new OtaChannel(this.connection);
    this.session = new UpdateSession(this, { deadlineMs: options.updateDeadlineMs });
    this.connection.on('connect', () => this.reportVersionOnConnect());
  }

  /** The version stored by the last successful update, else the configured one. */
  async currentVersion(): Promise<string> {
    const stored = await this.runningVersions.read();
    if (stored) return stored;
    if (!this.configuredVersion) throw new Error('no running version: set one on the device or pass it in msg.payload');
    const problem = describeInvalidFirmwareVersion(this.configuredVersion);
    if (problem) throw new Error(`configured running version: ${problem}`);
    return this.configuredVersion;
  }

  /**
   * Asks for the running version to be reported after every (re)connect, so that the cloud
   * re-pushes a pending update after a restart. However many listeners, one report is sent.
   */
  onConnectReport(listener: (report: ConnectReport) => void): () => void {
    this.connectReportListeners.add(listener);
    return () => this.connectReportListeners.delete(listener);
  }

  async close(): Promise<void> {
    this.connectReportListeners.clear();
    await this.session.close();
    this.channel.close();
    await this.connection.close();
  }

  private async reportVersionOnConnect(): Promise<void> {
    if (this.connectReportListeners.size === 0) return;
    let report: ConnectReport;
    let version = '';
    try {
      version = await this.currentVersion();
      const response = await this.channel.reportVersion(version, this.versionReplyTimeoutMs);
      report = { version, response };
    } catch (error) {
      report = { version, error: error as Error };
    }
    for (const listener of this.connectReportListeners) listener(report);
  }
}
