/**
 * MD5 (what the cloud's md5sum checks) and, when something will check one, SHA-256 of a firmware,
 * computed in one pass over its bytes. These are the hashes themselves; firmware-hasher.ts runs
 * them off the main thread.
 */
import { createHash, type Hash } from 'crypto';
import { promises as fs } from 'fs';

export type HashAlgorithm = 'md5' | 'sha256';

export interface FirmwareDigest {
  /** Lowercase hex. */
  md5: string;
  /** Lowercase hex; present when SHA-256 was asked for. */
  sha256?: string;
  bytes: number;
}

/** The digests of the algorithms asked for (lowercase hex), and the bytes hashed. */
export type Digests = Partial<Record<HashAlgorithm, string>> & { bytes: number };

/** Running hashes over the bytes fed so far. */
export interface RunningHashes {
  update(chunk: Buffer): void;
  readonly bytes: number;
  /** Finishes the hashes; call once. */
  digest(): Digests;
}

export function createRunningHashes(algorithms: readonly HashAlgorithm[]): RunningHashes {
  const hashes = algorithms.map((algorithm) => [algorithm, createHash(algorithm)] as [HashAlgorithm, Hash]);
  let bytes = 0;
  return {
    update(chunk: Buffer): void {
      for (const [, hash] of hashes) hash.update(chunk);
      bytes += chunk.length;
    },
    get bytes(): number {
      return bytes;
    },
    digest(): Digests {
      const digests: Digests = { bytes };
      for (const [algorithm, hash] of hashes) digests[algorithm] = hash.digest('hex');
      return digests;
    },
  };
}

/** MD5 always, SHA-256 when asked for. */
export function firmwareAlgorithms(options: { sha256?: boolean }): HashAlgorithm[] {
  return options.sha256 ? ['md5', 'sha256'] : ['md5'];
}

/** The digests as a FirmwareDigest; throws when MD5 was not among them. */
export function asFirmwareDigest(digests: Digests): FirmwareDigest {
  if (digests.md5 === undefined) throw new Error('no MD5 was computed');
  const digest: FirmwareDigest = { md5: digests.md5, bytes: digests.bytes };
  if (digests.sha256 !== undefined) digest.sha256 = digests.sha256;
  return digest;
}

/** Large reads, so that re-hashing the bytes on disk runs at the speed of the hash, not of the calls. */
export const HASH_READ_SIZE = 1024 * 1024;

export interface HashFileOptions {
  /** Start at this byte (default 0). */
  fromByte?: number;
  /** Hash only up to this byte of the file (to its end when absent). */
  upToBytes?: number;
  /** Stops between reads when aborted (hashing a large file takes seconds). */
  signal?: AbortSignal;
  /** Stops between reads when it returns true (a worker's cancel). */
  cancelled?: () => boolean;
  /** The buffer to read into (default: a new one of HASH_READ_SIZE). */
  buffer?: Buffer;
}

/**
 * Feeds the file's bytes from `fromByte` (or 0) to `upToBytes` (or its end) into running hashes, in
 * large reads so that a firmware of any size is hashed without holding it in memory. Returns the
 * bytes read, which is less than asked for when the file is shorter.
 */
export async function updateHashesFromFile(hashes: RunningHashes, filePath: string, options: HashFileOptions = {}): Promise<number> {
  const limit = options.upToBytes ?? Infinity;
  const handle = await fs.open(filePath, 'r');
  try {
    const buffer = options.buffer ?? Buffer.allocUnsafe(HASH_READ_SIZE);
    const start = options.fromByte ?? 0;
    let total = 0;
    while (start + total < limit) {
      options.signal?.throwIfAborted();
      if (options.cancelled?.()) throw new HashingCancelledError();
      const wanted = Math.min(buffer.length, limit - start - total);
      const { bytesRead } = await handle.read(buffer, 0, wanted, start + total);
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

export class HashingCancelledError extends Error {
  constructor() {
    super('hashing cancelled');
    this.name = 'AbortError';
  }
}

/** Compares two hex MD5 strings as the cloud means them: case does not matter. */
export function md5Equals(a: string, b: string): boolean {
  return a.trim().toLowerCase() === b.trim().toLowerCase();
}
