/**
 * Run by descriptor-shortage.test.ts under a low `ulimit -n`: takes every free file descriptor,
 * starts a download (which cannot open its file, or a socket), gives the descriptors back after a
 * while, and prints one JSON line with the download's retries and its result or failure.
 *
 *   node descriptor-shortage-child.js <job JSON>
 */
import { openSync, closeSync } from 'fs';
import { DownloadsFolder } from '../../lib/downloads-folder';
import { checkedUpdateCommand } from '../../lib/ota-messages';
import { ResumableDownload, type DownloadRetry } from '../../lib/resumable-download';

interface Job {
  url: string;
  md5sum: string;
  size: number;
  directory: string;
  /** How long the descriptors stay taken. */
  holdMs: number;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as Job;
  const download = new ResumableDownload({
    command: checkedUpdateCommand({ url: job.url, version: '2.0.0', md5sum: job.md5sum, file_size: job.size }),
    folder: new DownloadsFolder(job.directory),
    retryBackoffMs: 10,
  });
  const retries: DownloadRetry[] = [];
  download.on('retry', (retry) => retries.push(retry));
  const held: number[] = [];
  for (;;) {
    try {
      held.push(openSync('/dev/null', 'r'));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EMFILE') break;
      throw error;
    }
  }
  setTimeout(() => {
    for (const fd of held.splice(0)) closeSync(fd);
  }, job.holdMs);
  const outcome = await download.start().then(
    (result) => ({ ok: true, md5: result.md5, size: result.size }),
    (error: Error & { resultCode?: number }) => ({ ok: false, resultCode: error.resultCode, message: error.message }),
  );
  process.stdout.write(JSON.stringify({ held: held.length, retries, outcome }) + '\n');
}

main().catch((error: Error) => {
  process.stderr.write(`${error.stack ?? error.message}\n`);
  process.exit(1);
});
