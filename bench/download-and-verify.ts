/**
 * One firmware update's two file steps as the pipeline runs them, in a process of its own so that
 * it is timed like curl and md5sum: the download (on the download thread, into a downloads folder) and
 * then the check `ota-verify` makes. Prints one JSON line: the times of the two steps and the peak
 * RSS growth over the process's RSS before the download.
 *
 *   node dist/bench/download-and-verify.js '{"url":…,"md5sum":…,"size":…,"directory":…,"ca":…}'
 */
import { promises as fs } from 'fs';
import { DownloadsFolder } from '../lib/downloads-folder';
import { checkFirmwareFile } from '../lib/firmware-verification';
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
}

const MiB = 1024 * 1024;

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as Job;
  const ca = job.caPath ? await fs.readFile(job.caPath, 'utf8') : undefined;
  const version = '1.0.0';
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
  });
  const result = await download.start();
  const downloaded = process.hrtime.bigint();
  // As the update session passes it: what the download knows of the file it finished.
  const check = await checkFirmwareFile({ version, filePath: result.path, md5sum: job.md5sum, fileSize: job.size }, { downloaded: result, hashing: job.hashing });
  const verified = process.hrtime.bigint();
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage.rss());
  if (!check.ok) throw new Error(check.reason);
  process.stdout.write(
    JSON.stringify({
      downloadSeconds: Number(downloaded - started) / 1e9,
      verifySeconds: Number(verified - downloaded) / 1e9,
      peakRssGrowthMiB: (peak - baseline) / MiB,
    }) + '\n',
  );
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
