/**
 * The firmware file while it is being downloaded: written at its current length, hashed as it
 * grows (MD5 and SHA-256 of every byte in it), flushed before a checkpoint vouches for its bytes.
 * A resume trusts only the bytes a checkpoint vouched for and re-hashes them.
 */
import { promises as fs } from 'fs';
import { createFirmwareHashes, updateHashesFromFile, type FirmwareDigest, type FirmwareHashes } from './firmware-digest';

export class PartialFirmwareFile {
  private hashes: FirmwareHashes = createFirmwareHashes();
  private length = 0;

  private constructor(
    readonly filePath: string,
    private handle: fs.FileHandle | undefined,
  ) {}

  /** A new, empty file (an existing one is emptied). */
  static async create(filePath: string): Promise<PartialFirmwareFile> {
    return new PartialFirmwareFile(filePath, await fs.open(filePath, 'w'));
  }

  /**
   * The file cut back to the `trustedBytes` a checkpoint vouches for (bytes written after it may not
   * have reached the disk) and re-hashed; undefined when the file is missing or shorter than that.
   */
  static async resume(filePath: string, trustedBytes: number, signal?: AbortSignal): Promise<PartialFirmwareFile | undefined> {
    const size = await fs.stat(filePath).then(
      (stat) => (stat.isFile() ? stat.size : undefined),
      () => undefined,
    );
    if (size === undefined || size < trustedBytes) return undefined;
    const file = new PartialFirmwareFile(filePath, await fs.open(filePath, 'r+'));
    try {
      await file.openHandle().truncate(trustedBytes);
      await updateHashesFromFile(file.hashes, filePath, { upToBytes: trustedBytes, signal });
    } catch (error) {
      await file.close();
      throw error;
    }
    file.length = trustedBytes;
    return file;
  }

  /** Bytes in the file, every one of them hashed. */
  get size(): number {
    return this.length;
  }

  digest(): FirmwareDigest {
    return this.hashes.digest();
  }

  /** Appends the chunk; throws the file system's error as it is. */
  async append(chunk: Buffer): Promise<void> {
    const handle = this.openHandle();
    let written = 0;
    while (written < chunk.length) {
      const { bytesWritten } = await handle.write(chunk, written, chunk.length - written, this.length + written);
      written += bytesWritten;
    }
    this.hashes.update(chunk);
    this.length += chunk.length;
  }

  /** Drops every byte, for a download that must start again from zero. */
  async empty(): Promise<void> {
    await this.openHandle().truncate(0);
    this.hashes = createFirmwareHashes();
    this.length = 0;
  }

  /** Flushes the written bytes to the disk. */
  async sync(): Promise<void> {
    await this.openHandle().sync();
  }

  get isOpen(): boolean {
    return this.handle !== undefined;
  }

  /** Closes the file; never throws (a file that cannot be closed is of no further use anyway). */
  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close().catch(() => undefined);
  }

  private openHandle(): fs.FileHandle {
    if (!this.handle) throw new Error('the firmware file is not open');
    return this.handle;
  }
}
