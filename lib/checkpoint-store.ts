/**
 * Where a resumable download keeps how far it got. The downloader sees only the CheckpointStore
 * interface; FileCheckpointStore keeps one `FW_<version>.json` per download, written atomically.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { readJsonFile, writeFileAtomic } from './atomic-file';
import { describeInvalidFirmwareVersion, isValidFirmwareVersion } from './firmware-version';

export interface DownloadCheckpoint {
  version: string;
  /** The md5sum of the update command, lowercase hex. */
  md5sum: string;
  fileSize: number;
  /** Bytes of the partial file known to be on disk (fsynced) and to belong to this firmware. */
  bytesOnDisk: number;
  /** ETag of the response the bytes came from, to ask for the rest of the same file. */
  etag?: string;
  url?: string;
  /** The whole file is on disk and its MD5 matched md5sum. */
  complete?: boolean;
  /** ISO 8601 time of the save. */
  updatedAt: string;
}

/** Checkpoints keyed by firmware version. */
export interface CheckpointStore {
  load(version: string): Promise<DownloadCheckpoint | undefined>;
  save(checkpoint: DownloadCheckpoint): Promise<void>;
  remove(version: string): Promise<void>;
  /** Every checkpoint held, so that a new download can clear those of other versions. */
  list(): Promise<DownloadCheckpoint[]>;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** The checkpoint in a parsed JSON value, or undefined when any field is missing or wrong. */
export function parseDownloadCheckpoint(value: unknown): DownloadCheckpoint | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const fields = value as Record<string, unknown>;
  if (!isValidFirmwareVersion(fields.version)) return undefined;
  if (typeof fields.md5sum !== 'string' || !/^[0-9a-fA-F]{32}$/.test(fields.md5sum)) return undefined;
  if (!isCount(fields.fileSize) || !isCount(fields.bytesOnDisk) || fields.bytesOnDisk > fields.fileSize) return undefined;
  if (fields.etag !== undefined && typeof fields.etag !== 'string') return undefined;
  if (fields.url !== undefined && typeof fields.url !== 'string') return undefined;
  if (fields.complete !== undefined && typeof fields.complete !== 'boolean') return undefined;
  if (typeof fields.updatedAt !== 'string') return undefined;
  const checkpoint: DownloadCheckpoint = {
    version: fields.version,
    md5sum: fields.md5sum.toLowerCase(),
    fileSize: fields.fileSize,
    bytesOnDisk: fields.bytesOnDisk,
    updatedAt: fields.updatedAt,
  };
  if (fields.etag !== undefined) checkpoint.etag = fields.etag;
  if (fields.url !== undefined) checkpoint.url = fields.url;
  if (fields.complete === true) checkpoint.complete = true;
  return checkpoint;
}

function checkVersion(version: string): void {
  const problem = describeInvalidFirmwareVersion(version);
  if (problem) throw new Error(`invalid checkpoint key: ${problem}`);
}

function checkCheckpoint(checkpoint: DownloadCheckpoint): DownloadCheckpoint {
  checkVersion(checkpoint.version);
  const checked = parseDownloadCheckpoint(checkpoint);
  if (!checked) throw new Error(`invalid checkpoint for version ${checkpoint.version}`);
  return checked;
}

const CHECKPOINT_FILE_PATTERN = /^FW_([A-Za-z0-9._-]{1,32})\.json$/;

export class FileCheckpointStore implements CheckpointStore {
  constructor(readonly directory: string) {}

  filePath(version: string): string {
    checkVersion(version);
    return path.join(this.directory, `FW_${version}.json`);
  }

  async load(version: string): Promise<DownloadCheckpoint | undefined> {
    const checkpoint = parseDownloadCheckpoint(await readJsonFile<unknown>(this.filePath(version)));
    return checkpoint && checkpoint.version === version ? checkpoint : undefined;
  }

  async save(checkpoint: DownloadCheckpoint): Promise<void> {
    const checked = checkCheckpoint(checkpoint);
    await writeFileAtomic(this.filePath(checked.version), JSON.stringify(checked, null, 2) + '\n');
  }

  async remove(version: string): Promise<void> {
    await fs.rm(this.filePath(version), { force: true });
  }

  async list(): Promise<DownloadCheckpoint[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.directory);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const checkpoints: DownloadCheckpoint[] = [];
    for (const name of names.sort()) {
      const match = CHECKPOINT_FILE_PATTERN.exec(name);
      if (!match) continue;
      const checkpoint = await this.load(match[1]);
      if (checkpoint) checkpoints.push(checkpoint);
    }
    return checkpoints;
  }
}

/** Keeps checkpoints in memory only: for tests and for callers that accept losing them on restart. */
export class MemoryCheckpointStore implements CheckpointStore {
  private readonly checkpoints = new Map<string, DownloadCheckpoint>();

  async load(version: string): Promise<DownloadCheckpoint | undefined> {
    const checkpoint = this.checkpoints.get(version);
    return checkpoint ? { ...checkpoint } : undefined;
  }

  async save(checkpoint: DownloadCheckpoint): Promise<void> {
    const checked = checkCheckpoint(checkpoint);
    this.checkpoints.set(checked.version, checked);
  }

  async remove(version: string): Promise<void> {
    this.checkpoints.delete(version);
  }

  async list(): Promise<DownloadCheckpoint[]> {
    return [...this.checkpoints.values()].map((checkpoint) => ({ ...checkpoint }));
  }
}
