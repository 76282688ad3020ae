/**
 * The download thread (threaded-download.ts starts it): runs the firmware downloads of the process,
 * so that their sockets, TLS and files never take the main thread, which Node-RED's editor, flows
 * and MQTT connections need. Each download is a ResumableDownload here; its events and its outcome
 * go back as messages.
 */
import { parentPort } from 'worker_threads';
import { DownloadsFolder } from './downloads-folder';
import { DownloadAbortedError, ResumableDownload } from './resumable-download';
import type { DownloadThreadEvent, DownloadThreadRequest, SerializedDownloadError } from './download-thread-protocol';
import { UpdateFailure } from './update-failure';

const downloads = new Map<number, ResumableDownload>();

function post(message: DownloadThreadEvent): void {
  parentPort?.postMessage(message);
}

function serialize(error: unknown): SerializedDownloadError {
  if (error instanceof UpdateFailure) return { kind: 'failure', resultCode: error.resultCode, reason: error.reason };
  if (error instanceof DownloadAbortedError) return { kind: 'aborted', reason: error.reason };
  const code = (error as { code?: unknown } | null)?.code;
  return { kind: 'error', message: error instanceof Error ? error.message : String(error), code: typeof code === 'string' ? code : undefined };
}

function start(request: Extract<DownloadThreadRequest, { op: 'start' }>): void {
  const { id } = request;
  // Hashed here, inline: the download is already off the main thread, and a second hop to the
  // hashing thread costs more than it saves (npm run bench, 256 MiB over http: about 1.0-1.1× curl's
  // wall time against 1.1-1.25× with the hashing thread, and 1.0-1.37× its CPU against 1.3-1.8×).
  // Blocks in shared memory hashed there while they are written did no better: V8 copies into a
  // SharedArrayBuffer with a slow atomic-safe memmove (1.1-1.26× wall, 1.5-1.8× CPU).
  const settings = { ...request.settings, hashing: request.settings.hashing ?? 'inline' };
  const download = new ResumableDownload({ ...settings, command: request.command, folder: new DownloadsFolder(request.directory) });
  downloads.set(id, download);
  download.on('progress', (payload) => post({ id, event: 'progress', payload }));
  download.on('retry', (payload) => post({ id, event: 'retry', payload }));
  download.on('resumed', (payload) => post({ id, event: 'resumed', payload }));
  download.on('restart-from-zero', (payload) => post({ id, event: 'restart-from-zero', payload }));
  download
    .start()
    .then(
      (payload) => post({ id, event: 'finished', payload }),
      (error: unknown) => post({ id, event: 'failed', payload: serialize(error) }),
    )
    .finally(() => downloads.delete(id));
}

parentPort?.on('message', (request: DownloadThreadRequest) => {
  switch (request.op) {
    case 'start':
      start(request);
      break;
    case 'abort':
      // The start's own outcome (a DownloadAbortedError) tells the main thread when it has stopped.
      void downloads.get(request.id)?.abort(request.reason);
      break;
    case 'update-url':
      downloads.get(request.id)?.updateUrl(request.url);
      break;
  }
});
