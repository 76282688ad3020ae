/** MD5 (what the cloud's md5sum checks) and SHA-256 (for the caller's own records) of a firmware, computed in one pass. */
import { createHash } from 'crypto';
import { promises as fs } from 'fs';

export interface FirmwareDigest {
  /** Lowercase hex. */
  md5: string;
  /** Lowercase hex. */
  sha256: string;
  bytes: number;
}

/** Running MD5 and SHA-256 over the bytes fed so far. */
export interface FirmwareHashes {
  update(chunk: Buffer): void;
  readonly bytes: number;
  /** Finishes both hashes; call once. */
  digest(): FirmwareDigest;
}

export function createFirmwareHashes(): FirmwareHashes {
  const md5 = createHash('md5');
  const sha256 = createHash('sha256');
  let bytes = 0;
  return {
    update(chunk: Buffer): void {
      md5.update(chunk);
      sha256.update(chunk);
      bytes += chunk.length;
    },
    get bytes(): number {
      return bytes;
    },
    digest(): FirmwareDigest {
      return { md5: md5.digest('hex'), sha256: sha256.digest('hex'), bytes };
    },
  };
}

export const HASH_READ_SIZE = 1024 * 1024;

export interface HashFileOptions {
  /** Hash only the first bytes of the file (all of it when absent). */
  upToBytes?: number;
  /** Stops between reads when aborted (hashing a large file takes seconds). */
  signal?: AbortSignal;
}

/**
 * Feeds the file's bytes (or its first `upToBytes`) into running hashes, in large reads so that
 * a firmware of any size is hashed without holding it in memory. Returns the bytes read, which is
 * less than upToBytes when the file is shorter.
 */
export async function updateHashesFromFile(hashes: FirmwareHashes, filePath: string, options: HashFileOptions = {}): Promise<number> {
  const limit = options.upToBytes ?? Infinity;
  const handle = await fs.open(filePath, 'r');
  try {
    const buffer = Buffer.allocUnsafe(HASH_READ_SIZE);
    let total = 0;
    while (total < limit) {
      options.signal?.throwIfAborted();
      const wanted = Math.min(buffer.length, limit - total);
      const { bytesRead } = await handle.read(buffer, 0, wanted, total);
      if (bytesRead === 0) break;
      // update() copies what it needs, so the buffer can be reused for the next read.
      hashes.update(buffer.subarray(0, bytesRead));
      total += bytesRead;
    }
    return total;
  } finally {
    await handle.close();
  }
}

export async function hashFile(filePath: string, options: HashFileOptions = {}): Promise<FirmwareDigest> {
  const hashes = createFirmwareHashes();
  await updateHashesFromFile(hashes, filePath, options);
  return hashes.digest();
}

/** Compares two hex MD5 strings as the cloud means them: case does not matter. */
export function md5Equals(a: string, b: string): boolean {
  return a.trim().toLowerCase() === b.trim().toLowerCase();
}
