/**
 * The downloaded firmware of a version in a device's downloads folder (`FW_<version>.bin` and its
 * checkpoint `FW_<version>.json`), and the one way to remove it once it is no longer wanted.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { FileCheckpointStore } from './checkpoint-store';
import { firmwareDownloadPath } from './resumable-download';

/** True when `filePath` lies inside `directory` (not the directory itself). */
export function isInsideDirectory(directory: string, filePath: string): boolean {
  const relative = path.relative(path.resolve(directory), path.resolve(filePath));
  return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
}

/**
 * Removes the download of `version` and its checkpoint. A `filePath` given by the flow is removed
 * too when it lies inside the downloads folder; a file elsewhere belongs to the user and is left.
 * Returns the files removed or already absent.
 */
export async function removeDownloadedFirmware(downloadsDir: string, version: string, filePath?: string): Promise<string[]> {
  const files = new Set([firmwareDownloadPath(downloadsDir, version)]);
  if (filePath && isInsideDirectory(downloadsDir, filePath)) files.add(path.resolve(filePath));
  for (const file of files) await fs.rm(file, { force: true });
  await new FileCheckpointStore(downloadsDir).remove(version);
  return [...files];
}
