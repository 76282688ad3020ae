/**
 * Checks a downloaded firmware: its MD5 against the command's md5sum and, when one is given, its
 * SHA-256. The digests the download computed are trusted while the file on disk is still the one
 * it wrote and finished (same device, inode, size and modification time); any other file, one that
 * changed since, or a re-read the user asks for is hashed again from the disk, and only with what
 * is missing. What follows a failed check (removing the file, the fail report) is the update
 * session's.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { retryDuringDescriptorShortage, type ShortageRetryOptions } from './descriptor-shortage';
import { md5Equals, type Digests, type FirmwareDigest, type HashAlgorithm } from './firmware-digest';
import { hashFirmwareFile, type HashingMode } from './firmware-hasher';
import { checkFirmwareSignature, type findFirmwareSignature, type SignaturePolicy } from './firmware-signature';
import { describeInvalidFirmwareVersion } from './firmware-version';
import { OtaResultCode } from './ota-messages';
import { identityOf, sameFile, type FileIdentity } from './partial-firmware-file';
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
  /** A signature check: over the manifest of this product, the version and the file's size and SHA-256. */
  signature?: FirmwareSignatureExpectation;
}

export interface FirmwareSignatureExpectation {
  productId: string;
  policy: SignaturePolicy;
  found: ReturnType<typeof findFirmwareSignature>;
}

/** What the download knows of the file it finished. */
export interface DownloadedFirmware {
  path: string;
  identity: FileIdentity;
  md5: string;
  sha256?: string;
}

export interface FirmwareCheckOptions {
  /** The download that wrote the file, whose digests stand while the file is unchanged. */
  downloaded?: DownloadedFirmware;
  /** Hash the whole file again whatever the download computed. */
  reread?: boolean;
  hashing?: HashingMode;
  /** Told before each wait when reading the file ran out of file descriptors (it is retried). */
  onDescriptorShortage?: ShortageRetryOptions['onRetry'];
}

export type FirmwareCheck =
  | {
      ok: true;
      digest: FirmwareDigest;
      /** True when the digests came from the download (the file was not read again). */
      fromDownload: boolean;
      /** The signature that verified, when there was one. */
      signature?: { alg: string; keyId: string };
    }
  | { ok: false; resultCode: number; reason: string };

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

/** The download's digests that still describe the file: none when it is another file, or changed. */
function trustedDigests(
  expectation: FirmwareFileExpectation,
  stats: { dev: number; ino: number; size: number; mtimeMs: number },
  options: FirmwareCheckOptions,
): Digests {
  const downloaded = options.downloaded;
  const trusted: Digests = { bytes: stats.size };
  if (options.reread || !downloaded) return trusted;
  if (path.resolve(downloaded.path) !== path.resolve(expectation.filePath) || !sameFile(downloaded.identity, identityOf(stats))) return trusted;
  trusted.md5 = downloaded.md5;
  if (downloaded.sha256 !== undefined) trusted.sha256 = downloaded.sha256;
  return trusted;
}

/** Compares the file's digests with the expectation, hashing only what is not known; never throws for a missing or unreadable file (that is a failed check). */
export async function checkFirmwareFile(expectation: FirmwareFileExpectation, options: FirmwareCheckOptions = {}): Promise<FirmwareCheck> {
  const name = printable(path.basename(expectation.filePath), 60);
  let digests: Digests;
  let fromDownload: boolean;
  try {
    const stats = await fs.stat(expectation.filePath);
    if (!stats.isFile()) return { ok: false, resultCode: OtaResultCode.upgradeFailed, reason: `firmware ${name} is not a file` };
    digests = trustedDigests(expectation, stats, options);
    const missing: HashAlgorithm[] = [];
    if (digests.md5 === undefined) missing.push('md5');
    if ((expectation.sha256 !== undefined || expectation.signature) && digests.sha256 === undefined) missing.push('sha256');
    fromDownload = missing.length === 0;
    if (missing.length > 0) {
      const read = () => hashFirmwareFile(expectation.filePath, { algorithms: missing, mode: options.hashing });
      digests = { ...digests, ...(await retryDuringDescriptorShortage(read, { onRetry: options.onDescriptorShortage })) };
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? `firmware file ${name} is missing` : `cannot read firmware file ${name}: ${code ?? (error as Error).message}`;
    return { ok: false, resultCode: OtaResultCode.upgradeFailed, reason };
  }
  const digest: FirmwareDigest = { md5: digests.md5 ?? '', bytes: digests.bytes };
  if (digests.sha256 !== undefined) digest.sha256 = digests.sha256;
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
  if (!expectation.signature) return { ok: true, digest, fromDownload };
  const { productId, policy, found } = expectation.signature;
  const manifest = { productId, version: expectation.version, size: digest.bytes, sha256: digest.sha256 ?? '' };
  const signed = checkFirmwareSignature(manifest, found, policy);
  if (!signed.ok) return { ok: false, resultCode: OtaResultCode.md5Mismatch, reason: signed.reason };
  return signed.signature ? { ok: true, digest, fromDownload, signature: signed.signature } : { ok: true, digest, fromDownload };
}
