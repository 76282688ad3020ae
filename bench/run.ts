/**
 * `npm run bench`: throughput and memory of the firmware download (the hot path), and the cost of
 * the per-connection and per-message work, measured against the stand-in on loopback.
 *
 *   node dist/bench/run.js [--sizes 16,64,256] [--runs 3]
 */
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Readable } from 'stream';
import { DownloadsFolder } from '../lib/downloads-folder';
import { signConnection } from '../lib/device-signing';
import { buildUpdateFirmwareCommand, checkedUpdateCommand, parseUpdateFirmwareCommand } from '../lib/ota-messages';
import { ResumableDownload } from '../lib/resumable-download';
import { IotHubSimulator } from '../simulator/iot-hub-simulator';
import { runFleetSection } from './fleet';

const MiB = 1024 * 1024;
const PRODUCT_ID = 'BENCHPROD';

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(name);
  return index >= 0 && process.argv[index + 1] ? process.argv[index + 1] : fallback;
}

/** A firmware stream of `size` pseudo-random bytes, produced in 1 MiB blocks and never held whole. */
function firmwareStream(size: number): { stream: Readable; md5: Promise<string> } {
  const hash = createHash('md5');
  let left = size;
  let resolveMd5: (md5: string) => void = () => undefined;
  const md5 = new Promise<string>((resolve) => (resolveMd5 = resolve));
  const block = randomBytes(MiB);
  let counter = 0;
  const stream = new Readable({
    read() {
      if (left === 0) {
        resolveMd5(hash.digest('hex'));
        this.push(null);
        return;
      }
      const chunk = Buffer.from(block.subarray(0, Math.min(MiB, left)));
      chunk.writeUInt32LE(counter++, 0);
      hash.update(chunk);
      left -= chunk.length;
      this.push(chunk);
    },
  });
  return { stream, md5 };
}

interface DownloadFigures {
  sizeMiB: number;
  scheme: string;
  seconds: number;
  mibPerSecond: number;
  peakRssGrowthMiB: number;
  peakHeapGrowthMiB: number;
}

async function measureDownload(sim: IotHubSimulator, workDir: string, sizeMiB: number, scheme: 'http' | 'https'): Promise<DownloadFigures> {
  const version = `${sizeMiB}.0.0-${scheme}`;
  const { stream, md5 } = firmwareStream(sizeMiB * MiB);
  await sim.console.uploadFirmware(PRODUCT_ID, version, stream, sizeMiB * MiB);
  const md5sum = await md5;
  const directory = path.join(workDir, `downloads-${version}`);
  global.gc?.();
  const before = process.memoryUsage();
  let peakRss = before.rss;
  let peakHeap = before.heapUsed;
  const sampler = setInterval(() => {
    const now = process.memoryUsage();
    peakRss = Math.max(peakRss, now.rss);
    peakHeap = Math.max(peakHeap, now.heapUsed);
  }, 20);
  const started = process.hrtime.bigint();
  const download = new ResumableDownload({
    command: checkedUpdateCommand({ url: sim.firmwareServer.signedUrl(PRODUCT_ID, version, { scheme, ttlSeconds: 3600 }), version, md5sum, file_size: sizeMiB * MiB }),
    folder: new DownloadsFolder(directory),
    ca: sim.certificateAuthority.caCertPem,
  });
  const result = await download.start();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  clearInterval(sampler);
  if (result.md5 !== md5sum) throw new Error(`md5 mismatch in the benchmark download of ${version}`);
  await fs.rm(directory, { recursive: true, force: true });
  await sim.console.deleteFirmware(PRODUCT_ID, version);
  return {
    sizeMiB,
    scheme,
    seconds,
    mibPerSecond: sizeMiB / seconds,
    peakRssGrowthMiB: (peakRss - before.rss) / MiB,
    peakHeapGrowthMiB: (peakHeap - before.heapUsed) / MiB,
  };
}

function operationsPerSecond(label: string, iterations: number, work: () => void): string {
  const started = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) work();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return `${label.padEnd(44)} ${Math.round(iterations / seconds)
    .toLocaleString('en-US')
    .padStart(12)} /s`;
}

async function main(): Promise<void> {
  const sizes = option('--sizes', '16,64,256')
    .split(',')
    .map(Number)
    .filter((size) => size > 0);
  const runs = Number(option('--runs', '3'));
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ota-bench-'));
  const sim = await IotHubSimulator.start({ dataDir: path.join(workDir, 'stand-in') });
  try {
    console.log(`Node ${process.version}, ${os.cpus().length} CPUs, ${Math.round(os.totalmem() / 1024 ** 3)} GiB; best of ${runs} runs per row`);
    console.log('');
    console.log('Firmware download from the stand-in on loopback (stream to disk, MD5 + SHA-256 as bytes arrive, checkpoints):');
    console.log('  size      scheme  seconds   MiB/s   peak RSS growth   peak heap growth');
    for (const scheme of ['http', 'https'] as const) {
      for (const sizeMiB of sizes) {
        let best: DownloadFigures | undefined;
        for (let run = 0; run < runs; run++) {
          const figures = await measureDownload(sim, workDir, sizeMiB, scheme);
          if (!best || figures.seconds < best.seconds) best = { ...figures, peakRssGrowthMiB: Math.max(figures.peakRssGrowthMiB, best?.peakRssGrowthMiB ?? 0) };
        }
        if (!best) continue;
        console.log(
          `  ${`${best.sizeMiB} MiB`.padEnd(9)} ${best.scheme.padEnd(7)} ${best.seconds.toFixed(2).padStart(7)} ${best.mibPerSecond.toFixed(1).padStart(7)} ${`${best.peakRssGrowthMiB.toFixed(1)} MiB`.padStart(17)} ${`${best.peakHeapGrowthMiB.toFixed(1)} MiB`.padStart(18)}`,
        );
      }
    }
    console.log('');
    console.log('Per-connection and per-message work:');
    const secret = randomBytes(16).toString('base64');
    console.log(
      operationsPerSecond('signConnection (HMAC-SHA256 username/password)', 50_000, () => signConnection({ productId: PRODUCT_ID, deviceName: 'dev1' }, secret)),
    );
    const command = JSON.stringify(
      buildUpdateFirmwareCommand({
        version: '1.0.0',
        url: 'https://example.invalid/1_BENCHPROD_1.0.0?sign=abc',
        md5sum: 'b550fe42dec6fe0bc2d66f23e8074a5d',
        file_size: 511774,
      }),
    );
    console.log(operationsPerSecond('parseUpdateFirmwareCommand (strict parse)', 200_000, () => parseUpdateFirmwareCommand(command)));
  } finally {
    await sim.close();
    await fs.rm(workDir, { recursive: true, force: true });
  }
  await runFleetSection(process.argv.slice(2), console.log);
}

main().catch((error: Error) => {
  console.error(error);
  process.exit(1);
});
