/**
 * Checks a downloaded firmware by the file on disk (not by the download's running hash): its MD5
 * against the command's md5sum and, when one is given, its SHA-256. What follows a failed check
 * (removing the file, the fail report) is the update session's.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { hashFile, md5Equals, type FirmwareDigest } from './firmware-digest';
import { describeInvalidFirmwareVersion } from './firmware-version';
import { OtaResultCode } from './ota-messages';
import { printable } from './printable-text';

export interface FirmwareFileExpectation {
  /** The target version, for the report and the checkpoint. */
  version: string;
  filePath: string;
  /** The command's md5sum (any case). */
  md5sum: string;
  /** Optional SHA-256 (any case). */
  sha256?: string;
  /** The command's file_size, to say in a mismatch how much of the file is there. */
  fileSize?: number;
}

export type FirmwareCheck = { ok: true; digest: FirmwareDigest } | { ok: false; resultCode: number; reason: string };

const MD5_PATTERN = /^[0-9a-fA-F]{32}$/;
const SHA256_PATTERN = /^[0-9a-fA-F]{64}$/;

/** Says what is wrong with an expectation (a wiring mistake, not a bad firmware), or undefined. */
export function describeInvalidExpectation(expectation: Partial<FirmwareFileExpectation>): string | undefined {
  const versionProblem = describeInvalidFirmwareVersion(expectation.version);
  if (versionProblem) return versionProblem;
  if (typeof expectation.filePath !== 'string' || expectation.filePath === '') return 'no firmware file path';
  if (typeof expectation.md5sum !== 'string' || !MD5_PATTERN.test(expectation.md5sum.trim())) return 'md5sum must be 32 hexadecimal digits';
  if (expectation.sha256 !== undefined && (typeof expectation.sha256 !== 'string' || !SHA256_PATTERN.test(expectation.sha256.trim()))) {
    return 'sha256 must be 64 hexadecimal digits';
  }
  return undefined;
}

function sizeNote(digest: FirmwareDigest, fileSize: number | undefined): string {
  return fileSize !== undefined && digest.bytes !== fileSize ? ` (file has ${digest.bytes} of ${fileSize} bytes)` : '';
}

/** Hashes the file and compares; never throws for a missing or unreadable file (that is a failed check). */
export async function checkFirmwareFile(expectation: FirmwareFileExpectation): Promise<FirmwareCheck> {
  const name = printable(path.basename(expectation.filePath), 60);
  let digest: FirmwareDigest;
  try {
    const stats = await fs.stat(expectation.filePath);
    if (!stats.isFile()) return { ok: false, resultCode: OtaResultCode.upgradeFailed, reason: `firmware ${name} is not a file` };
    digest = await hashFile(expectation.filePath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? `firmware file ${name} is missing` : `cannot read firmware file ${name}: ${code ?? (error as Error).message}`;
    return { ok: false, resultCode: OtaResultCode.upgradeFailed, reason };
  }
  const expectedMd5 = expectation.md5sum.trim().toLowerCase();
  if (!md5Equals(digest.md5, expectedMd5)) {
    return {
      ok: false,
      resultCode: OtaResultCode.md5Mismatch,
      reason: `md5 mismatch: expected ${expectedMd5}, got ${digest.md5}${sizeNote(digest, expectation.fileSize)}`,
    };
  }
  const expectedSha256 = expectation.sha256?.trim().toLowerCase();
  if (expectedSha256 && digest.sha256 !== expectedSha256) {
    return { ok: false, resultCode: OtaResultCode.md5Mismatch, reason: `sha256 mismatch: expected ${expectedSha256}, got ${digest.sha256}` };
  }
  return { ok: true, digest };
}
