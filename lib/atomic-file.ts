/** Writes a file so that a reader or a crash sees either the old content or the new, never half. */
import { promises as fs } from 'fs';
import * as path from 'path';
import { randomBytes } from 'crypto';

export interface AtomicWriteOptions {
  /** Permission bits of the new file (before umask), e.g. 0o600 for a private key; it never exists with wider ones. */
  mode?: number;
}

export async function writeFileAtomic(filePath: string, data: string | Buffer, options: AtomicWriteOptions = {}): Promise<void> {
  const directory = path.dirname(filePath);
  await fs.mkdir(directory, { recursive: true });
  const temporary = path.join(directory, `.${path.basename(filePath)}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await fs.open(temporary, 'w', options.mode ?? 0o666);
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temporary, filePath);
  } catch (error) {
    // A full disk or a failed rename leaves no temporary file behind.
    await fs.rm(temporary, { force: true }).catch(() => undefined);
    throw error;
  }
  // The rename itself is durable only once the directory entry is flushed.
  await syncDirectory(directory);
}

/** Flushes a directory's entries (a file created, renamed or removed in it) to disk. */
export async function syncDirectory(directory: string): Promise<void> {
  try {
    const directoryHandle = await fs.open(directory, 'r');
    try {
      await directoryHandle.sync();
    } finally {
      await directoryHandle.close();
    }
  } catch {
    // Some file systems do not allow fsync on a directory; the entry is still there, only perhaps not yet on disk.
  }
}

/** Reads a text file; undefined when it does not exist. */
export async function readFileIfPresent(filePath: string): Promise<string | undefined> {
  try {
    return await fs.readFile(filePath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Reads and parses a JSON file; undefined when it does not exist or is not valid JSON. */
export async function readJsonFile<T>(filePath: string): Promise<T | undefined> {
  const text = await readFileIfPresent(filePath);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}
