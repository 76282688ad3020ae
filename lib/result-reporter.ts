/**
 * Reports the result of an update (burning, done or fail) with QoS 1 and waits for its PUBACK, for
 * as long as it takes: while disconnected the report waits in the connection's queue, so a result
 * is never lost while the program runs. After `done` the new version becomes the running one.
 */
import type { ReportOptions } from './ota-channel';
import { removeDownloadedFirmware } from './downloaded-firmware';
import { describeInvalidFirmwareVersion } from './firmware-version';
import { OtaResultCode, type ProgressReport, type ReportVersionResponse } from './ota-messages';

export type ResultState = 'burning' | 'done' | 'fail';
export const RESULT_STATES: readonly ResultState[] = ['burning', 'done', 'fail'];

/** What the reporter needs of a device (OtaDevice has all of it). */
export interface ReportingDevice {
  readonly downloadsDir: string;
  readonly versionReplyTimeoutMs: number;
  readonly runningVersions: { write(version: string): Promise<void> };
  endUpdate(version: string): void;
  readonly channel: {
    reportProgress(targetVersion: string, report: ProgressReport, options?: ReportOptions): Promise<void>;
    reportVersion(version: string, replyTimeoutMs?: number): Promise<ReportVersionResponse>;
  };
}

export interface ResultReport {
  state: ResultState;
  /** The target version of the update. */
  version: string;
  /** For fail (default -5, upgrade failed). */
  resultCode?: number;
  /** For fail: a short reason for the console. */
  resultMessage?: string;
  /** For done: the downloaded file, removed with the one in the downloads folder unless keepFile. */
  filePath?: string;
}

export interface ResultReportOptions {
  /** After done, keep the downloaded firmware and its checkpoint (default false). */
  keepFile?: boolean;
  /** After done, report the new version with report_version and wait for the reply (default true). */
  reportVersion?: boolean;
}

export interface ResultAcknowledgement {
  state: ResultState;
  version: string;
  /** When the PUBACK arrived (ISO 8601). */
  at: string;
  /** After done with reportVersion: the cloud's reply. */
  versionReport?: ReportVersionResponse;
  /** After done with reportVersion: why there is no (accepting) reply. */
  versionReportError?: Error;
  /** After done: why the downloaded firmware could not be removed. */
  cleanupError?: Error;
}

export const DEFAULT_FAILURE_MESSAGE = 'upgrade failed';

/** Says what is wrong with a report, or undefined when it can be sent. */
export function describeInvalidResultReport(report: { state?: unknown; version?: unknown; resultCode?: unknown }): string | undefined {
  if (typeof report.state !== 'string' || !(RESULT_STATES as readonly string[]).includes(report.state)) {
    return `state must be one of ${RESULT_STATES.join(', ')}, got ${JSON.stringify(report.state ?? null)}`;
  }
  const versionProblem = describeInvalidFirmwareVersion(report.version);
  if (versionProblem) return `target ${versionProblem}`;
  if (report.state === 'fail' && report.resultCode !== undefined) {
    if (typeof report.resultCode !== 'number' || !Number.isInteger(report.resultCode) || report.resultCode >= 0) {
      return `result_code must be a negative integer, got ${JSON.stringify(report.resultCode)}`;
    }
  }
  return undefined;
}

export class ResultReporter {
  constructor(private readonly device: ReportingDevice) {}

  /** Sends the report and waits for its PUBACK; throws when the report is invalid or cannot be sent. */
  async report(report: ResultReport, options: ResultReportOptions = {}): Promise<ResultAcknowledgement> {
    const problem = describeInvalidResultReport(report);
    if (problem) throw new Error(problem);
    const { state, version } = report;
    if (state === 'burning') {
      await this.device.channel.reportProgress(version, { state: 'burning' }, { timeoutMs: 0 });
      return { state, version, at: new Date().toISOString() };
    }
    if (state === 'fail') {
      try {
        await this.device.channel.reportProgress(
          version,
          { state: 'fail', resultCode: report.resultCode ?? OtaResultCode.upgradeFailed, resultMessage: report.resultMessage || DEFAULT_FAILURE_MESSAGE },
          { timeoutMs: 0 },
        );
      } finally {
        this.device.endUpdate(version);
      }
      return { state, version, at: new Date().toISOString() };
    }
    // Stored before the report: should the program stop before the PUBACK, the next start reports
    // the new version, and the cloud takes that as the update done.
    await this.device.runningVersions.write(version);
    try {
      await this.device.channel.reportProgress(version, { state: 'done' }, { timeoutMs: 0 });
    } finally {
      this.device.endUpdate(version);
    }
    const acknowledgement: ResultAcknowledgement = { state, version, at: new Date().toISOString() };
    if (!options.keepFile) {
      try {
        await removeDownloadedFirmware(this.device.downloadsDir, version, report.filePath);
      } catch (error) {
        acknowledgement.cleanupError = error as Error;
      }
    }
    if (options.reportVersion === false) return acknowledgement;
    try {
      acknowledgement.versionReport = await this.device.channel.reportVersion(version, this.device.versionReplyTimeoutMs);
      if (acknowledgement.versionReport.result_code !== 0) {
        const { result_code: code, result_msg: message } = acknowledgement.versionReport;
        acknowledgement.versionReportError = new Error(`the cloud refused version ${version} (${code}): ${message}`);
      }
    } catch (error) {
      acknowledgement.versionReportError = error as Error;
    }
    return acknowledgement;
  }
}
