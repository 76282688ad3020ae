/**
 * The firmware file while it is being downloaded: written at its current length, hashed as it
 * grows, flushed before a checkpoint vouches for its bytes. A resume trusts only the bytes a
 * checkpoint vouched for and re-hashes them.
 *
 * What arrives from the socket is copied into large blocks; a full block is written to the file
 * while the next ones fill, and once written the hashing thread reads it back from the file (from
 * the page cache), so that neither the disk nor the hash holds up the socket unless they fall a
 * whole pipeline behind. Inline hashing hashes the block itself.
 */
import { promises as fs } from 'fs';
import { asFirmwareDigest, firmwareAlgorithms, type FirmwareDigest, type HashAlgorithm } from './firmware-digest';
import { createFirmwareHasher, type FirmwareHasher, type HashingMode } from './firmware-hasher';

const KiB = 1024;
const MiB = 1024 * KiB;
/** The largest block: one write and one hash request per MiB. */
const MAX_BLOCK_SIZE = MiB;
const MIN_BLOCK_SIZE = 64 * KiB;
/** Blocks per file: one filling, the others being written or hashed. */
const BLOCKS_PER_FILE = 4;
/** How far (in blocks) the hashing thread may fall behind the writes before the socket waits for it. */
const MAX_HASH_LAG_BLOCKS = 16;
/** The memory all files being downloaded at once share for their blocks; with many at once the blocks are smaller. */
const BLOCK_MEMORY_BUDGET = 32 * MiB;

let openFiles = 0;

/** The block size for a file opened while `others` are open: 1 MiB, down to 64 KiB when many share the budget. */
function blockSizeFor(others: number): number {
  let size = MAX_BLOCK_SIZE;
  while (size > MIN_BLOCK_SIZE && size * BLOCKS_PER_FILE * (others + 1) > BLOCK_MEMORY_BUDGET) size /= 2;
  return size;
}

export interface PartialFirmwareFileOptions {
  /** Also SHA-256 (MD5 is always computed). */
  sha256?: boolean;
  hashing?: HashingMode;
}

/** Where a finished file was when it was closed: a later reader knows the file is still the one written. */
export interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

export function identityOf(stats: { dev: number; ino: number; size: number; mtimeMs: number }): FileIdentity {
  return { dev: stats.dev, ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs };
}

export function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

export class PartialFirmwareFile {
  private readonly algorithms: HashAlgorithm[];
  private readonly hashing: HashingMode | undefined;
  private hasher: FirmwareHasher;
  /** Bytes accepted: written, being written or waiting in the current block. */
  private length = 0;
  /** Bytes from the start of the file whose writes have completed. */
  private written = 0;
  private readonly blockSize: number;
  private readonly freeBlocks: Buffer[] = [];
  private blocksMade = 0;
  private current: Buffer | undefined;
  private currentLength = 0;
  /** Blocks being written (or hashed inline), oldest first. */
  private readonly inFlight: Array<Promise<void>> = [];
  /** Written ranges the hashing thread is reading back, oldest first. */
  private readonly hashesUnderWay: Array<Promise<void>> = [];
  /** The first failure of a block's write or hash; every later call throws it. */
  private failure: unknown;
  private counted = true;

  private constructor(
    readonly filePath: string,
    private handle: fs.FileHandle | undefined,
    options: PartialFirmwareFileOptions,
  ) {
    this.algorithms = firmwareAlgorithms(options);
    this.hashing = options.hashing;
    this.hasher = createFirmwareHasher(this.algorithms, this.hashing);
    this.blockSize = blockSizeFor(openFiles);
    openFiles += 1;
  }

  /** A new, empty file (an existing one is emptied). */
  static async create(filePath: string, options: PartialFirmwareFileOptions = {}): Promise<PartialFirmwareFile> {
    return new PartialFirmwareFile(filePath, await fs.open(filePath, 'w'), options);
  }

  /**
   * The file cut back to the `trustedBytes` a checkpoint vouches for (bytes written after it may not
   * have reached the disk) and re-hashed; undefined when the file is missing or shorter than that.
   */
  static async resume(
    filePath: string,
    trustedBytes: number,
    options: PartialFirmwareFileOptions & { signal?: AbortSignal } = {},
  ): Promise<PartialFirmwareFile | undefined> {
    const size = await fs.stat(filePath).then(
      (stat) => (stat.isFile() ? stat.size : undefined),
      () => undefined,
    );
    if (size === undefined || size < trustedBytes) return undefined;
    const file = new PartialFirmwareFile(filePath, await fs.open(filePath, 'r+'), options);
    try {
      await file.openHandle().truncate(trustedBytes);
      const hashed = await file.hasher.updateFromFile(filePath, { upToBytes: trustedBytes, signal: options.signal });
      if (hashed !== trustedBytes) throw new Error(`the partial file changed while it was hashed (${hashed} of ${trustedBytes} bytes)`);
    } catch (error) {
      await file.close();
      throw error;
    }
    file.length = trustedBytes;
    file.written = trustedBytes;
    return file;
  }

  /** Bytes in the file, every one of them hashed once written. */
  get size(): number {
    return this.length;
  }

  /** Bytes from the start of the file whose writes completed (the rest wait in blocks or are being written). */
  get writtenBytes(): number {
    return this.written;
  }

  /** The digest of every byte appended; the file is flushed first. Call once the file is complete. */
  async digest(): Promise<FirmwareDigest> {
    await this.flush();
    const hasher = this.hasher;
    this.hasher = createFirmwareHasher(this.algorithms, this.hashing);
    return asFirmwareDigest(await hasher.digest());
  }

  /**
   * Copies in as much of the chunk as the blocks free now have room for, without waiting (a socket
   * hands its bytes over this way, and pauses for roomFreed() when not all were taken); returns
   * how many bytes it took. Throws the file system's error of an earlier block as it is.
   */
  takeAvailable(chunk: Buffer): number {
    this.throwFailure();
    if (this.hashesUnderWay.length > MAX_HASH_LAG_BLOCKS) return 0;
    let offset = 0;
    while (offset < chunk.length) {
      this.current ??= this.blockFreeNow();
      if (!this.current) break;
      const copied = chunk.copy(this.current, this.currentLength, offset);
      this.currentLength += copied;
      offset += copied;
      this.length += copied;
      if (this.currentLength === this.current.length) this.dispatchCurrent();
    }
    return offset;
  }

  /** Resolves once takeAvailable() has room again, or has an earlier block's failure to throw. */
  async roomFreed(): Promise<void> {
    for (;;) {
      if (this.failure !== undefined) return;
      if (this.hashesUnderWay.length > MAX_HASH_LAG_BLOCKS) {
        // The hashing thread is too far behind the writes: the socket waits for it.
        await this.hashesUnderWay[0];
        continue;
      }
      this.current ??= this.blockFreeNow();
      if (this.current) return;
      // Every block is being written or hashed: the socket waits for the oldest.
      await this.inFlight[0];
    }
  }

  /** Writes and hashes what waits in the current block; resolves once every block is written and hashed. */
  async flush(): Promise<void> {
    this.dispatchCurrent();
    await this.settle();
    this.throwFailure();
  }

  /** Drops every byte, for a download that must start again from zero. */
  async empty(): Promise<void> {
    await this.settle();
    this.failure = undefined;
    this.current = undefined;
    this.currentLength = 0;
    await this.openHandle().truncate(0);
    this.hasher.dispose();
    this.hasher = createFirmwareHasher(this.algorithms, this.hashing);
    this.length = 0;
    this.written = 0;
  }

  /** Flushes the written bytes to the disk. */
  async sync(): Promise<void> {
    await this.flush();
    await this.openHandle().sync();
  }

  /**
   * Hands what waits in the current block to the disk and makes every byte so far durable while
   * appends go on; resolves with how many bytes from the start of the file that covers.
   */
  async syncAppended(): Promise<number> {
    this.dispatchCurrent();
    const target = this.length;
    while (this.written < target && this.inFlight.length > 0) await this.inFlight[0];
    this.throwFailure();
    await this.openHandle().sync();
    return target;
  }

  /** Where the file is now: after the last sync, the identity a reader compares with. */
  async identity(): Promise<FileIdentity> {
    return identityOf(await this.openHandle().stat());
  }

  get isOpen(): boolean {
    return this.handle !== undefined;
  }

  /** Closes the file; never throws (a file that cannot be closed is of no further use anyway). Unwritten bytes are dropped. */
  async close(): Promise<void> {
    await this.settle();
    this.hasher.dispose();
    if (this.counted) {
      this.counted = false;
      openFiles -= 1;
    }
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close().catch(() => undefined);
  }

  /** A free block, or a new one while there are fewer than BLOCKS_PER_FILE; undefined while every block is under way. */
  private blockFreeNow(): Buffer | undefined {
    const free = this.freeBlocks.pop();
    if (free) return free;
    // A block whose write failed is not given back; one is made anew once nothing is under way.
    if (this.blocksMade < BLOCKS_PER_FILE || this.inFlight.length === 0) {
      this.blocksMade = Math.min(BLOCKS_PER_FILE, this.blocksMade + 1);
      return Buffer.from(new ArrayBuffer(this.blockSize));
    }
    return undefined;
  }

  private dispatchCurrent(): void {
    const block = this.current;
    const length = this.currentLength;
    this.current = undefined;
    this.currentLength = 0;
    if (!block || length === 0) {
      if (block) this.freeBlocks.push(block);
      return;
    }
    const handle = this.openHandle();
    const position = this.length - length;
    const hasher = this.hasher;
    // The hashes are fed in the order the blocks were taken: each waits for the one before it.
    const previous = this.inFlight[this.inFlight.length - 1] ?? Promise.resolve();
    const tracked = writeFully(handle, block.subarray(0, length), position)
      .then(async () => {
        await previous;
        if (this.failure !== undefined) return;
        if (!hasher.readsFiles) await hasher.update(block.subarray(0, length));
        this.written = position + length;
        this.freeBlocks.push(block);
        // In order, as each write completes: the thread reads the range back from the file.
        if (hasher.readsFiles) this.trackHashing(hasher.updateFromFile(this.filePath, { upToBytes: position + length }));
      })
      .catch((error: unknown) => {
        this.failure ??= error;
      })
      .finally(() => this.inFlight.splice(this.inFlight.indexOf(tracked), 1));
    this.inFlight.push(tracked);
  }

  private trackHashing(hashed: Promise<number>): void {
    const tracked: Promise<void> = hashed
      .then(
        () => undefined,
        (error: unknown) => {
          this.failure ??= error;
        },
      )
      .finally(() => this.hashesUnderWay.splice(this.hashesUnderWay.indexOf(tracked), 1));
    this.hashesUnderWay.push(tracked);
  }

  /** Waits for every block under way and every range being hashed, whatever their outcome. */
  private async settle(): Promise<void> {
    while (this.inFlight.length > 0) await this.inFlight[0];
    while (this.hashesUnderWay.length > 0) await this.hashesUnderWay[0];
  }

  private throwFailure(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  private openHandle(): fs.FileHandle {
    if (!this.handle) throw new Error('the firmware file is not open');
    return this.handle;
  }
}

async function writeFully(handle: fs.FileHandle, bytes: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, written, bytes.length - written, position + written);
    written += bytesWritten;
  }
}
