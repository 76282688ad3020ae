/**
 * The one owner of a device's `downloads/` folder: the firmware file of a version
 * (`FW_<version>.bin`) and its checkpoint (`FW_<version>.json`), their removal, the clean-up of
 * temporary files a crash or a failed write left behind, and the free-space check before a download.
 * Nothing else names, creates or removes files in it.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { FileCheckpointStore, type CheckpointStore } from './checkpoint-store';
import { describeInvalidFirmwareVersion } from './firmware-version';
import { OtaResultCode } from './ota-messages';
import { UpdateFailure, storageFailure } from './update-failure';

/** The temporary files of writeFileAtomic: `.<name>.<8 hex>.tmp`. */
const TEMPORARY_FILE_PATTERN = /^\..+\.[0-9a-f]{8}\.tmp$/;
const FIRMWARE_FILE_PATTERN = /^FW_([A-Za-z0-9._-]{1,32})\.bin$/;

/** True when `filePath` lies inside `directory` (not the directory itself). */
export function isInsideDirectory(directory: string, filePath: string): boolean {
  const relative = path.relative(path.resolve(directory), path.resolve(filePath));
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
}

export interface DownloadsFolderOptions {
  /** Where checkpoints are kept (default: FW_<version>.json files in the folder). */
  checkpointStore?: CheckpointStore;
  /** Free bytes on the folder's file system (default: fs.statfs); tests pass their own. */
  freeBytes?: (directory: string) => Promise<number | undefined>;
}

async function statfsFreeBytes(directory: string): Promise<number | undefined> {
  // fs.statfs came with Node 18.15; without it the check is skipped and ENOSPC still ends the download.
  const statfs = (fs as unknown as { statfs?: (p: string) => Promise<{ bavail: number; bsize: number }> }).statfs;
  if (!statfs) return undefined;
  const stats = await statfs(directory);
  return Number(stats.bavail) * Number(stats.bsize);
}

export class DownloadsFolder {
  readonly directory: string;
  readonly checkpoints: CheckpointStore;
  /** Made with no options of the caller's: another thread can make the same folder from its directory alone. */
  readonly plain: boolean;
  private readonly freeBytes: (directory: string) => Promise<number | undefined>;

  constructor(directory: string, options: DownloadsFolderOptions = {}) {
    this.directory = path.resolve(directory);
    this.plain = options.checkpointStore === undefined && options.freeBytes === undefined;
    this.checkpoints = options.checkpointStore ?? new FileCheckpointStore(this.directory);
    this.freeBytes = options.freeBytes ?? statfsFreeBytes;
  }

  /** Where the firmware of `version` is downloaded. */
  firmwarePath(version: string): string {
    const problem = describeInvalidFirmwareVersion(version);
    if (problem) throw new Error(problem);
    return path.join(this.directory, `FW_${version}.bin`);
  }

  contains(filePath: string): boolean {
    return isInsideDirectory(this.directory, filePath);
  }

  /** Creates the folder and removes the temporary files an interrupted write left in it. */
  async prepare(): Promise<void> {
    try {
      await fs.mkdir(this.directory, { recursive: true });
      for (const name of await fs.readdir(this.directory)) {
        if (TEMPORARY_FILE_PATTERN.test(name)) await fs.rm(path.join(this.directory, name), { force: true });
      }
    } catch (error) {
      throw storageFailure('cannot prepare the downloads folder', error);
    }
  }

  /**
   * Fails with -5 when the file system has less than `bytesNeeded` free, rather than filling the
   * disk; a file system that cannot say passes.
   */
  async ensureSpace(bytesNeeded: number): Promise<void> {
    if (bytesNeeded <= 0) return;
    const free = await this.freeBytes(this.directory).catch(() => undefined);
    if (free !== undefined && free < bytesNeeded) {
      throw new UpdateFailure(OtaResultCode.upgradeFailed, `not enough space: ${free} bytes free, ${bytesNeeded} needed`);
    }
  }

  /**
   * Removes the download of `version` and its checkpoint. A `filePath` the flow names is removed too
   * when it lies inside this folder; a file elsewhere belongs to the user and is left alone.
   */
  async remove(version: string, filePath?: string): Promise<void> {
    const files = new Set([this.firmwarePath(version)]);
    if (filePath && this.contains(filePath)) files.add(path.resolve(filePath));
    for (const file of files) await fs.rm(file, { force: true });
    await this.checkpoints.remove(version);
  }

  /** Only one firmware is worth its disk space: the one the cloud asks for now. */
  async removeAllBut(version: string): Promise<void> {
    const versions = new Set((await this.checkpoints.list()).map((checkpoint) => checkpoint.version));
    const names = await fs.readdir(this.directory).catch(() => [] as string[]);
    for (const name of names) {
      const match = FIRMWARE_FILE_PATTERN.exec(name);
      if (match) versions.add(match[1]);
    }
    versions.delete(version);
    for (const other of versions) await this.remove(other);
  }
}
