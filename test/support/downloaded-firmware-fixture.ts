/** A firmware as a finished download leaves it (`FW_<version>.bin` and its checkpoint), for tests of what comes after the download. */
import { createHash } from 'crypto';
import { promises as fs } from 'fs';
import * as path from 'path';
import { FileCheckpointStore } from '../../lib/checkpoint-store';

export function hexDigest(algorithm: 'md5' | 'sha256', bytes: Buffer): string {
  return createHash(algorithm).update(bytes).digest('hex');
}

export async function fileExists(filePath: string): Promise<boolean> {
  return fs.access(filePath).then(
    () => true,
    () => false,
  );
}

/** Writes the firmware and a complete checkpoint into the downloads folder; returns both paths. */
export async function placeDownloadedFirmware(downloadsDir: string, version: string, bytes: Buffer): Promise<{ filePath: string; checkpointPath: string }> {
  await fs.mkdir(downloadsDir, { recursive: true });
  const filePath = path.join(downloadsDir, `FW_${version}.bin`);
  await fs.writeFile(filePath, bytes);
  const checkpoints = new FileCheckpointStore(downloadsDir);
  await checkpoints.save({
    version,
    md5sum: hexDigest('md5', bytes),
    fileSize: bytes.length,
    bytesOnDisk: bytes.length,
    complete: true,
    updatedAt: new Date().toISOString(),
  });
  return { filePath, checkpointPath: checkpoints.filePath(version) };
}
