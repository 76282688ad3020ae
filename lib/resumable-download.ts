/**
 * Downloads one firmware over HTTP(S) into the device's downloads folder and resumes from the bytes
 * on disk after a dropped connection or a restart of the program (PROTOCOL.md §4 step 3), without
 * the SDK defects of §5: a server that ignores Range, a changed file or an early end of the body is
 * detected, the body is never decoded nor buffered whole, and the checkpoint never claims bytes that
 * are not durable on disk. What an answer means is http-range-response.ts; the file being written
 * is partial-firmware-file.ts; where files go is the DownloadsFolder.
 */
import { EventEmitter } from 'events';
import { setTimeout as sleep } from 'timers/promises';
import type { SecureContext } from 'tls';
import type { DownloadCheckpoint } from './checkpoint-store';
import { descriptorShortageCode, DescriptorShortageError, DESCRIPTOR_SHORTAGE_RETRIES, shortageRetryDelayMs } from './descriptor-shortage';
import type { DownloadsFolder } from './downloads-folder';
import { md5Equals, type FirmwareDigest } from './firmware-digest';
import type { HashingMode } from './firmware-hasher';
import { requestFirmware, type BodySink, type FirmwareResponse } from './firmware-http-request';
import { judgeRangeResponse, rangeRequestHeaders, redirectTarget, RetryableFailure } from './http-range-response';
import { OtaResultCode, type UpdateCommand } from './ota-messages';
import { PartialFirmwareFile, type FileIdentity } from './partial-firmware-file';
import { DEFAULT_PROGRESS_INTERVAL_MS, ProgressThrottle } from './progress-throttle';
import { secureContextTrusting } from './tls-trust';
import { describeStorageError, UpdateFailure } from './update-failure';

export interface ResumableDownloadOptions {
  /** The parsed update command: version, URL, md5sum and file_size. */
  command: Pick<UpdateCommand, 'version' | 'url' | 'md5sum' | 'file_size'>;
  /** The device's downloads folder: where the partial and finished file and its checkpoint are kept. */
  folder: DownloadsFolder;
  /** Extra CA certificates trusted for https, besides Node's default store. */
  ca?: string | string[];
  /** Longest wait for the response headers of one request (default 15000 ms). */
  connectTimeoutMs?: number;
  /** Longest silence while the body is being received (default 30000 ms). */
  readTimeoutMs?: number;
  /** Retries after failures in a row that brought no new byte (default 5). */
  maxRetries?: number;
  /** First retry delay, doubled for each further retry (default 1000 ms). */
  retryBackoffMs?: number;
  /** Longest retry delay (default 30000 ms). */
  maxRetryBackoffMs?: number;
  /**
   * A body that brings fewer than this many bytes per second over minSpeedWindowMs ends the
   * download with -1: a server that trickles a byte every few seconds never trips the read timeout
   * (default 1024; 0 switches the check off).
   */
  minBytesPerSecond?: number;
  /** The window of the minimum speed (default 60000 ms). */
  minSpeedWindowMs?: number;
  /** Redirects followed for one request (default 5). */
  maxRedirects?: number;
  /** Least time between two progress events (default 1000 ms). */
  progressIntervalMs?: number;
  /**
   * A checkpoint is saved once this much time has passed since the last one (default 1000 ms) or
   * checkpointBytes have arrived (default 1 MiB), whichever comes first: a crash loses at most
   * about a second or a MiB of download, and saves stay far apart from the chunks.
   */
  checkpointIntervalMs?: number;
  checkpointBytes?: number;
  /** Also compute the SHA-256 of the file as it arrives (MD5 always is): for a verify step that checks one. */
  sha256?: boolean;
  /** Where the hashing runs (default: the shared hashing thread). */
  hashing?: HashingMode;
  /** Random numbers in [0, 1) for the jitter of retry delays (default Math.random). */
  random?: () => number;
}

export interface DownloadResult {
  path: string;
  version: string;
  size: number;
  md5: string;
  /** Present when asked for (the sha256 option). */
  sha256?: string;
  /** The file as it was when the download finished: a verify step that finds it unchanged trusts md5 and sha256. */
  identity: FileIdentity;
  /** Body bytes fetched in this run. */
  bytesDownloaded: number;
  /** Bytes that were on disk from an earlier run and kept (0 after a restart from zero). */
  resumedFromByte: number;
}

export interface DownloadProgress {
  /** Floor of the percent done, 0 first, 100 last. */
  percent: number;
  bytes: number;
  total: number;
  /** Average body rate since the previous progress event. */
  bytesPerSecond: number;
}

export interface DownloadRetry {
  /** 1 for the first retry after the last failure that made progress. */
  attempt: number;
  fromByte: number;
  reason: string;
  delayMs: number;
  /** The process or system ran out of file descriptors: a retry not counted against maxRetries. */
  descriptorShortage?: boolean;
}

export interface ResumableDownloadEvents {
  progress: [DownloadProgress];
  retry: [DownloadRetry];
  'restart-from-zero': [{ reason: string }];
  resumed: [{ fromByte: number }];
}

/** start() was stopped by abort() or discard(); the partial file and its checkpoint stay unless discarded. */
export class DownloadAbortedError extends Error {
  constructor(readonly reason: string) {
    super(`download aborted: ${reason}`);
    this.name = 'DownloadAbortedError';
  }
}

/** The bytes on disk were dropped and the next request must start from byte 0. */
class RestartNeeded extends Error {}

export const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;
export const DEFAULT_READ_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_RETRIES = 5;
export const DEFAULT_RETRY_BACKOFF_MS = 1000;
export const DEFAULT_MAX_RETRY_BACKOFF_MS = 30_000;
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 1000;
export const DEFAULT_CHECKPOINT_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MIN_BYTES_PER_SECOND = 1024;
export const DEFAULT_MIN_SPEED_WINDOW_MS = 60_000;
export const DEFAULT_MAX_REDIRECTS = 5;

/** Restarts from zero that each need a new request, before a server is judged inconsistent. */
const MAX_RESTARTS_FROM_ZERO = 3;

const UNTRUSTED_CERTIFICATE_CODES = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A message fit for result_msg: no URL (it holds the signature), one line, short. */
function shortMessage(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  const text = message
    .replace(/\b[a-z][a-z0-9+.-]*:\/\/\S+/gi, '<url>')
    .replace(/\s+/g, ' ')
    .trim();
  if (typeof code === 'string' && !text.includes(code)) return `${code}: ${text}`.slice(0, 200);
  return text.slice(0, 200);
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export class ResumableDownload extends EventEmitter<ResumableDownloadEvents> {
  readonly version: string;
  readonly md5sum: string;
  readonly fileSize: number;
  readonly folder: DownloadsFolder;
  /** `<downloads>/FW_<version>.bin` */
  readonly filePath: string;
  private url: URL;
  private readonly connectTimeoutMs: number;
  private readonly readTimeoutMs: number;
  private readonly maxRetries: number;
  private readonly retryBackoffMs: number;
  private readonly maxRetryBackoffMs: number;
  private readonly minBytesPerSecond: number;
  private readonly minSpeedWindowMs: number;
  private readonly maxRedirects: number;
  private readonly progressIntervalMs: number;
  private readonly checkpointIntervalMs: number;
  private readonly checkpointBytes: number;
  private readonly sha256: boolean;
  private readonly hashing: HashingMode | undefined;
  private readonly random: () => number;
  /** The trust of https requests: Node's own plus the ca option's, shared (tls-trust.ts). */
  private readonly secureContext: SecureContext | undefined;

  private running: Promise<DownloadResult> | undefined;
  private controller: AbortController | undefined;
  private abortReason = 'aborted';

  // The state of one run of start().
  private file: PartialFirmwareFile | undefined;
  /** False until the bytes on disk are known to belong to this firmware: no checkpoint may be saved before. */
  private positionKnown = false;
  private etag: string | undefined;
  private bytesDownloaded = 0;
  private resumedFromByte = 0;
  private lastCheckpointAt = 0;
  private lastCheckpointPosition = 0;
  private throttle = new ProgressThrottle();
  private lastProgressAt = 0;
  private lastProgressBytes = 0;
  /** A checkpoint being saved while the body keeps coming, and the first failure of one. */
  private checkpointing: Promise<void> | undefined;
  private checkpointFailure: unknown;
  /** Set when the disk filled up: the partial file is removed rather than kept for a resume. */
  private diskFull = false;
  /** Where a response's body goes: the file, through takeBody. */
  private readonly sink: BodySink = {
    takeAvailable: (bytes) => this.takeBody(bytes),
    roomFreed: () => this.openFile().roomFreed(),
  };

  constructor(options: ResumableDownloadOptions) {
    super();
    const { command } = options;
    this.version = command.version;
    this.md5sum = command.md5sum;
    this.fileSize = command.file_size;
    this.url = new URL(command.url);
    this.folder = options.folder;
    this.filePath = options.folder.firmwarePath(command.version);
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.readTimeoutMs = options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.retryBackoffMs = options.retryBackoffMs ?? DEFAULT_RETRY_BACKOFF_MS;
    this.maxRetryBackoffMs = options.maxRetryBackoffMs ?? DEFAULT_MAX_RETRY_BACKOFF_MS;
    this.minBytesPerSecond = options.minBytesPerSecond ?? DEFAULT_MIN_BYTES_PER_SECOND;
    this.minSpeedWindowMs = options.minSpeedWindowMs ?? DEFAULT_MIN_SPEED_WINDOW_MS;
    this.maxRedirects = options.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
    this.progressIntervalMs = options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
    this.checkpointIntervalMs = options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    this.checkpointBytes = options.checkpointBytes ?? DEFAULT_CHECKPOINT_BYTES;
    this.sha256 = options.sha256 ?? false;
    this.hashing = options.hashing;
    this.random = options.random ?? Math.random;
    this.secureContext = options.ca === undefined ? undefined : secureContextTrusting(options.ca);
  }

  /** Whether start() is under way. */
  get isRunning(): boolean {
    return this.running !== undefined;
  }

  /** A re-pushed command's freshly signed URL: used from the next request on. */
  updateUrl(url: string): void {
    this.url = new URL(url);
  }

  /**
   * Downloads the rest of the firmware (or all of it) and checks its size. Rejects with an
   * UpdateFailure (whose resultCode goes to the cloud) or a DownloadAbortedError.
   */
  start(): Promise<DownloadResult> {
    if (this.running) return Promise.reject(new Error(`the download of ${this.version} is already running`));
    const controller = new AbortController();
    this.controller = controller;
    this.abortReason = 'aborted';
    const running: Promise<DownloadResult> = this.run(controller.signal).finally(() => {
      if (this.running === running) this.running = undefined;
    });
    this.running = running;
    return running;
  }

  /**
   * Stops start() (which rejects with DownloadAbortedError); the partial file and checkpoint stay
   * for a later resume. Resolves once the file is closed and the checkpoint saved.
   */
  async abort(reason = 'aborted'): Promise<void> {
    const running = this.running;
    if (!running || !this.controller) return;
    if (!this.controller.signal.aborted) {
      this.abortReason = reason;
      this.controller.abort();
    }
    await running.then(
      () => undefined,
      () => undefined,
    );
  }

  /** Stops a running start() and removes the partial file and its checkpoint. */
  async discard(reason = 'discarded'): Promise<void> {
    await this.abort(reason);
    await this.folder.remove(this.version);
  }

  private async run(signal: AbortSignal): Promise<DownloadResult> {
    this.resetRunState();
    for (let shortages = 1; ; shortages++) {
      try {
        return await this.runOnce(signal);
      } catch (error) {
        const code = signal.aborted ? undefined : descriptorShortageCode(error);
        if (code === undefined || shortages > DESCRIPTOR_SHORTAGE_RETRIES) throw await this.endWithFailure(error, signal);
        // Out of file descriptors: the file is closed, and opened again (resumed from its checkpoint) after a wait.
        await this.closeFile(true);
        this.file = undefined;
        this.positionKnown = false;
        const delayMs = shortageRetryDelayMs(shortages, this.random);
        this.emit('retry', { attempt: shortages, fromByte: this.position, reason: `out of file descriptors (${code})`, delayMs, descriptorShortage: true });
        try {
          await sleep(delayMs, undefined, { signal });
        } catch (aborted) {
          throw await this.endWithFailure(aborted, signal);
        }
      } finally {
        await this.closeFile(false);
      }
    }
  }

  /** Closes (and when its bytes are of no use, removes) the file of a download that failed; returns what start() rejects with. */
  private async endWithFailure(error: unknown, signal: AbortSignal): Promise<Error> {
    const failure = this.toFailure(error, signal);
    // Bytes that do not belong to this firmware are no use for a resume, nor is half a file on a full disk.
    const discard = failure instanceof UpdateFailure && (failure.resultCode === OtaResultCode.md5Mismatch || this.diskFull);
    await this.closeFile(!discard && !(failure instanceof UpdateFailure && failure.resultCode === OtaResultCode.upgradeFailed));
    if (discard) await this.folder.remove(this.version).catch(() => undefined);
    return failure;
  }

  /** One go at the download, from opening (or resuming) the file to the finished file. */
  private async runOnce(signal: AbortSignal): Promise<DownloadResult> {
    await this.folder.prepare();
    // After the first await, so that listeners attached right after start() hear the first 0.
    this.reportProgress();
    await this.folder.removeAllBut(this.version).catch((error: unknown) => {
      throw this.diskFailure(error, 'cannot clear the downloads folder');
    });
    await this.openPartialFile(signal);
    const file = this.openFile();
    if (file.size === this.fileSize) {
      const digest = await file.digest();
      if (md5Equals(digest.md5, this.md5sum)) return await this.complete(digest);
      await this.restartFromZero(`the ${this.fileSize} bytes on disk do not match md5sum`);
    }
    await this.folder.ensureSpace(this.fileSize - file.size);
    await this.downloadRemaining(signal);
    // Whether the MD5 matches md5sum is for verification to judge.
    return await this.complete(await this.finalDigest(file));
  }

  private resetRunState(): void {
    this.file = undefined;
    this.positionKnown = false;
    this.etag = undefined;
    this.bytesDownloaded = 0;
    this.resumedFromByte = 0;
    this.diskFull = false;
    this.checkpointing = undefined;
    this.checkpointFailure = undefined;
    this.lastCheckpointAt = Date.now();
    this.lastCheckpointPosition = 0;
    this.throttle = new ProgressThrottle({ intervalMs: this.progressIntervalMs });
    this.lastProgressAt = Date.now();
    this.lastProgressBytes = 0;
  }

  private get position(): number {
    return this.file?.size ?? 0;
  }

  private belongsToThisFirmware(checkpoint: DownloadCheckpoint): boolean {
    return checkpoint.version === this.version && md5Equals(checkpoint.md5sum, this.md5sum) && checkpoint.fileSize === this.fileSize;
  }

  /** Opens the file, keeping and re-hashing the bytes its checkpoint vouches for, or empty. */
  private async openPartialFile(signal: AbortSignal): Promise<void> {
    try {
      let checkpoint = await this.folder.checkpoints.load(this.version);
      if (checkpoint && !this.belongsToThisFirmware(checkpoint)) {
        await this.folder.remove(this.version);
        checkpoint = undefined;
      }
      if (checkpoint) {
        this.file = await PartialFirmwareFile.resume(this.filePath, checkpoint.bytesOnDisk, { ...this.fileOptions(), signal });
        if (this.file) {
          this.positionKnown = true;
          this.etag = checkpoint.etag;
          this.resumedFromByte = this.file.size;
          if (this.file.size > 0) this.emit('resumed', { fromByte: this.file.size });
          return;
        }
        if (checkpoint.bytesOnDisk > 0) this.emit('restart-from-zero', { reason: 'the partial file is shorter than its checkpoint' });
      }
      // The checkpoint comes first, so that no firmware file is ever on disk without one.
      this.positionKnown = true;
      await this.saveCheckpoint();
      this.file = await PartialFirmwareFile.create(this.filePath, this.fileOptions());
    } catch (error) {
      if (signal.aborted) throw error;
      throw this.diskFailure(error, 'cannot open the firmware file');
    }
  }

  private async downloadRemaining(signal: AbortSignal): Promise<void> {
    let failures = 0;
    let restarts = 0;
    while (this.position < this.fileSize) {
      // An abort may come before the first request or between two of them.
      signal.throwIfAborted();
      const before = this.position;
      try {
        await this.fetchRemaining(signal);
      } catch (error) {
        if (signal.aborted) throw error;
        if (error instanceof RestartNeeded) {
          restarts += 1;
          if (restarts > MAX_RESTARTS_FROM_ZERO) {
            throw new UpdateFailure(OtaResultCode.downloadTimeout, `${error.message}; gave up after ${MAX_RESTARTS_FROM_ZERO} restarts`);
          }
          continue;
        }
        if (!(error instanceof RetryableFailure)) throw error;
        await this.saveDurableCheckpoint();
        if (this.position > before) failures = 0;
        failures += 1;
        if (failures > this.maxRetries) {
          const reason = this.maxRetries === 0 ? error.message : `${error.message} (gave up after ${this.maxRetries} retries)`;
          throw new UpdateFailure(OtaResultCode.downloadTimeout, reason);
        }
        const delayMs = this.retryDelay(failures);
        this.emit('retry', { attempt: failures, fromByte: this.position, reason: error.message, delayMs });
        await sleep(delayMs, undefined, { signal });
      }
    }
  }

  /** One request (following its redirects) for the bytes after `position`, written to disk as they arrive. */
  private async fetchRemaining(signal: AbortSignal): Promise<void> {
    const attempt = new AbortController();
    const stopAttempt = () => attempt.abort();
    signal.addEventListener('abort', stopAttempt, { once: true });
    if (signal.aborted) attempt.abort();
    let timeoutReason: string | undefined;
    let tooSlowReason: string | undefined;
    let timer: NodeJS.Timeout | undefined;
    let speedCheck: NodeJS.Timeout | undefined;
    const failureOf = (error: unknown) => this.networkFailure(error, tooSlowReason, timeoutReason, signal);
    let response: FirmwareResponse | undefined;
    try {
      let url = this.url;
      for (let redirects = 0; ; redirects++) {
        timer = setTimeout(() => {
          timeoutReason = `connect timeout: no response within ${this.connectTimeoutMs} ms`;
          attempt.abort();
        }, this.connectTimeoutMs);
        try {
          response = await requestFirmware(url, {
            headers: rangeRequestHeaders({ position: this.position, fileSize: this.fileSize, etag: this.etag }),
            secureContext: this.secureContext,
            signal: attempt.signal,
          });
        } catch (error) {
          throw failureOf(error);
        }
        clearTimeout(timer);
        const judgement = judgeRangeResponse(response.status, response.headers, { position: this.position, fileSize: this.fileSize, etag: this.etag });
        if (judgement.kind === 'redirect') {
          url = redirectTarget(url, judgement.location, redirects, this.maxRedirects);
          response.close();
          continue;
        }
        if (judgement.kind === 'retry') throw new RetryableFailure(judgement.reason);
        if (judgement.kind === 'restart') {
          await this.restartFromZero(judgement.reason);
          throw new RestartNeeded(judgement.reason);
        }
        if (judgement.restartReason) await this.restartFromZero(judgement.restartReason);
        this.etag = judgement.etag;
        break;
      }
      if (this.minBytesPerSecond > 0) {
        let bytesAtWindowStart = this.bytesDownloaded;
        speedCheck = setInterval(() => {
          const received = this.bytesDownloaded - bytesAtWindowStart;
          bytesAtWindowStart = this.bytesDownloaded;
          if (received >= (this.minBytesPerSecond * this.minSpeedWindowMs) / 1000) return;
          tooSlowReason =
            `download too slow: ${received} bytes in ${Math.round(this.minSpeedWindowMs / 1000)} s ` +
            `at byte ${this.position} of ${this.fileSize}, the minimum is ${this.minBytesPerSecond} bytes/s`;
          attempt.abort();
        }, this.minSpeedWindowMs);
      }
      // One timer for the whole body, not one per read: it looks at when data last came.
      let lastDataAt = Date.now();
      const watchSilence = (delayMs: number) => {
        timer = setTimeout(() => {
          const silentMs = Date.now() - lastDataAt;
          if (silentMs < this.readTimeoutMs) return watchSilence(this.readTimeoutMs - silentMs);
          timeoutReason = `read timeout: no data for ${this.readTimeoutMs} ms at byte ${this.position} of ${this.fileSize}`;
          attempt.abort();
        }, delayMs);
      };
      watchSilence(this.readTimeoutMs);
      try {
        await response.readBody(this.sink, () => (lastDataAt = Date.now()));
      } catch (error) {
        throw failureOf(error);
      }
      if (tooSlowReason) throw new UpdateFailure(OtaResultCode.downloadTimeout, tooSlowReason);
      if (this.position < this.fileSize) {
        throw new RetryableFailure(`connection closed at byte ${this.position} of ${this.fileSize}`);
      }
    } finally {
      clearTimeout(timer);
      clearInterval(speedCheck);
      signal.removeEventListener('abort', stopAttempt);
      response?.close();
    }
  }

  /** Takes what the file has room for of a body's bytes now; returns how many. */
  private takeBody(bytes: Buffer): number {
    const file = this.openFile();
    if (bytes.length > this.fileSize - file.size) {
      throw new UpdateFailure(OtaResultCode.md5Mismatch, `size mismatch: the server sent more than file_size (${this.fileSize}) bytes`);
    }
    let taken: number;
    try {
      taken = file.takeAvailable(bytes);
    } catch (error) {
      throw this.diskFailure(error, 'cannot write the firmware file');
    }
    if (taken === 0) return 0;
    this.bytesDownloaded += taken;
    this.reportProgress();
    if (this.checkpointFailure !== undefined) throw this.diskFailure(this.checkpointFailure, 'cannot save the download checkpoint');
    const due = Date.now() - this.lastCheckpointAt >= this.checkpointIntervalMs || file.size - this.lastCheckpointPosition >= this.checkpointBytes;
    if (due && !this.checkpointing) this.startBackgroundCheckpoint(file);
    return taken;
  }

  /**
   * Saves a checkpoint while the body keeps coming: the bytes received so far are written and made
   * durable (fsync), and only they are claimed. A failure is thrown by the next chunk.
   */
  private startBackgroundCheckpoint(file: PartialFirmwareFile): void {
    this.lastCheckpointAt = Date.now();
    this.lastCheckpointPosition = file.size;
    const saving = (async () => {
      const durable = await file.syncAppended();
      if (this.file !== file || !file.isOpen) return;
      await this.saveCheckpoint(false, durable);
    })().catch((error: unknown) => {
      this.checkpointFailure ??= error;
    });
    this.checkpointing = saving.finally(() => {
      if (this.checkpointing === tracked) this.checkpointing = undefined;
    });
    const tracked = this.checkpointing;
  }

  /** Waits for a checkpoint being saved in the background, so that no older one lands after a newer one. */
  private async settleCheckpoint(): Promise<void> {
    while (this.checkpointing) await this.checkpointing;
  }

  private fileOptions(): { sha256: boolean; hashing?: HashingMode } {
    return this.hashing === undefined ? { sha256: this.sha256 } : { sha256: this.sha256, hashing: this.hashing };
  }

  /**
   * The delay before retry `failures`: exponential backoff with "equal jitter" (a random point in
   * the upper half), so that many devices cut off by the same outage do not return in lockstep, yet
   * none retries much sooner than the backoff says.
   */
  private retryDelay(failures: number): number {
    const backoff = Math.min(this.maxRetryBackoffMs, this.retryBackoffMs * 2 ** (failures - 1));
    return Math.round(backoff / 2 + (backoff / 2) * this.random());
  }

  private async finalDigest(file: PartialFirmwareFile): Promise<FirmwareDigest> {
    try {
      return await file.digest();
    } catch (error) {
      throw this.diskFailure(error, 'cannot write the firmware file');
    }
  }

  private openFile(): PartialFirmwareFile {
    if (!this.file) throw new Error('the firmware file is not open');
    return this.file;
  }

  private async restartFromZero(reason: string): Promise<void> {
    await this.settleCheckpoint();
    this.checkpointFailure = undefined;
    await this.openFile().empty();
    this.etag = undefined;
    this.resumedFromByte = 0;
    await this.saveCheckpoint();
    this.emit('restart-from-zero', { reason });
    this.reportProgress();
  }

  private async saveCheckpoint(complete = false, bytesOnDisk = this.position): Promise<void> {
    const checkpoint: DownloadCheckpoint = {
      version: this.version,
      md5sum: this.md5sum,
      fileSize: this.fileSize,
      bytesOnDisk,
      url: this.url.href,
      updatedAt: new Date().toISOString(),
    };
    if (this.etag !== undefined) checkpoint.etag = this.etag;
    if (complete) checkpoint.complete = true;
    await this.folder.checkpoints.save(checkpoint);
    this.lastCheckpointAt = Date.now();
    this.lastCheckpointPosition = bytesOnDisk;
  }

  /** Flushes the data file first, so that the checkpoint never claims bytes a crash could lose. */
  private async saveDurableCheckpoint(): Promise<void> {
    await this.settleCheckpoint();
    if (!this.file?.isOpen || !this.positionKnown) return;
    await this.file.sync();
    await this.saveCheckpoint();
  }

  private async closeFile(saveCheckpoint: boolean): Promise<void> {
    // A checkpoint saved in the background lands before the file closes (or is removed), never after.
    await this.settleCheckpoint();
    if (!this.file?.isOpen) return;
    if (saveCheckpoint) {
      // Best effort: when this fails the previous checkpoint still describes durable bytes.
      await this.saveDurableCheckpoint().catch(() => undefined);
    }
    await this.file.close();
  }

  private async complete(digest: FirmwareDigest): Promise<DownloadResult> {
    const file = this.openFile();
    await this.settleCheckpoint();
    let identity: FileIdentity;
    try {
      // No fsync: a complete checkpoint is taken on trust only after the file's MD5 matched again
      // (a crash that lost bytes means a new download, not a bad firmware).
      await file.flush();
      identity = await file.identity();
    } catch (error) {
      throw this.diskFailure(error, 'cannot flush the firmware file');
    }
    await file.close();
    if (file.size !== this.fileSize) {
      throw new UpdateFailure(OtaResultCode.md5Mismatch, `size mismatch: the file has ${file.size} bytes, file_size is ${this.fileSize}`);
    }
    // A restart between here and the burn finds the file complete and does not download it again.
    await this.saveCheckpoint(true).catch((error: unknown) => {
      throw this.diskFailure(error, 'cannot save the download checkpoint');
    });
    const percent = this.throttle.finish();
    if (percent !== undefined) this.emitProgress(percent);
    return {
      path: this.filePath,
      version: this.version,
      size: file.size,
      md5: digest.md5,
      ...(digest.sha256 === undefined ? {} : { sha256: digest.sha256 }),
      identity,
      bytesDownloaded: this.bytesDownloaded,
      resumedFromByte: this.resumedFromByte,
    };
  }

  private reportProgress(): void {
    const percent = this.throttle.next(this.position, this.fileSize);
    if (percent !== undefined) this.emitProgress(percent);
  }

  private emitProgress(percent: number): void {
    const now = Date.now();
    const seconds = (now - this.lastProgressAt) / 1000;
    const bytesPerSecond = seconds > 0 ? Math.round((this.bytesDownloaded - this.lastProgressBytes) / seconds) : 0;
    this.lastProgressAt = now;
    this.lastProgressBytes = this.bytesDownloaded;
    this.emit('progress', { percent, bytes: this.position, total: this.fileSize, bytesPerSecond });
  }

  private networkFailure(error: unknown, tooSlowReason: string | undefined, timeoutReason: string | undefined, signal: AbortSignal): unknown {
    if (error instanceof UpdateFailure || error instanceof RetryableFailure || error instanceof RestartNeeded) return error;
    if (signal.aborted) return error;
    const shortage = descriptorShortageCode(error);
    if (shortage) return new DescriptorShortageError(shortage, `at byte ${this.position} of the download`, { cause: error });
    if (tooSlowReason !== undefined) return new UpdateFailure(OtaResultCode.downloadTimeout, tooSlowReason);
    if (timeoutReason !== undefined) return new RetryableFailure(timeoutReason);
    const code = errorCode(error);
    if (code !== undefined && UNTRUSTED_CERTIFICATE_CODES.has(code)) {
      return new UpdateFailure(OtaResultCode.downloadTimeout, `the download server's TLS certificate is not trusted (${code})`, { cause: error });
    }
    return new RetryableFailure(`network error at byte ${this.position}: ${shortMessage(error)}`);
  }

  /** A local storage failure: -5, with the file system's reason and no local path. */
  private diskFailure(error: unknown, what: string): UpdateFailure {
    if (error instanceof UpdateFailure) return error;
    const code = errorCode(error);
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      this.diskFull = true;
      const written = this.file?.writtenBytes ?? this.position;
      return new UpdateFailure(OtaResultCode.upgradeFailed, `disk full: no space for the firmware after ${written} of ${this.fileSize} bytes`, {
        cause: error,
      });
    }
    return new UpdateFailure(OtaResultCode.upgradeFailed, `${what}: ${describeStorageError(error)}`, { cause: error });
  }

  private toFailure(error: unknown, signal: AbortSignal): Error {
    if (signal.aborted) return new DownloadAbortedError(this.abortReason);
    if (error instanceof UpdateFailure) return error;
    if (error instanceof DescriptorShortageError) return new UpdateFailure(OtaResultCode.upgradeFailed, error.message, { cause: error });
    if (error instanceof RetryableFailure || error instanceof RestartNeeded) {
      return new UpdateFailure(OtaResultCode.downloadTimeout, error.message, { cause: error });
    }
    if (typeof (error as { syscall?: unknown } | null)?.syscall === 'string') return this.diskFailure(error, 'cannot write the firmware file');
    return new UpdateFailure(OtaResultCode.downloadTimeout, shortMessage(error), { cause: error });
  }
}
