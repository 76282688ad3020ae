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
  try {
    const directoryHandle = await fs.open(directory, 'r');
    try {
      await directoryHandle.sync();
    } finally {
      await directoryHandle.close();
    }
  } catch {
    // Some file systems do not allow fsync on a directory; the rename is still atomic there.
  }
}

/** Reads and parses a JSON file; undefined when it does not exist or is not valid JSON. */
export async function readJsonFile<T>(filePath: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await fs.readFile(filePath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}
