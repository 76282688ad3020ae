/**
 * A real OtaDevice (running version, downloads folder, state folder in a fresh temp dir) with an
 * update session whose OTA channel records the reports it is asked to send instead of sending
 * them, for unit tests of the session and the controllers in lib/. PUBACKs can be held back to see what happens before one arrives.
 */
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { ReportOptions } from '../../lib/ota-channel';
import { OtaDevice } from '../../lib/ota-device';
import { buildReportProgress, buildReportVersionResponse, type ProgressReport, type ReportProgressMessage, type ReportVersionResponse } from '../../lib/ota-messages';
import { UpdateSession, type UpdateSessionOptions } from '../../lib/update-session';

export interface RecordedReport {
  /** What would be on the wire. */
  message: ReportProgressMessage;
  options: ReportOptions;
}

export class RecordingDevice {
  readonly reports: RecordedReport[] = [];
  readonly versionReports: string[] = [];
  /** Set to make every report fail as a closed connection would. */
  failReports?: Error;
  /** The cloud's answer to report_version (accepting by default). */
  versionResponse: (version: string) => ReportVersionResponse = (version) => buildReportVersionResponse(version);
  private pubackGate: Promise<void> = Promise.resolve();
  private releaseGate?: () => void;
  private sentWaiters: { count: number; resolve: (report: RecordedReport) => void }[] = [];

  private constructor(
    readonly device: OtaDevice,
    readonly stateDir: string,
    sessionOptions: UpdateSessionOptions,
  ) {
    this.session = new UpdateSession(this, sessionOptions);
  }

  static async create(runningVersion = '1.0.0', sessionOptions: UpdateSessionOptions = {}): Promise<RecordingDevice> {
    const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'recording-device-'));
    const device = new OtaDevice({
      productId: 'PRODUCT1',
      deviceName: 'device1',
      authMode: 'key',
      deviceSecret: Buffer.from('secret-of-device1').toString('base64'),
      region: 'china',
      transport: 'mqtt',
      host: '127.0.0.1',
      port: 1,
      stateDir,
      runningVersion,
    });
    return new RecordingDevice(device, stateDir, sessionOptions);
  }

  get downloadsDir(): string {
    return this.device.downloadsDir;
  }

  get versionReplyTimeoutMs(): number {
    return this.device.versionReplyTimeoutMs;
  }

  get runningVersions(): OtaDevice['runningVersions'] {
    return this.device.runningVersions;
  }

  readonly currentVersion = (): Promise<string> => this.device.currentVersion();

  get downloads(): OtaDevice['downloads'] {
    return this.device.downloads;
  }

  /** An update session over this device's recording channel. */
  readonly session: UpdateSession;

  readonly channel = {
    reportProgress: async (targetVersion: string, report: ProgressReport, options: ReportOptions = {}): Promise<void> => {
      if (this.failReports) throw this.failReports;
      const recorded = { message: buildReportProgress(targetVersion, report), options };
      this.reports.push(recorded);
      const due = this.sentWaiters.filter((waiter) => this.reports.length >= waiter.count);
      this.sentWaiters = this.sentWaiters.filter((waiter) => !due.includes(waiter));
      for (const waiter of due) waiter.resolve(this.reports[waiter.count - 1]);
      await this.pubackGate;
    },
    reportVersion: async (version: string): Promise<ReportVersionResponse> => {
      if (this.failReports) throw this.failReports;
      this.versionReports.push(version);
      return this.versionResponse(version);
    },
  };

  /** Resolves once `count` reports have been sent (PUBACK or not). */
  whenReported(count = 1): Promise<RecordedReport> {
    if (this.reports.length >= count) return Promise.resolve(this.reports[count - 1]);
    return new Promise((resolve) => this.sentWaiters.push({ count, resolve }));
  }

  /** Reports are recorded as sent, then wait (as for a PUBACK) until releasePubacks(). */
  holdPubacks(): void {
    this.pubackGate = new Promise((resolve) => (this.releaseGate = resolve));
  }

  releasePubacks(): void {
    this.releaseGate?.();
    this.pubackGate = Promise.resolve();
  }

  /** The progress states reported so far, e.g. ['fail']. */
  states(): string[] {
    return this.reports.map((report) => report.message.report.progress.state);
  }

  async close(): Promise<void> {
    this.releasePubacks();
    await this.session.close();
    await this.device.close();
    await fs.rm(this.stateDir, { recursive: true, force: true });
  }
}
