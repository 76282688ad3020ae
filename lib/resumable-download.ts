/**
 * Downloads one firmware over HTTP(S) to `<directory>/FW_<version>.bin` and resumes from the bytes
 * on disk after a dropped connection or a restart of the program (PROTOCOL.md §4 step 3), without
 * the SDK defects of §5: a server that ignores Range, a changed file or an early end of the body is
 * detected, the body is never decoded nor buffered whole, and the checkpoint never claims bytes that
 * are not durable on disk.
 */
import { EventEmitter } from 'events';
import { promises as fs } from 'fs';
import * as http from 'http';
import * as https from 'https';
import * as path from 'path';
import { Readable, type Duplex } from 'stream';
import { setTimeout as sleep } from 'timers/promises';
import * as tls from 'tls';
import nodeFetch, { type RequestInit, type Response } from 'node-fetch';
import type { CheckpointStore, DownloadCheckpoint } from './checkpoint-store';
import { createFirmwareHashes, md5Equals, updateHashesFromFile, type FirmwareDigest, type FirmwareHashes } from './firmware-digest';
import { describeInvalidFirmwareVersion } from './firmware-version';
import { OtaResultCode } from './ota-messages';
import { DEFAULT_PROGRESS_INTERVAL_MS, ProgressThrottle } from './progress-throttle';

export type FetchImplementation = (url: string, init: RequestInit) => Promise<Response>;

export interface ResumableDownloadOptions {
  url: string;
  version: string;
  md5sum: string;
  fileSize: number;
  /** Where the partial and finished file is kept: the device's downloads folder. */
  directory: string;
  checkpointStore: CheckpointStore;
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
  /** Least time between two progress events (default 1000 ms). */
  progressIntervalMs?: number;
  /**
   * A checkpoint is saved once this much time has passed since the last one (default 1000 ms) or
   * checkpointBytes have arrived (default 1 MiB), whichever comes first: a crash loses at most
   * about a second or a MiB of download, and saves stay far apart from the chunks.
   */
  checkpointIntervalMs?: number;
  checkpointBytes?: number;
  fetchImplementation?: FetchImplementation;
}

export interface DownloadResult {
  path: string;
  version: string;
  size: number;
  md5: string;
  sha256: string;
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
}

export interface ResumableDownloadEvents {
  progress: [DownloadProgress];
  retry: [DownloadRetry];
  'restart-from-zero': [{ reason: string }];
  resumed: [{ fromByte: number }];
}

/** A download that failed; resultCode is the report_progress result_code and reason a short result_msg. */
export class DownloadError extends Error {
  constructor(
    readonly resultCode: number,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(reason, options);
    this.name = 'DownloadError';
  }
}

/** start() was stopped by abort() or discard(); the partial file and its checkpoint stay unless discarded. */
export class DownloadAbortedError extends Error {
  constructor(readonly reason: string) {
    super(`download aborted: ${reason}`);
    this.name = 'DownloadAbortedError';
  }
}

/** A failure worth another request from the bytes on disk. */
class RetryableFailure extends Error {}

/** The bytes on disk were dropped and the next request must start from byte 0. */
class RestartNeeded extends Error {}

export const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;
export const DEFAULT_READ_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_RETRIES = 5;
export const DEFAULT_RETRY_BACKOFF_MS = 1000;
export const DEFAULT_MAX_RETRY_BACKOFF_MS = 30_000;
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 1000;
export const DEFAULT_CHECKPOINT_BYTES = 1024 * 1024;

/** Restarts from zero that each need a new request, before a server is judged inconsistent. */
const MAX_RESTARTS_FROM_ZERO = 3;
/** Once the socket is closed, the data still buffered arrives at once; a longer silence means it ended early. */
const CLOSED_CONNECTION_GRACE_MS = 200;

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

/** Where the download of `version` is kept in `directory`. */
export function firmwareDownloadPath(directory: string, version: string): string {
  const problem = describeInvalidFirmwareVersion(version);
  if (problem) throw new Error(problem);
  return path.join(directory, `FW_${version}.bin`);
}

/** `bytes <start>-<end>/<total or *>` of a 206 answer. */
export function parseContentRange(header: string | null | undefined): { start: number; end: number; total?: number } | undefined {
  const match = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(header ?? '');
  if (!match) return undefined;
  const range: { start: number; end: number; total?: number } = { start: Number(match[1]), end: Number(match[2]) };
  if (match[3] !== '*') range.total = Number(match[3]);
  return range;
}

/** Node's default CA store plus the extra certificates, for an https.Agent. */
function trustedCertificates(extra: string | string[]): string[] {
  const extraList = Array.isArray(extra) ? extra : [extra];
  // Newer Node versions also count NODE_EXTRA_CA_CERTS in the default store.
  const getCACertificates = (tls as unknown as { getCACertificates?: (type: string) => string[] }).getCACertificates;
  const defaults = getCACertificates ? getCACertificates('default') : [...tls.rootCertificates];
  return [...defaults, ...extraList];
}

/** Calls onSocket for every connection the agent opens. */
function watchSockets(agent: http.Agent, onSocket: (socket: Duplex) => void): void {
  const createConnection = agent.createConnection.bind(agent);
  agent.createConnection = (options, callback) => {
    const socket = createConnection(options, callback);
    if (socket) onSocket(socket);
    return socket;
  };
}

/** A message fit for result_msg: no URL (it holds the signature), one line, short. */
function shortMessage(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  const text = message.replace(/\b[a-z][a-z0-9+.-]*:\/\/\S+/gi, '<url>').replace(/\s+/g, ' ').trim();
  if (typeof code === 'string' && !text.includes(code)) return `${code}: ${text}`.slice(0, 200);
  return text.slice(0, 200);
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export class ResumableDownload extends EventEmitter<ResumableDownloadEvents> {
  readonly url: string;
  readonly version: string;
  readonly md5sum: string;
  readonly fileSize: number;
  readonly directory: string;
  /** `<directory>/FW_<version>.bin` */
  readonly filePath: string;
  private readonly checkpointStore: CheckpointStore;
  private readonly connectTimeoutMs: number;
  private readonly readTimeoutMs: number;
  private readonly maxRetries: number;
  private readonly retryBackoffMs: number;
  private readonly maxRetryBackoffMs: number;
  private readonly progressIntervalMs: number;
  private readonly checkpointIntervalMs: number;
  private readonly checkpointBytes: number;
  private readonly fetchImplementation: FetchImplementation;
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;

  private running: Promise<DownloadResult> | undefined;
  private controller: AbortController | undefined;
  private abortReason = 'aborted';

  // The state of one run of start().
  private handle: fs.FileHandle | undefined;
  private hashes: FirmwareHashes = createFirmwareHashes();
  /** Bytes of this firmware in the file, hashed; the checkpoint may only be saved once it is known. */
  private position = 0;
  private positionKnown = false;
  private etag: string | undefined;
  private bytesDownloaded = 0;
  private resumedFromByte = 0;
  private lastCheckpointAt = 0;
  private lastCheckpointPosition = 0;
  private throttle = new ProgressThrottle();
  private lastProgressAt = 0;
  private lastProgressBytes = 0;
  /** Called when the connection of the current request closes. */
  private onConnectionClosed: (() => void) | undefined;
  private currentSocket: Duplex | undefined;
  private currentSocketClosed = false;

  constructor(options: ResumableDownloadOptions) {
    super();
    const versionProblem = describeInvalidFirmwareVersion(options.version);
    if (versionProblem) throw new Error(versionProblem);
    if (!/^[0-9a-fA-F]{32}$/.test(options.md5sum)) throw new Error('md5sum must be 32 hexadecimal digits');
    if (!Number.isSafeInteger(options.fileSize) || options.fileSize < 0) throw new Error('fileSize must be a whole number of bytes');
    const protocol = new URL(options.url).protocol;
    if (protocol !== 'http:' && protocol !== 'https:') throw new Error(`cannot download over ${protocol.replace(':', '')}`);
    this.url = options.url;
    this.version = options.version;
    this.md5sum = options.md5sum.toLowerCase();
    this.fileSize = options.fileSize;
    this.directory = options.directory;
    this.filePath = firmwareDownloadPath(options.directory, options.version);
    this.checkpointStore = options.checkpointStore;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.readTimeoutMs = options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.retryBackoffMs = options.retryBackoffMs ?? DEFAULT_RETRY_BACKOFF_MS;
    this.maxRetryBackoffMs = options.maxRetryBackoffMs ?? DEFAULT_MAX_RETRY_BACKOFF_MS;
    this.progressIntervalMs = options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
    this.checkpointIntervalMs = options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    this.checkpointBytes = options.checkpointBytes ?? DEFAULT_CHECKPOINT_BYTES;
    this.fetchImplementation = options.fetchImplementation ?? nodeFetch;
    this.httpAgent = new http.Agent({ keepAlive: false });
    this.httpsAgent = new https.Agent(options.ca === undefined ? { keepAlive: false } : { keepAlive: false, ca: trustedCertificates(options.ca) });
    for (const agent of [this.httpAgent, this.httpsAgent]) {
      watchSockets(agent, (socket) => {
        this.currentSocket = socket;
        this.currentSocketClosed = false;
        socket.once('close', () => {
          if (this.currentSocket !== socket) return;
          this.currentSocketClosed = true;
          this.onConnectionClosed?.();
        });
      });
    }
  }

  /** Whether start() is under way. */
  get isRunning(): boolean {
    return this.running !== undefined;
  }

  /**
   * Downloads the rest of the firmware (or all of it) and checks its size and MD5. Rejects with a
   * DownloadError (whose resultCode goes to the cloud) or a DownloadAbortedError.
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
  async discard(): Promise<void> {
    await this.abort('discarded');
    await this.removeDownload(this.version);
  }

  private async run(signal: AbortSignal): Promise<DownloadResult> {
    this.resetRunState();
    try {
      await fs.mkdir(this.directory, { recursive: true });
      // After the first await, so that listeners attached right after start() hear the first 0.
      this.reportProgress();
      await this.removeOtherDownloads();
      await this.openPartialFile(signal);
      if (this.position === this.fileSize) {
        const digest = this.hashes.digest();
        if (md5Equals(digest.md5, this.md5sum)) return await this.complete(digest);
        await this.restartFromZero(`the ${this.fileSize} bytes on disk do not match md5sum`);
      }
      await this.downloadRemaining(signal);
      // Whether the MD5 matches md5sum is for verification to judge, from the file on disk.
      return await this.complete(this.hashes.digest());
    } catch (error) {
      const failure = this.toFailure(error, signal);
      // Bytes that do not belong to this firmware are no use for a resume.
      const wrongContent = failure instanceof DownloadError && failure.resultCode === OtaResultCode.md5Mismatch;
      await this.closeFile(!wrongContent);
      if (wrongContent) await this.removeDownload(this.version).catch(() => undefined);
      throw failure;
    } finally {
      await this.closeFile(false);
      this.onConnectionClosed = undefined;
    }
  }

  private resetRunState(): void {
    this.handle = undefined;
    this.hashes = createFirmwareHashes();
    this.position = 0;
    this.positionKnown = false;
    this.etag = undefined;
    this.bytesDownloaded = 0;
    this.resumedFromByte = 0;
    this.lastCheckpointAt = Date.now();
    this.lastCheckpointPosition = 0;
    this.throttle = new ProgressThrottle({ intervalMs: this.progressIntervalMs });
    this.lastProgressAt = Date.now();
    this.lastProgressBytes = 0;
  }

  private belongsToThisFirmware(checkpoint: DownloadCheckpoint): boolean {
    return checkpoint.version === this.version && md5Equals(checkpoint.md5sum, this.md5sum) && checkpoint.fileSize === this.fileSize;
  }

  private async removeDownload(version: string): Promise<void> {
    await fs.rm(firmwareDownloadPath(this.directory, version), { force: true });
    await this.checkpointStore.remove(version);
  }

  /** Only one firmware download is worth its disk space: the one the cloud asks for now. */
  private async removeOtherDownloads(): Promise<void> {
    for (const checkpoint of await this.checkpointStore.list()) {
      if (checkpoint.version !== this.version) await this.removeDownload(checkpoint.version);
    }
  }

  /** Opens the file, keeping and re-hashing the bytes its checkpoint vouches for, or empty. */
  private async openPartialFile(signal: AbortSignal): Promise<void> {
    let checkpoint = await this.checkpointStore.load(this.version);
    if (checkpoint && !this.belongsToThisFirmware(checkpoint)) {
      await this.removeDownload(this.version);
      checkpoint = undefined;
    }
    const sizeOnDisk = await fs.stat(this.filePath).then(
      (stat) => stat.size,
      () => undefined,
    );
    if (checkpoint && sizeOnDisk !== undefined && sizeOnDisk >= checkpoint.bytesOnDisk) {
      this.handle = await fs.open(this.filePath, 'r+');
      // Bytes written after the last checkpoint may not have reached the disk: they are not trusted.
      await this.handle.truncate(checkpoint.bytesOnDisk);
      await updateHashesFromFile(this.hashes, this.filePath, { upToBytes: checkpoint.bytesOnDisk, signal });
      this.position = checkpoint.bytesOnDisk;
      this.positionKnown = true;
      this.etag = checkpoint.etag;
      this.resumedFromByte = this.position;
      if (this.position > 0) this.emit('resumed', { fromByte: this.position });
      return;
    }
    if (checkpoint && checkpoint.bytesOnDisk > 0) {
      this.emit('restart-from-zero', { reason: 'the partial file is shorter than its checkpoint' });
    }
    // The checkpoint comes first, so that no firmware file is ever on disk without one.
    this.positionKnown = true;
    await this.saveCheckpoint();
    this.handle = await fs.open(this.filePath, 'w');
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
            throw new DownloadError(OtaResultCode.downloadTimeout, `${error.message}; gave up after ${MAX_RESTARTS_FROM_ZERO} restarts`);
          }
          continue;
        }
        if (!(error instanceof RetryableFailure)) throw error;
        await this.saveDurableCheckpoint();
        if (this.position > before) failures = 0;
        failures += 1;
        if (failures > this.maxRetries) {
          const reason = this.maxRetries === 0 ? error.message : `${error.message} (gave up after ${this.maxRetries} retries)`;
          throw new DownloadError(OtaResultCode.downloadTimeout, reason);
        }
        const delayMs = Math.min(this.maxRetryBackoffMs, this.retryBackoffMs * 2 ** (failures - 1));
        this.emit('retry', { attempt: failures, fromByte: this.position, reason: error.message, delayMs });
        await sleep(delayMs, undefined, { signal });
      }
    }
  }

  /** One request for the bytes after `position`, written to disk as they arrive. */
  private async fetchRemaining(signal: AbortSignal): Promise<void> {
    const attempt = new AbortController();
    const stopAttempt = () => attempt.abort();
    signal.addEventListener('abort', stopAttempt, { once: true });
    if (signal.aborted) attempt.abort();
    let timeoutReason: string | undefined;
    let timer: NodeJS.Timeout | undefined;
    const arm = (delayMs: number, reason: string) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timeoutReason = reason;
        attempt.abort();
      }, delayMs);
    };
    let waitingForData = false;
    const armReadTimeout = () => {
      if (this.currentSocketClosed) arm(CLOSED_CONNECTION_GRACE_MS, `connection closed at byte ${this.position} of ${this.fileSize}`);
      else arm(this.readTimeoutMs, `read timeout: no data for ${this.readTimeoutMs} ms at byte ${this.position} of ${this.fileSize}`);
    };
    let response: Response | undefined;
    this.currentSocket = undefined;
    this.currentSocketClosed = false;
    try {
      arm(this.connectTimeoutMs, `connect timeout: no response within ${this.connectTimeoutMs} ms`);
      try {
        response = await this.fetchImplementation(this.url, {
          headers: this.requestHeaders(),
          agent: (url: URL) => (url.protocol === 'http:' ? this.httpAgent : this.httpsAgent),
          compress: false,
          redirect: 'follow',
          signal: attempt.signal,
        });
      } catch (error) {
        throw this.networkFailure(error, timeoutReason, signal);
      }
      clearTimeout(timer);
      await this.acceptResponse(response);
      // node-fetch never ends the body when the connection drops early: the socket says so instead.
      this.onConnectionClosed = () => {
        if (waitingForData) armReadTimeout();
      };
      waitingForData = true;
      armReadTimeout();
      try {
        for await (const chunk of response.body) {
          waitingForData = false;
          clearTimeout(timer);
          await this.writeChunk(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
          waitingForData = true;
          armReadTimeout();
        }
      } catch (error) {
        throw this.networkFailure(error, timeoutReason, signal);
      }
      if (this.position < this.fileSize) {
        throw new RetryableFailure(`connection closed at byte ${this.position} of ${this.fileSize}`);
      }
    } finally {
      clearTimeout(timer);
      this.onConnectionClosed = undefined;
      signal.removeEventListener('abort', stopAttempt);
      const body: unknown = response?.body;
      if (body instanceof Readable && !body.readableEnded) body.destroy();
    }
  }

  private requestHeaders(): Record<string, string> {
    const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
    if (this.position > 0) {
      headers.Range = `bytes=${this.position}-`;
      // If-Range takes only a strong validator.
      if (this.etag !== undefined && !this.etag.startsWith('W/')) headers['If-Range'] = this.etag;
    }
    return headers;
  }

  /** Checks status and headers; throws what the answer means, or restarts from zero for a whole-file 200. */
  private async acceptResponse(response: Response): Promise<void> {
    const status = response.status;
    if (status === 404 || status === 410) {
      throw new DownloadError(OtaResultCode.fileNotFound, `firmware file not found (HTTP ${status})`);
    }
    if (status === 401 || status === 403) {
      throw new DownloadError(OtaResultCode.signatureExpired, `download URL refused: signature expired or invalid (HTTP ${status})`);
    }
    if (status === 416) {
      await this.restartFromZero(`the server has no bytes from ${this.position} on (HTTP 416)`);
      throw new RestartNeeded('the server refused the range of the bytes on disk');
    }
    if (status === 408 || status === 429 || status >= 500) throw new RetryableFailure(`HTTP ${status} from the download server`);
    if (status !== 200 && status !== 206) {
      throw new DownloadError(OtaResultCode.downloadTimeout, `unexpected HTTP ${status} from the download server`);
    }
    const encoding = response.headers.get('content-encoding');
    if (encoding !== null && encoding.trim().toLowerCase() !== 'identity') {
      throw new DownloadError(OtaResultCode.downloadTimeout, `the server sent ${encoding}-encoded content, identity was asked`);
    }
    const etag = response.headers.get('etag') ?? undefined;
    const etagChanged = this.etag !== undefined && etag !== undefined && etag !== this.etag;
    if (status === 206) {
      const range = parseContentRange(response.headers.get('content-range'));
      if (range?.total !== undefined && range.total !== this.fileSize) throw this.sizeMismatch(range.total);
      if (range && range.end >= this.fileSize) throw this.sizeMismatch(range.end + 1);
      if (etagChanged) {
        await this.restartFromZero(`the firmware changed on the server (ETag ${this.etag} became ${etag})`);
        throw new RestartNeeded('the firmware changed on the server');
      }
      const start = range ? range.start : this.position === 0 ? 0 : undefined;
      if (start !== this.position) {
        await this.restartFromZero(
          start === undefined ? 'HTTP 206 without Content-Range' : `the server answered from byte ${start} instead of ${this.position}`,
        );
        throw new RestartNeeded('the server answered another range');
      }
    } else {
      const length = response.headers.get('content-length');
      if (length !== null && /^\d+$/.test(length.trim()) && Number(length) !== this.fileSize) throw this.sizeMismatch(Number(length));
      if (this.position > 0) {
        await this.restartFromZero(
          etagChanged
            ? `the firmware changed on the server (ETag ${this.etag} became ${etag})`
            : `the server ignored Range and sent the whole file (HTTP 200)`,
        );
      }
    }
    this.etag = etag;
  }

  private sizeMismatch(serverSize: number): DownloadError {
    return new DownloadError(OtaResultCode.md5Mismatch, `size mismatch: the server's file has ${serverSize} bytes, file_size is ${this.fileSize}`);
  }

  private async writeChunk(chunk: Buffer): Promise<void> {
    if (chunk.length === 0) return;
    const handle = this.openHandle();
    if (chunk.length > this.fileSize - this.position) {
      throw new DownloadError(OtaResultCode.md5Mismatch, `size mismatch: the server sent more than file_size (${this.fileSize}) bytes`);
    }
    try {
      let written = 0;
      while (written < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, written, chunk.length - written, this.position + written);
        written += bytesWritten;
      }
    } catch (error) {
      throw this.diskFailure(error);
    }
    this.hashes.update(chunk);
    this.position += chunk.length;
    this.bytesDownloaded += chunk.length;
    this.reportProgress();
    if (Date.now() - this.lastCheckpointAt >= this.checkpointIntervalMs || this.position - this.lastCheckpointPosition >= this.checkpointBytes) {
      try {
        await this.saveDurableCheckpoint();
      } catch (error) {
        throw this.diskFailure(error);
      }
    }
  }

  private openHandle(): fs.FileHandle {
    if (!this.handle) throw new Error('the firmware file is not open');
    return this.handle;
  }

  private async restartFromZero(reason: string): Promise<void> {
    await this.openHandle().truncate(0);
    this.hashes = createFirmwareHashes();
    this.position = 0;
    this.etag = undefined;
    this.resumedFromByte = 0;
    await this.saveCheckpoint();
    this.emit('restart-from-zero', { reason });
    this.reportProgress();
  }

  private async saveCheckpoint(complete = false): Promise<void> {
    const checkpoint: DownloadCheckpoint = {
      version: this.version,
      md5sum: this.md5sum,
      fileSize: this.fileSize,
      bytesOnDisk: this.position,
      url: this.url,
      updatedAt: new Date().toISOString(),
    };
    if (this.etag !== undefined) checkpoint.etag = this.etag;
    if (complete) checkpoint.complete = true;
    await this.checkpointStore.save(checkpoint);
    this.lastCheckpointAt = Date.now();
    this.lastCheckpointPosition = this.position;
  }

  /** Flushes the data file first, so that the checkpoint never claims bytes a crash could lose. */
  private async saveDurableCheckpoint(): Promise<void> {
    if (!this.handle || !this.positionKnown) return;
    await this.handle.sync();
    await this.saveCheckpoint();
  }

  private async closeFile(saveCheckpoint: boolean): Promise<void> {
    if (!this.handle) return;
    if (saveCheckpoint) {
      // Best effort: when this fails the previous checkpoint still describes durable bytes.
      await this.saveDurableCheckpoint().catch(() => undefined);
    }
    const handle = this.handle;
    this.handle = undefined;
    await handle.close().catch(() => undefined);
  }

  private async complete(digest: FirmwareDigest): Promise<DownloadResult> {
    const handle = this.openHandle();
    await handle.sync();
    this.handle = undefined;
    await handle.close();
    const size = (await fs.stat(this.filePath)).size;
    if (size !== this.fileSize) throw new DownloadError(OtaResultCode.md5Mismatch, `size mismatch: the file has ${size} bytes, file_size is ${this.fileSize}`);
    // A restart between here and the burn finds the file complete and does not download it again.
    await this.saveCheckpoint(true);
    const percent = this.throttle.finish();
    if (percent !== undefined) this.emitProgress(percent);
    return {
      path: this.filePath,
      version: this.version,
      size,
      md5: digest.md5,
      sha256: digest.sha256,
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

  private networkFailure(error: unknown, timeoutReason: string | undefined, signal: AbortSignal): unknown {
    if (error instanceof DownloadError || error instanceof RetryableFailure || error instanceof RestartNeeded) return error;
    if (signal.aborted) return error;
    if (timeoutReason !== undefined) return new RetryableFailure(timeoutReason);
    const code = errorCode(error);
    if (code !== undefined && UNTRUSTED_CERTIFICATE_CODES.has(code)) {
      return new DownloadError(OtaResultCode.downloadTimeout, `the download server's TLS certificate is not trusted (${code})`, { cause: error });
    }
    return new RetryableFailure(`network error at byte ${this.position}: ${shortMessage(error)}`);
  }

  private diskFailure(error: unknown): DownloadError {
    if (error instanceof DownloadError) return error;
    const code = errorCode(error);
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      return new DownloadError(
        OtaResultCode.downloadTimeout,
        `disk full: no space for the firmware after ${this.position} of ${this.fileSize} bytes`,
        { cause: error },
      );
    }
    return new DownloadError(OtaResultCode.downloadTimeout, `cannot write the firmware file: ${shortMessage(error)}`, { cause: error });
  }

  private toFailure(error: unknown, signal: AbortSignal): Error {
    if (signal.aborted) return new DownloadAbortedError(this.abortReason);
    if (error instanceof DownloadError) return error;
    if (error instanceof RetryableFailure || error instanceof RestartNeeded) {
      return new DownloadError(OtaResultCode.downloadTimeout, error.message, { cause: error });
    }
    if (typeof (error as { syscall?: unknown } | null)?.syscall === 'string') return this.diskFailure(error);
    return new DownloadError(OtaResultCode.downloadTimeout, shortMessage(error), { cause: error });
  }
}
