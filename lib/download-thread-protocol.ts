/** The messages between threaded-download.ts and its download thread (download-worker.ts). */
import type { DownloadProgress, DownloadResult, DownloadRetry, ResumableDownloadOptions } from './resumable-download';
import type { UpdateCommand } from './ota-messages';

/** What of ResumableDownloadOptions crosses to the thread: plain values only. */
export type ThreadedDownloadSettings = Omit<ResumableDownloadOptions, 'command' | 'folder' | 'random'>;

export type DownloadThreadRequest =
  | { op: 'start'; id: number; command: Pick<UpdateCommand, 'version' | 'url' | 'md5sum' | 'file_size'>; directory: string; settings: ThreadedDownloadSettings }
  | { op: 'abort'; id: number; reason: string }
  | { op: 'update-url'; id: number; url: string };

/** How a failure crosses back: its kind and what the main thread rebuilds it from. */
export type SerializedDownloadError =
  { kind: 'failure'; resultCode: number; reason: string } | { kind: 'aborted'; reason: string } | { kind: 'error'; message: string; code?: string };

export type DownloadThreadEvent =
  | { id: number; event: 'progress'; payload: DownloadProgress }
  | { id: number; event: 'retry'; payload: DownloadRetry }
  | { id: number; event: 'resumed'; payload: { fromByte: number } }
  | { id: number; event: 'restart-from-zero'; payload: { reason: string } }
  | { id: number; event: 'finished'; payload: DownloadResult }
  | { id: number; event: 'failed'; payload: SerializedDownloadError };
