/**
 * One firmware update's two file steps as the pipeline runs them, in a process of its own so that
 * it is timed like curl and md5sum: the download (on the download thread, into a downloads folder) and
 * then the check `ota-verify` makes. Prints one JSON line: the times of the two steps and the peak
 * RSS growth over the process's RSS before the download. With `signed`, the download computes the
 * SHA-256 as the device does when it has firmware keys, and the check verifies an Ed25519 signature.
 *
 *   node dist/bench/download-and-verify.js '{"url":…,"md5sum":…,"size":…,"directory":…,"ca":…}'
 */
import { promises as fs } from 'fs';
import { DownloadsFolder } from '../lib/downloads-folder';
import { generateFirmwareKeyPair, signFirmwareManifest } from '../lib/firmware-signature';
import { checkFirmwareFile, type FirmwareSignatureExpectation } from '../lib/firmware-verification';
import type { HashingMode } from '../lib/firmware-hasher';
import { checkedUpdateCommand } from '../lib/ota-messages';
import { createFirmwareDownload } from '../lib/threaded-download';

interface Job {
  url: string;
  md5sum: string;
  size: number;
  directory: string;
  /** A CA file to trust for https. */
  caPath?: string;
  hashing?: HashingMode;
  checkpointIntervalMs?: number;
  /** Verify an Ed25519 signature over the manifest too, as a device with firmware keys does. */
  signed?: boolean;
}

const MiB = 1024 * 1024;

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as Job;
  const ca = job.caPath ? await fs.readFile(job.caPath, 'utf8') : undefined;
  const version = '1.0.0';
  const keys = job.signed ? generateFirmwareKeyPair('ed25519') : undefined;
  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 10);
  const started = process.hrtime.bigint();
  // As the update session makes it: on the download thread.
  const download = createFirmwareDownload({
    command: checkedUpdateCommand({ url: job.url, version, md5sum: job.md5sum, file_size: job.size }),
    folder: new DownloadsFolder(job.directory),
    ca,
    hashing: job.hashing,
    checkpointIntervalMs: job.checkpointIntervalMs,
    sha256: job.signed === true,
  });
  const result = await download.start();
  let signature: FirmwareSignatureExpectation | undefined;
  if (keys) {
    // The vendor's signature, made before the update and so outside the timed steps.
    const manifest = { productId: 'BENCH', version, size: result.size, sha256: result.sha256 ?? '' };
    const found = { found: true as const, value: signFirmwareManifest(manifest, keys.privateKeyPem, 'bench') };
    signature = { productId: 'BENCH', policy: { keys: [{ id: 'bench', pem: keys.publicKeyPem }], required: true }, found };
  }
  const downloaded = process.hrtime.bigint();
  // As the update session passes it: what the download knows of the file it finished.
  const check = await checkFirmwareFile(
    { version, filePath: result.path, md5sum: job.md5sum, fileSize: job.size, signature },
    { downloaded: result, hashing: job.hashing },
  );
  const verified = process.hrtime.bigint();
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage.rss());
  if (!check.ok) throw new Error(check.reason);
  process.stdout.write(
    JSON.stringify({
      downloadSeconds: Number(downloaded - started) / 1e9,
      verifySeconds: Number(verified - downloaded) / 1e9,
      fileReadAgain: !check.fromDownload,
      peakRssGrowthMiB: (peak - baseline) / MiB,
    }) + '\n',
  );
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
