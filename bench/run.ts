/**
 * `npm run bench`: the firmware download and verify (the hot path) as ratios against curl and
 * md5sum measured side by side in the same run, its memory as the file grows, a resume after a
 * cut, and the cost of the per-connection and per-message work.
 *
 *   node dist/bench/run.js [--sizes 64,256] [--schemes http,https] [--runs 5] [--memory-sizes 64,1024]
 *                          [--resume-sizes 256] [--no-nginx]
 *
 * `--memory-sizes 0` and `--resume-sizes 0` leave those parts out (to iterate on the comparison alone).
 */
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { signConnection } from '../lib/device-signing';
import { buildUpdateFirmwareCommand, parseUpdateFirmwareCommand } from '../lib/ota-messages';
import { IotHubSimulator } from '../simulator/iot-hub-simulator';
import { compareDownloads, printComparison, runOurs, writeRandomFile, type ComparisonRow } from './download-comparison';
import { measureResume } from './resume-after-cut';
import { startStaticFileServer } from './static-file-server';
import { runFleetSection } from './fleet';

const MiB = 1024 * 1024;
const PRODUCT_ID = 'BENCHPROD';

function numbers(text: string): number[] {
  return text
    .split(',')
    .map(Number)
    .filter((value) => value > 0);
}

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(name);
  return index >= 0 && process.argv[index + 1] ? process.argv[index + 1] : fallback;
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
  const sizes = numbers(option('--sizes', '64,256'));
  const memorySizes = numbers(option('--memory-sizes', '64,1024'));
  const runs = Number(option('--runs', '5'));
  const schemes = option('--schemes', 'http,https')
    .split(',')
    .filter((scheme): scheme is 'http' | 'https' => scheme === 'http' || scheme === 'https');
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ota-bench-'));
  const sim = await IotHubSimulator.start({ dataDir: path.join(workDir, 'stand-in') });
  const server = await startStaticFileServer(sim, workDir, PRODUCT_ID, !process.argv.includes('--no-nginx'));
  const log = (line = '') => console.log(line);
  try {
    log(`Node ${process.version}, ${os.cpus().length} CPUs, ${Math.round(os.totalmem() / 1024 ** 3)} GiB; medians of ${runs} alternating runs per row`);
    log(`Server: ${server.description}, on loopback. Every figure is a whole process: spawn to exit, CPU = user + system.`);
    log('');
    log('Download + verify, ours (the download on the download thread, then the ota-verify check) against curl -o + md5sum of the same file:');
    const comparison: ComparisonRow[] = [];
    for (const sizeMiB of sizes) comparison.push(...(await compareDownloads({ server, workDir, sizeMiB, schemes, runs, caPath: sim.certificateAuthority.caCertPath })));
    printComparison(comparison, log);

    if (memorySizes.length > 0) {
      log('');
      log('Peak RSS growth of our download + verify process over its RSS before the download (http):');
    }
    for (const sizeMiB of memorySizes) {
      const source = path.join(workDir, `memory-${sizeMiB}.bin`);
      await writeRandomFile(source, sizeMiB * MiB);
      const served = await server.serve(`memory-${sizeMiB}`, source);
      await fs.rm(source, { force: true });
      try {
        const growth: number[] = [];
        for (let run = 0; run < Math.min(runs, 3); run++)
          growth.push((await runOurs(served, served.httpUrl, path.join(workDir, 'downloads'), undefined)).peakRssGrowthMiB);
        log(`  ${`${sizeMiB} MiB`.padEnd(9)} ${`${Math.max(...growth).toFixed(1)} MiB`.padStart(10)} (largest of ${growth.length})`);
      } finally {
        await served.remove();
      }
    }

    const resumeSizes = numbers(option('--resume-sizes', '256'));
    if (resumeSizes.length > 0) {
      log('');
      log("Resume after a cut at 90 % (the stand-in's firmware server closes the connection; a new download resumes from the checkpoint):");
      log('  size      kept on disk     fetched again   re-hash of the kept bytes   md5sum of the file');
    }
    for (const sizeMiB of resumeSizes) {
      const figures = await measureResume(sim, workDir, PRODUCT_ID, sizeMiB);
      log(
        `  ${`${sizeMiB} MiB`.padEnd(9)} ${`${figures.keptBytes} B`.padStart(14)} ${`${figures.fetchedAgainBytes} B`.padStart(15)}   ${`${figures.rehashMiBPerSecond.toFixed(0)} MiB/s (${figures.rehashSeconds.toFixed(2)} s)`.padStart(25)}   ${`${figures.md5sumMiBPerSecond.toFixed(0)} MiB/s`.padStart(16)}`,
      );
    }

    log('');
    log('Per-connection and per-message work:');
    const secret = randomBytes(16).toString('base64');
    log(operationsPerSecond('signConnection (HMAC-SHA256 username/password)', 50_000, () => signConnection({ productId: PRODUCT_ID, deviceName: 'dev1' }, secret)));
    const command = JSON.stringify(
      buildUpdateFirmwareCommand({
        version: '1.0.0',
        url: 'https://example.invalid/1_BENCHPROD_1.0.0?sign=abc',
        md5sum: 'b550fe42dec6fe0bc2d66f23e8074a5d',
        file_size: 511774,
      }),
    );
    log(operationsPerSecond('parseUpdateFirmwareCommand (strict parse)', 200_000, () => parseUpdateFirmwareCommand(command)));
  } finally {
    await server.close();
    await sim.close();
    await fs.rm(workDir, { recursive: true, force: true });
  }
  await runFleetSection(process.argv.slice(2), console.log);
}

main().catch((error: Error) => {
  console.error(error);
  process.exit(1);
});
