/**
 * The one owner of a device's update, from the command to the final report (PROTOCOL.md §4).
 *
 * It holds the command being handled (refreshed when the cloud pushes it again, so that a freshly
 * signed URL is used from the next request on) and its state: received → downloading → downloaded →
 * verified → burning → done | failed. It runs the download, supersedes it for another version,
 * cancels it, and sends every report of the update. Invariant: every update that starts ends in
 * exactly one final report (`done`, or `fail` with a real code and reason), whatever fails on the
 * way, and only then is it released. `end` is the one place that does that.
 */
import { EventEmitter } from 'events';
import type { DownloadSlots } from './download-slots';
import type { DownloadsFolder } from './downloads-folder';
import { findFirmwareSignature, policyChecksSignatures, type SignaturePolicy } from './firmware-signature';
import { checkFirmwareFile, type DownloadedFirmware, type FirmwareCheck, type FirmwareSignatureExpectation } from './firmware-verification';
import type { FirmwareVersion } from './firmware-version';
import type { ReportOptions } from './ota-channel';
import { OtaResultCode, type ProgressReport, type ReportVersionResponse, type UpdateCommand } from './ota-messages';
import { createFirmwareDownload, type FirmwareDownload } from './threaded-download';
import { DownloadAbortedError, type DownloadProgress, type DownloadResult, type DownloadRetry, type ResumableDownloadOptions } from './resumable-download';
import { storageFailure, UpdateFailure } from './update-failure';

export type UpdateState = 'received' | 'downloading' | 'downloaded' | 'verified' | 'burning' | 'done' | 'failed';

/** What the session needs of a device (OtaDevice has all of it). */
export interface SessionDevice {
  readonly downloads: DownloadsFolder;
  readonly runningVersions: { write(version: string): Promise<void> };
  readonly versionReplyTimeoutMs: number;
  /** Extra CA trusted for firmware downloads. */
  readonly customCaPem?: string;
  readonly channel: {
    reportProgress(targetVersion: string, report: ProgressReport, options?: ReportOptions): Promise<void>;
    reportVersion(version: string, replyTimeoutMs?: number): Promise<ReportVersionResponse>;
  };
}

export interface UpdateSessionOptions {
  /**
   * An update that has not ended this long after its command arrived is ended with `fail` (-1 while
   * it downloads, -5 after): the cloud's own task timeout is not known to the device. Default 30 min;
   * 0 for none.
   */
  deadlineMs?: number;
  /** Shared with the other sessions over the same connection (a gateway's sub-devices): downloads wait for a slot. */
  downloadSlots?: DownloadSlots;
  /** The product whose firmware signatures name it in their manifest. */
  productId?: string;
  /** The public keys firmware signatures are checked with, and whether a signature is required. */
  signaturePolicy?: SignaturePolicy;
}

export const DEFAULT_UPDATE_DEADLINE_MS = 30 * 60 * 1000;

/** An update as the nodes show it. */
export interface UpdateView {
  version: FirmwareVersion;
  command: UpdateCommand;
  state: UpdateState;
  startedAt: Date;
  /** While downloading: the last percent. */
  percent?: number;
  /** Once failed: what the cloud was told. */
  failure?: { resultCode: number; reason: string };
}

/** How the session took a command. */
export type ReceiveOutcome =
  /** A new update. */
  | 'started'
  /** A new update that ended the one for another version (reported `fail`). */
  | 'replaced'
  /** The command of the update under way, pushed again: nothing new starts (a new URL is kept). */
  | 'duplicate'
  /** The command of an update whose download had stopped (its node was closed): it starts again. */
  | 'resumed';

/** Settings of a download the node passes on; the command, folder and CA come from the session. */
export type DownloadTuning = Omit<ResumableDownloadOptions, 'command' | 'folder' | 'ca'>;

export interface DownloadHooks {
  progress?: (progress: DownloadProgress) => void;
  retry?: (retry: DownloadRetry) => void;
  resumed?: (fromByte: number) => void;
  restartFromZero?: (reason: string) => void;
  /** The download waits for a slot: as many others run already over the connection as it allows. */
  queued?: () => void;
}

export interface FirmwareExpectation {
  filePath: string;
  /** For a version the session is not handling (the flow verifies a file of its own): the md5sum to match. */
  md5sum?: string;
  sha256?: string;
  fileSize?: number;
  /** Hash the whole file again rather than trust the download's digests. */
  reread?: boolean;
  /** A signature the flow found elsewhere (msg.signature); else the command's user_defined has it, if anything. */
  signature?: unknown;
}

export interface DoneOptions {
  /** The downloaded file, removed after done (when inside the downloads folder) unless keepFile. */
  filePath?: string;
  keepFile?: boolean;
  /** Report the new version with report_version and wait for the reply (default true). */
  reportVersion?: boolean;
}

export interface DoneAcknowledgement {
  /** When the PUBACK of done arrived (ISO 8601). */
  at: string;
  versionReport?: ReportVersionResponse;
  versionReportError?: Error;
  cleanupError?: Error;
}

/** A step asked of the session that does not fit the update: a wiring mistake, not a failed update. */
export class UpdateStepError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpdateStepError';
  }
}

/** A final report asked for an update that has already had its one. */
export class UpdateAlreadyEndedError extends UpdateStepError {
  constructor(readonly ended: UpdateView) {
    const outcome = ended.failure ? `fail ${ended.failure.resultCode} (${ended.failure.reason})` : 'done';
    super(`the update to ${ended.version} has already ended with ${outcome}; it is not reported again`);
    this.name = 'UpdateAlreadyEndedError';
  }
}

export interface UpdateSessionEvents {
  /** A new update: statuses left by the previous one no longer apply. */
  started: [UpdateView];
  /** Every change of state. */
  state: [UpdateView];
  /** The final report is sent (or could not be, when error is set) and the update released. */
  ended: [UpdateView, Error | undefined];
  /** done was acknowledged: the device now runs this version. */
  running: [string];
  /** Something worth a log line that changes no state. */
  warning: [string];
}

type Outcome = { state: 'done' } | { state: 'fail'; failure: UpdateFailure };

interface Update extends UpdateView {
  download?: FirmwareDownload;
  /** Aborts the wait for a download slot. */
  waitingForSlot?: AbortController;
  /** The download stopped because its node closed: a re-push of the command starts it again. */
  interrupted: boolean;
  /** The file the download finished, whose digests the verify step trusts while the file is unchanged. */
  downloaded?: DownloadedFirmware;
  deadline?: NodeJS.Timeout;
  /** Set once the final report is under way: nothing else may end the update. */
  ending?: Promise<Error | undefined>;
}

const sameFirmware = (a: UpdateCommand, b: UpdateCommand) => a.version === b.version && a.md5sum === b.md5sum;

function viewOf(update: Update): UpdateView {
  const view: UpdateView = { version: update.version, command: update.command, state: update.state, startedAt: update.startedAt };
  if (update.percent !== undefined) view.percent = update.percent;
  if (update.failure) view.failure = { ...update.failure };
  return view;
}

function asUpdateFailure(error: unknown): UpdateFailure {
  if (error instanceof UpdateFailure) return error;
  return new UpdateFailure(OtaResultCode.upgradeFailed, error instanceof Error ? error.message : String(error), { cause: error });
}

export class UpdateSession extends EventEmitter<UpdateSessionEvents> {
  private readonly device: SessionDevice;
  private readonly deadlineMs: number;
  private readonly downloadSlots?: DownloadSlots;
  /** Verify steps that will check a SHA-256 of their own: downloads compute one as the bytes arrive. */
  private sha256Checkers = 0;
  private readonly productId: string;
  readonly signaturePolicy: SignaturePolicy;
  private update: Update | undefined;
  /** The last update that ended, so that a second final report for it is refused. */
  private lastEnded: Update | undefined;
  /** Commands are taken one after another, in the order they came. */
  private receiving: Promise<unknown> = Promise.resolve();

  constructor(device: SessionDevice, options: UpdateSessionOptions = {}) {
    super();
    this.device = device;
    this.deadlineMs = options.deadlineMs ?? DEFAULT_UPDATE_DEADLINE_MS;
    this.downloadSlots = options.downloadSlots;
    this.productId = options.productId ?? '';
    this.signaturePolicy = options.signaturePolicy ?? { keys: [], required: false };
    // A signature is checked over the SHA-256, which the download computes as the bytes arrive.
    if (policyChecksSignatures(this.signaturePolicy)) this.sha256Checkers = 1;
  }

  /** The update under way, if any. */
  get current(): UpdateView | undefined {
    return this.update ? viewOf(this.update) : undefined;
  }

  /** Takes a parsed command: starts its update, or keeps the one under way when it is the same firmware. */
  receive(command: UpdateCommand): Promise<ReceiveOutcome> {
    const next = this.receiving.then(() => this.receiveNow(command));
    this.receiving = next.catch(() => undefined);
    return next;
  }

  /**
   * Downloads the firmware of the update under way. Resolves with the file, or undefined when this
   * update's download is already running (the message joins it). Rejects with the UpdateFailure
   * the cloud was told (also when the update was ended meanwhile: superseded, cancelled, out of
   * time), a DownloadAbortedError when the download was stopped for a shutdown, or an
   * UpdateStepError when there is no such update to download.
   */
  async download(version: string, tuning: DownloadTuning = {}, hooks: DownloadHooks = {}): Promise<DownloadResult | undefined> {
    const update = this.updateFor(version, 'download');
    if (update.download || update.waitingForSlot) return undefined;
    if (update.state !== 'received') throw new UpdateStepError(`${version} is already ${update.state}`);
    const release = await this.takeDownloadSlot(update, hooks);
    try {
      return await this.runDownload(update, tuning, hooks);
    } finally {
      release();
    }
  }

  /** Waits for a slot of the shared download limit; rejects as a download does when the update ends or stops meanwhile. */
  private async takeDownloadSlot(update: Update, hooks: DownloadHooks): Promise<() => void> {
    const slots = this.downloadSlots;
    if (!slots) return () => undefined;
    if (slots.full) hooks.queued?.();
    const waiting = new AbortController();
    update.waitingForSlot = waiting;
    try {
      return await slots.acquire(waiting.signal);
    } catch {
      throw await this.stoppedDownloadError(update, new DownloadAbortedError('stopped while waiting for a download slot'));
    } finally {
      if (update.waitingForSlot === waiting) update.waitingForSlot = undefined;
    }
  }

  /**
   * Why a stopped download stopped: the failure the update ended with when something else ended it
   * (superseded, cancelled, out of time), once that final report is out; else the stop itself.
   */
  private async stoppedDownloadError(update: Update, stopped: DownloadAbortedError): Promise<Error> {
    if (update.ending) await update.ending;
    return update.failure ? new UpdateFailure(update.failure.resultCode, update.failure.reason, { cause: stopped }) : stopped;
  }

  private async runDownload(update: Update, tuning: DownloadTuning, hooks: DownloadHooks): Promise<DownloadResult> {
    const version = update.version;
    const download = createFirmwareDownload({
      sha256: this.sha256Checkers > 0,
      ...tuning,
      command: update.command,
      folder: this.device.downloads,
      ca: this.device.customCaPem,
    });
    update.download = download;
    update.downloaded = undefined;
    update.interrupted = false;
    update.percent = undefined;
    this.setState(update, 'downloading');
    download.on('progress', (progress) => {
      if (update.ending) return;
      update.percent = progress.percent;
      // QoS 0: a lost percent is replaced by the next one; offline it is not worth keeping.
      this.device.channel.reportProgress(update.version, { state: 'downloading', percent: progress.percent }).catch(() => undefined);
      hooks.progress?.(progress);
    });
    download.on('retry', (retry) => hooks.retry?.(retry));
    download.on('resumed', ({ fromByte }) => hooks.resumed?.(fromByte));
    download.on('restart-from-zero', ({ reason }) => hooks.restartFromZero?.(reason));
    let result: DownloadResult;
    try {
      result = await download.start();
    } catch (error) {
      if (update.download === download) update.download = undefined;
      if (error instanceof DownloadAbortedError) {
        throw await this.stoppedDownloadError(update, error);
      }
      const failure = asUpdateFailure(error);
      await this.end(update, { state: 'fail', failure });
      throw failure;
    }
    if (update.download === download) update.download = undefined;
    // Finished just as it was ended by something else: the file is not handed on.
    if (update.ending || this.update !== update) throw new DownloadAbortedError(`the update to ${version} has ended`);
    update.downloaded = { path: result.path, identity: result.identity, md5: result.md5 };
    if (result.sha256 !== undefined) update.downloaded.sha256 = result.sha256;
    this.setState(update, 'downloaded');
    return result;
  }

  /**
   * Stops the download of the update under way for the program's shutdown or a redeploy: the file
   * and its checkpoint stay, and the cloud's re-push after the next connect starts it again.
   */
  async stopDownload(reason: string): Promise<void> {
    const update = this.update;
    if (!update || update.ending || (!update.download && !update.waitingForSlot)) return;
    update.interrupted = true;
    update.waitingForSlot?.abort();
    await update.download?.abort(reason);
    if (!update.ending) this.setState(update, 'received');
  }

  /** Cancels the update under way: the download stops, its file goes, and the cloud is told fail -5. */
  async cancel(reason = 'cancelled on the device'): Promise<UpdateView | undefined> {
    const update = this.update;
    if (!update || update.ending) return undefined;
    await this.end(update, { state: 'fail', failure: new UpdateFailure(OtaResultCode.upgradeFailed, reason) }, { discardDownload: true });
    return viewOf(update);
  }

  /**
   * A verify step that will check a SHA-256 of its own: from now on downloads compute one as the
   * bytes arrive, so that the check needs no second pass over the file. Call the result when that
   * step goes away.
   */
  expectSha256Checks(): () => void {
    this.sha256Checkers += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.sha256Checkers -= 1;
    };
  }

  /**
   * Checks the file against the update's md5sum (and a SHA-256 when given): by the digests its
   * download computed while the file is the one the download finished, else by reading it again. A file that
   * fails is removed, and the update ends with fail and the reason. A version the session is not
   * handling is checked against expectation.md5sum, and a failure reported all the same.
   */
  async verify(version: string, expectation: FirmwareExpectation): Promise<FirmwareCheck> {
    const update = this.liveUpdateFor(version);
    if (update?.download) throw new UpdateStepError(`${version} is still downloading`);
    const md5sum = update?.command.md5sum ?? expectation.md5sum;
    if (!md5sum) throw new UpdateStepError(`no update to ${version} is under way and no md5sum was given`);
    const check = await checkFirmwareFile(
      {
        version,
        filePath: expectation.filePath,
        md5sum,
        sha256: expectation.sha256,
        fileSize: update?.command.file_size ?? expectation.fileSize,
        signature: this.signatureExpectation(update?.command, expectation.signature),
      },
      {
        downloaded: update?.downloaded,
        reread: expectation.reread,
        onDescriptorShortage: ({ attempt, code, delayMs }) =>
          this.emit('warning', `verifying ${version}: out of file descriptors (${code}), retry ${attempt} in ${Math.round(delayMs / 100) / 10} s`),
      },
    );
    if (check.ok) {
      if (update) this.setState(update, 'verified');
      return check;
    }
    // A new push downloads afresh.
    await this.device.downloads.remove(version, expectation.filePath).catch((error: Error) => this.emit('warning', `cannot remove ${version}: ${error.message}`));
    const error = await this.endOrReport(update, version, { state: 'fail', failure: new UpdateFailure(check.resultCode, check.reason) });
    if (error) throw error;
    return check;
  }

  /** The signature check of a verify: when the device's policy asks for one, or a signature comes anyway. */
  private signatureExpectation(command: UpdateCommand | undefined, flowSignature: unknown): FirmwareSignatureExpectation | undefined {
    const found = findFirmwareSignature(flowSignature, command?.user_defined_text ?? command?.user_defined);
    if (!found.found && !policyChecksSignatures(this.signaturePolicy)) return undefined;
    return { productId: this.productId, policy: this.signaturePolicy, found };
  }

  /** Reports burning (QoS 1) and waits for its PUBACK. */
  async reportBurning(version: string): Promise<void> {
    const update = this.liveUpdateFor(version);
    if (update?.download) throw new UpdateStepError(`${version} is still downloading`);
    if (update) this.setState(update, 'burning');
    await this.device.channel.reportProgress(version, { state: 'burning' }, { timeoutMs: 0 });
  }

  /** Reports fail with the code and reason the flow gives (its burn failed, say); ends the update. */
  async reportFail(version: string, resultCode: number, reason: string): Promise<void> {
    const update = this.liveUpdateFor(version);
    const error = await this.endOrReport(update, version, { state: 'fail', failure: new UpdateFailure(resultCode, reason) }, { discardDownload: true });
    if (error) throw error;
  }

  /**
   * Records the new running version, reports done and waits for its PUBACK, then removes the
   * download and reports the new version. When the version cannot be recorded the update ends
   * with fail -5 instead, saying why.
   */
  async reportDone(version: string, options: DoneOptions = {}): Promise<DoneAcknowledgement> {
    const update = this.liveUpdateFor(version);
    if (update?.download) throw new UpdateStepError(`${version} is still downloading`);
    try {
      // Stored before the report: should the program stop before the PUBACK, the next start reports
      // the new version, and the cloud takes that as the update done.
      await this.device.runningVersions.write(version);
    } catch (error) {
      const failure = storageFailure('installed, but cannot record the running version', error);
      const reportError = await this.endOrReport(update, version, { state: 'fail', failure });
      throw reportError ?? failure;
    }
    // Running now, whether or not the report below gets through.
    this.emit('running', version);
    const reportError = await this.endOrReport(update, version, { state: 'done' });
    if (reportError) throw reportError;
    const acknowledgement: DoneAcknowledgement = { at: new Date().toISOString() };
    if (!options.keepFile) {
      await this.device.downloads.remove(version, options.filePath).catch((error: Error) => (acknowledgement.cleanupError = error));
    }
    if (options.reportVersion === false) return acknowledgement;
    try {
      const response = await this.device.channel.reportVersion(version, this.device.versionReplyTimeoutMs);
      acknowledgement.versionReport = response;
      if (response.result_code !== 0) {
        acknowledgement.versionReportError = new Error(`the cloud refused version ${version} (${response.result_code}): ${response.result_msg}`);
      }
    } catch (error) {
      acknowledgement.versionReportError = error as Error;
    }
    return acknowledgement;
  }

  /**
   * Answers a command that is not taken up (its version is running already, it is malformed, a
   * downgrade): no update starts, the cloud is told done or fail so that its task does not wait.
   */
  async decline(version: string, outcome: { state: 'done' } | { state: 'fail'; resultCode: number; reason: string }): Promise<void> {
    await this.sendFinalReport(version, outcome.state === 'done' ? outcome : { state: 'fail', failure: new UpdateFailure(outcome.resultCode, outcome.reason) });
  }

  /** Stops the deadline and the download (keeping its file for a resume after the restart). */
  async close(): Promise<void> {
    const update = this.update;
    if (!update) return;
    clearTimeout(update.deadline);
    update.interrupted = true;
    update.waitingForSlot?.abort();
    await update.download?.abort('the device is closing');
  }

  private async receiveNow(command: UpdateCommand): Promise<ReceiveOutcome> {
    const current = this.update;
    if (current && !current.ending && sameFirmware(current.command, command)) {
      current.command = command;
      current.download?.updateUrl(command.url);
      if (!current.interrupted) return 'duplicate';
      current.interrupted = false;
      this.setState(current, 'received');
      return 'resumed';
    }
    if (current && !current.ending) {
      const failure = new UpdateFailure(OtaResultCode.upgradeFailed, `superseded by version ${command.version}`);
      await this.end(current, { state: 'fail', failure });
    }
    const update: Update = { version: command.version, command, state: 'received', startedAt: new Date(), interrupted: false };
    this.update = update;
    if (this.deadlineMs > 0) {
      update.deadline = setTimeout(() => void this.expire(update), this.deadlineMs);
      update.deadline.unref();
    }
    this.emit('started', viewOf(update));
    this.emit('state', viewOf(update));
    return current ? 'replaced' : 'started';
  }

  private async expire(update: Update): Promise<void> {
    if (update.ending) return;
    const limit = this.deadlineMs >= 60_000 ? `${Math.round(this.deadlineMs / 60_000)} min` : `${Math.ceil(this.deadlineMs / 1000)} s`;
    const failure =
      update.state === 'received' || update.state === 'downloading'
        ? new UpdateFailure(OtaResultCode.downloadTimeout, `download did not finish within ${limit}`)
        : new UpdateFailure(OtaResultCode.upgradeFailed, `no result within ${limit} (the update was ${update.state})`);
    await this.end(update, { state: 'fail', failure });
  }

  /** The update under way for `version`, or an UpdateStepError that says why there is none. */
  private updateFor(version: string, step: string): Update {
    const update = this.liveUpdateFor(version);
    if (update) return update;
    const current = this.update;
    if (current && !current.ending) throw new UpdateStepError(`cannot ${step} ${version}: the update under way is to ${current.version}`);
    throw new UpdateStepError(`cannot ${step} ${version}: no update to it is under way (its command comes from ota-update-in)`);
  }

  /** The update under way for `version`; throws UpdateAlreadyEndedError when it has had its final report. */
  private liveUpdateFor(version: string): Update | undefined {
    const update = this.update;
    if (update && update.version === version) {
      if (update.ending) throw new UpdateAlreadyEndedError(viewOf(update));
      return update;
    }
    if (this.lastEnded?.version === version) throw new UpdateAlreadyEndedError(viewOf(this.lastEnded));
    return undefined;
  }

  private setState(update: Update, state: UpdateState): void {
    if (update.state === state) return;
    update.state = state;
    this.emit('state', viewOf(update));
  }

  private endOrReport(update: Update | undefined, version: string, outcome: Outcome, options: { discardDownload?: boolean } = {}): Promise<Error | undefined> {
    return update
      ? this.end(update, outcome, options)
      : this.sendFinalReport(version, outcome).then(
          () => undefined,
          (error: Error) => error,
        );
  }

  /**
   * Ends an update: stops its download and deadline, sends its one final report (waiting through
   * disconnections for the PUBACK), then releases it. Resolves with the error of a report that could
   * not be sent (the connection was closed), never rejects; a second call joins the first.
   */
  private end(update: Update, outcome: Outcome, options: { discardDownload?: boolean } = {}): Promise<Error | undefined> {
    if (update.ending) return update.ending;
    update.ending = (async () => {
      clearTimeout(update.deadline);
      update.waitingForSlot?.abort();
      const download = update.download;
      update.download = undefined;
      if (download) {
        const reason = outcome.state === 'fail' ? outcome.failure.reason : 'done';
        if (options.discardDownload) await download.discard(reason).catch(() => undefined);
        else await download.abort(reason);
      }
      if (outcome.state === 'fail') update.failure = { resultCode: outcome.failure.resultCode, reason: outcome.failure.reason };
      this.setState(update, outcome.state === 'done' ? 'done' : 'failed');
      let reportError: Error | undefined;
      try {
        await this.sendFinalReport(update.version, outcome);
      } catch (error) {
        reportError = error as Error;
        this.emit('warning', `the ${outcome.state} report of ${update.version} could not be sent: ${reportError.message}`);
      }
      if (this.update === update) this.update = undefined;
      this.lastEnded = update;
      this.emit('ended', viewOf(update), reportError);
      return reportError;
    })();
    return update.ending;
  }

  private async sendFinalReport(version: string, outcome: Outcome): Promise<void> {
    const report: ProgressReport =
      outcome.state === 'done' ? { state: 'done' } : { state: 'fail', resultCode: outcome.failure.resultCode, resultMessage: outcome.failure.reason };
    await this.device.channel.reportProgress(version, report, { timeoutMs: 0 });
  }
}
