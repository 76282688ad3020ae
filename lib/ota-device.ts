/**
 * Everything a Node-RED host needs to be one IoT Hub device: its shared connection, its OTA
 * channel, its update session, and its state folder (running version, downloads and checkpoints).
 * A sub-device is an OtaDevice too: its own identity, channel, session and state folder over its
 * gateway's connection, used through the gateway's link. Nothing is written outside stateDir.
 */
import * as path from 'path';
import { DeviceConnection, type DeviceConnectionOptions } from './device-connection';
import { DownloadSlots } from './download-slots';
import { DownloadsFolder } from './downloads-folder';
import type { FirmwareKey } from './firmware-signature';
import { Gateway, type SubDeviceLink } from './gateway';
import { describeInvalidFirmwareVersion } from './firmware-version';
import { OtaChannel } from './ota-channel';
import type { ReportVersionResponse } from './ota-messages';
import type { DeviceIdentity } from './ota-topics';
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
  /** As a gateway: how many firmware downloads (its own and its sub-devices') run at once (default 2). */
  maxConcurrentDownloads?: number;
  /** Public keys (PEM) firmware signatures are checked with, by key id. */
  firmwareKeys?: FirmwareKey[];
  /** A firmware without a signature fails verification. */
  requireSignedFirmware?: boolean;
}

/** A sub-device behind a gateway: its identity and state, and the gateway it speaks through. */
export interface SubDeviceOptions extends DeviceIdentity {
  gateway: OtaDevice;
  stateDir: string;
  runningVersion?: string;
  versionReplyTimeoutMs?: number;
  updateDeadlineMs?: number;
  /** When given, the gateway binds the sub-device if the cloud says it is not bound. */
  deviceSecret?: string;
  firmwareKeys?: FirmwareKey[];
  requireSignedFirmware?: boolean;
}

export interface ConnectReport {
  version: string;
  response?: ReportVersionResponse;
  error?: Error;
}

export class OtaDevice {
  readonly identity: DeviceIdentity;
  /** The MQTT connection: the device's own, or for a sub-device its gateway's. */
  readonly connection: DeviceConnection;
  /** For a sub-device: its link on the gateway's connection. */
  readonly link?: SubDeviceLink;
  readonly channel: OtaChannel;
  readonly stateDir: string;
  readonly downloadsDir: string;
  readonly downloads: DownloadsFolder;
  readonly session: UpdateSession;
  readonly runningVersions: RunningVersionStore;
  readonly configuredVersion?: string;
  readonly versionReplyTimeoutMs: number;
  /** Shared by every session over the connection: a gateway's and its sub-devices'. */
  readonly downloadSlots: DownloadSlots;
  /**
   * The configured server CA, also trusted (beside Node's default CAs) for firmware downloads: a
   * private deployment or the stand-in serves its firmware under the same CA.
   */
  readonly customCaPem?: string;
  private readonly connectReportListeners = new Set<(report: ConnectReport) => void>();
  private gatewayRole?: Gateway;

  constructor(options: OtaDeviceOptions | SubDeviceOptions) {
    this.stateDir = path.resolve(options.stateDir);
    this.downloadsDir = path.join(this.stateDir, 'downloads');
    this.downloads = new DownloadsFolder(this.downloadsDir);
    this.runningVersions = new RunningVersionStore(this.stateDir);
    this.configuredVersion = options.runningVersion?.trim() || undefined;
    this.versionReplyTimeoutMs = options.versionReplyTimeoutMs ?? 30_000;
    this.identity = { productId: options.productId, deviceName: options.deviceName };
    if ('gateway' in options) {
      const gateway = options.gateway;
      this.customCaPem = gateway.customCaPem;
      this.connection = gateway.connection;
      this.downloadSlots = gateway.downloadSlots;
      this.link = gateway.gateway.link(this.identity);
      if (options.deviceSecret) this.link.deviceSecret = options.deviceSecret;
      this.channel = new OtaChannel(this.link);
      this.link.on('online', this.onOnline);
    } else {
      this.customCaPem = options.caCertPem?.trim() || undefined;
      this.connection = new DeviceConnection(options);
      this.downloadSlots = new DownloadSlots(options.maxConcurrentDownloads ?? 2);
      this.channel = new OtaChannel(this.connection);
      this.connection.on('connect', this.onOnline);
    }
    this.session = new UpdateSession(this, {
      deadlineMs: options.updateDeadlineMs,
      downloadSlots: this.downloadSlots,
      productId: options.productId,
      signaturePolicy: { keys: options.firmwareKeys ?? [], required: options.requireSignedFirmware === true },
    });
  }

  /** The device's gateway operations (made on first use): for a device that is a gateway. */
  get gateway(): Gateway {
    if (this.link) throw new Error('a sub-device is no gateway');
    this.gatewayRole ??= new Gateway(this.connection);
    return this.gatewayRole;
  }

  /** A flow node starts using the device: the first opens the connection (and brings a sub-device online). */
  register(userId: string): void {
    if (this.link) this.link.register(userId);
    else this.connection.register(userId);
  }

  async deregister(userId: string): Promise<void> {
    if (this.link) await this.link.deregister(userId);
    else await this.connection.deregister(userId);
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
    if (this.link) {
      this.link.off('online', this.onOnline);
      return;
    }
    this.gatewayRole?.close();
    await this.connection.close();
  }

  private readonly onOnline = () => void this.reportVersionOnConnect();

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
