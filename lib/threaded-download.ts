/**
 * Firmware downloads off the main thread. Node-RED's main thread runs the editor, every flow and
 * every MQTT connection; a gateway downloading for a hundred devices at once would keep it busy
 * with sockets, TLS and files, and the editor would stall. A ThreadedDownload behaves as a
 * ResumableDownload (same events, same outcome, same errors) but runs on the process's one download
 * thread (download-worker.ts). createFirmwareDownload picks it whenever the options can cross to
 * the thread, else a ResumableDownload on the calling thread.
 */
import { EventEmitter } from 'events';
import * as path from 'path';
import { Worker } from 'worker_threads';
import type { DownloadsFolder } from './downloads-folder';
import type { DownloadThreadEvent, DownloadThreadRequest, SerializedDownloadError, ThreadedDownloadSettings } from './download-thread-protocol';
import { OtaResultCode } from './ota-messages';
import { DownloadAbortedError, ResumableDownload, type DownloadResult, type ResumableDownloadEvents, type ResumableDownloadOptions } from './resumable-download';
import { UpdateFailure } from './update-failure';

/** What the update session needs of a download, wherever it runs. */
export interface FirmwareDownload extends EventEmitter<ResumableDownloadEvents> {
  readonly version: string;
  readonly filePath: string;
  readonly isRunning: boolean;
  start(): Promise<DownloadResult>;
  abort(reason?: string): Promise<void>;
  discard(reason?: string): Promise<void>;
  updateUrl(url: string): void;
}

interface RunningDownload {
  onEvent(message: DownloadThreadEvent): void;
  onThreadStopped(reason: string): void;
}

class DownloadThread {
  private worker: Worker | undefined;
  private readonly running = new Map<number, RunningDownload>();
  private nextId = 1;

  /** Throws when the thread cannot be started. */
  start(): void {
    if (this.worker) return;
    // A small young generation: every socket read leaves a buffer behind, and frequent small
    // collections give their memory back sooner than a few large ones.
    const worker = new Worker(path.join(__dirname, 'download-worker.js'), { resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    worker.unref();
    worker.on('message', (message: DownloadThreadEvent) => this.running.get(message.id)?.onEvent(message));
    const stopped = (reason: string) => {
      if (this.worker !== worker) return;
      // The next download starts a new thread.
      this.worker = undefined;
      const running = [...this.running.values()];
      this.running.clear();
      for (const download of running) download.onThreadStopped(reason);
    };
    worker.on('error', (error) => stopped(error.message));
    worker.on('exit', (code) => stopped(`exit code ${code}`));
    this.worker = worker;
  }

  run(download: RunningDownload, request: (id: number) => DownloadThreadRequest): number {
    this.start();
    const id = this.nextId++;
    if (this.running.size === 0) this.worker?.ref();
    this.running.set(id, download);
    this.worker?.postMessage(request(id));
    return id;
  }

  finished(id: number): void {
    this.running.delete(id);
    if (this.running.size === 0) this.worker?.unref();
  }

  post(request: DownloadThreadRequest): void {
    if (this.running.has(request.id)) this.worker?.postMessage(request);
  }
}

let thread: DownloadThread | undefined;
let threadUnavailable = false;

function deserialize(error: SerializedDownloadError): Error {
  switch (error.kind) {
    case 'failure':
      return new UpdateFailure(error.resultCode, error.reason);
    case 'aborted':
      return new DownloadAbortedError(error.reason);
    default:
      return Object.assign(new Error(error.message), error.code ? { code: error.code } : {});
  }
}

class ThreadedDownload extends EventEmitter<ResumableDownloadEvents> implements FirmwareDownload {
  readonly version: string;
  readonly filePath: string;
  private readonly folder: DownloadsFolder;
  private readonly command: ResumableDownloadOptions['command'];
  private readonly settings: ThreadedDownloadSettings;
  private url: string;
  private running: Promise<DownloadResult> | undefined;
  private id: number | undefined;

  constructor(
    private readonly thread: DownloadThread,
    options: ResumableDownloadOptions,
  ) {
    super();
    const { command, folder, random: _random, ...settings } = options;
    this.command = command;
    this.folder = folder;
    this.settings = settings;
    this.version = command.version;
    this.url = command.url;
    this.filePath = folder.firmwarePath(command.version);
  }

  get isRunning(): boolean {
    return this.running !== undefined;
  }

  updateUrl(url: string): void {
    this.url = new URL(url).href;
    if (this.id !== undefined) this.thread.post({ op: 'update-url', id: this.id, url: this.url });
  }

  start(): Promise<DownloadResult> {
    if (this.running) return Promise.reject(new Error(`the download of ${this.version} is already running`));
    const running = new Promise<DownloadResult>((resolve, reject) => {
      const settle = (id: number) => {
        this.thread.finished(id);
        if (this.id === id) this.id = undefined;
      };
      const download: RunningDownload = {
        onEvent: (message) => {
          switch (message.event) {
            case 'finished':
              settle(message.id);
              resolve(message.payload);
              break;
            case 'failed':
              settle(message.id);
              reject(deserialize(message.payload));
              break;
            case 'progress':
              this.emit('progress', message.payload);
              break;
            case 'retry':
              this.emit('retry', message.payload);
              break;
            case 'resumed':
              this.emit('resumed', message.payload);
              break;
            case 'restart-from-zero':
              this.emit('restart-from-zero', message.payload);
              break;
          }
        },
        onThreadStopped: (reason) => {
          if (this.id !== undefined) settle(this.id);
          reject(new UpdateFailure(OtaResultCode.downloadTimeout, `the download thread stopped: ${reason}`));
        },
      };
      this.id = this.thread.run(download, (id) => ({
        op: 'start',
        id,
        command: { ...this.command, url: this.url },
        directory: this.folder.directory,
        settings: this.settings,
      }));
    }).finally(() => {
      if (this.running === running) this.running = undefined;
    });
    this.running = running;
    return running;
  }

  async abort(reason = 'aborted'): Promise<void> {
    const running = this.running;
    if (!running || this.id === undefined) return;
    this.thread.post({ op: 'abort', id: this.id, reason });
    await running.then(
      () => undefined,
      () => undefined,
    );
  }

  async discard(reason = 'discarded'): Promise<void> {
    await this.abort(reason);
    await this.folder.remove(this.version);
  }
}

/**
 * A download on the download thread when its options can cross there (a plain downloads folder, no
 * random of the caller's) and the thread can be started; else on the calling thread.
 * TENCENT_IOT_OTA_DOWNLOAD_THREAD=off keeps every download on the calling thread.
 */
export function createFirmwareDownload(options: ResumableDownloadOptions): FirmwareDownload {
  const crossable = options.folder.plain && options.random === undefined;
  if (crossable && !threadUnavailable && process.env.TENCENT_IOT_OTA_DOWNLOAD_THREAD !== 'off') {
    try {
      thread ??= new DownloadThread();
      thread.start();
      return new ThreadedDownload(thread, options);
    } catch {
      threadUnavailable = true;
    }
  }
  return new ResumableDownload(options);
}
