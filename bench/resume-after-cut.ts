/**
 * A download cut at 90 % and resumed by a new ResumableDownload (as after a restart): how many
 * bytes are fetched a second time, and how fast the bytes already on disk are hashed again before
 * the rest is asked for. The stand-in's firmware server cuts the connection (its fault knob).
 */
import { createReadStream, promises as fs } from 'fs';
import * as path from 'path';
import { DownloadsFolder } from '../lib/downloads-folder';
import { checkedUpdateCommand } from '../lib/ota-messages';
import { ResumableDownload } from '../lib/resumable-download';
import type { IotHubSimulator } from '../simulator/iot-hub-simulator';
import { writeRandomFile } from './download-comparison';
import { runProcess, timeProcesses } from './process-timing';
import { md5OfFile } from './static-file-server';

const MiB = 1024 * 1024;

export interface ResumeFigures {
  sizeMiB: number;
  cutAtByte: number;
  keptBytes: number;
  fetchedAgainBytes: number;
  rehashSeconds: number;
  rehashMiBPerSecond: number;
  /** md5sum's rate over the same file, read from the page cache as the re-hash was. */
  md5sumMiBPerSecond: number;
}

export async function measureResume(sim: IotHubSimulator, workDir: string, productId: string, sizeMiB: number): Promise<ResumeFigures> {
  const size = sizeMiB * MiB;
  const version = `resume-${sizeMiB}`;
  const source = path.join(workDir, `${version}.bin`);
  await writeRandomFile(source, size);
  const md5sum = await md5OfFile(source);
  await sim.console.uploadFirmware(productId, version, createReadStream(source), { contentLength: size });
  await fs.rm(source, { force: true });
  const cutAtByte = Math.floor(size * 0.9);
  await sim.console.setFirmwareFaults(productId, version, { closeAfterBytes: cutAtByte });
  const folder = new DownloadsFolder(path.join(workDir, `downloads-${version}`));
  const command = checkedUpdateCommand({ url: sim.firmwareServer.signedUrl(productId, version, { scheme: 'http', ttlSeconds: 3600 }), version, md5sum, file_size: size });
  try {
    const first = new ResumableDownload({ command, folder, maxRetries: 0 });
    await first.start().then(
      () => {
        throw new Error('the cut download finished');
      },
      () => undefined,
    );
    const receivedBeforeCut = (await fs.stat(folder.firmwarePath(version))).size;
    await sim.console.setFirmwareFaults(productId, version, {});
    const second = new ResumableDownload({ command, folder });
    let rehashSeconds = 0;
    const started = process.hrtime.bigint();
    second.once('resumed', () => (rehashSeconds = Number(process.hrtime.bigint() - started) / 1e9));
    const result = await second.start();
    if (result.md5 !== md5sum) throw new Error('the resumed download has another MD5');
    const md5sumRun = await timeProcesses(() => runProcess('md5sum', [result.path]));
    return {
      sizeMiB,
      cutAtByte,
      keptBytes: result.resumedFromByte,
      fetchedAgainBytes: receivedBeforeCut + result.bytesDownloaded - size,
      rehashSeconds,
      rehashMiBPerSecond: rehashSeconds > 0 ? result.resumedFromByte / MiB / rehashSeconds : Infinity,
      md5sumMiBPerSecond: sizeMiB / md5sumRun.wallSeconds,
    };
  } finally {
    await fs.rm(folder.directory, { recursive: true, force: true });
    await sim.console.deleteFirmware(productId, version);
  }
}
