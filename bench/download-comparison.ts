/**
 * Download + verify of one file, ours against references, each as a whole process timed side by
 * side in the same run: `curl -o` then `md5sum` (the yardstick), a plain Node script, and the
 * pipeline's two steps (bench/download-and-verify.ts). Runs alternate their order; the medians are
 * compared as ratios, which mean something on a shared machine where absolute speeds do not.
 */
import { randomBytes } from 'crypto';
import { createWriteStream, promises as fs } from 'fs';
import * as path from 'path';
import { median, runProcess, timeProcesses } from './process-timing';
import type { ServedFile, StaticFileServer } from './static-file-server';

const MiB = 1024 * 1024;

export interface ComparisonRow {
  sizeMiB: number;
  scheme: 'http' | 'https';
  runs: number;
  curl: { wall: number; cpu: number };
  plainNode: { wall: number; cpu: number };
  ours: { wall: number; cpu: number; download: number; verify: number; peakRssGrowthMiB: number };
  /** Ours with the hashes on the shared hashing thread rather than on the download thread. */
  oursHashingThread: { wall: number; cpu: number };
  /** Ours on a device with firmware keys: the download computes the SHA-256 too and the verify checks an Ed25519 signature. */
  oursSigned: { wall: number; cpu: number; verify: number; fileReadAgain: boolean };
}

/** Writes `size` pseudo-random bytes in 1 MiB blocks (each block different). */
export async function writeRandomFile(filePath: string, size: number): Promise<void> {
  const out = createWriteStream(filePath);
  const block = randomBytes(MiB);
  for (let offset = 0, counter = 0; offset < size; offset += MiB, counter++) {
    const chunk = Buffer.from(block.subarray(0, Math.min(MiB, size - offset)));
    chunk.writeUInt32LE(counter, 0);
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
}

interface OursFigures {
  downloadSeconds: number;
  verifySeconds: number;
  peakRssGrowthMiB: number;
  /** True when the verify step read the file again rather than trust the download's digests. */
  fileReadAgain: boolean;
}

export async function runOurs(
  served: ServedFile,
  url: string,
  directory: string,
  caPath: string | undefined,
  hashing?: 'worker',
  options: { signed?: boolean } = {},
): Promise<OursFigures> {
  const script = path.join(__dirname, 'download-and-verify.js');
  const job = { url, md5sum: served.md5sum, size: served.size, directory, caPath, hashing, signed: options.signed };
  const { stdout } = await runProcess(process.execPath, [script, JSON.stringify(job)]);
  await fs.rm(directory, { recursive: true, force: true });
  return JSON.parse(stdout) as OursFigures;
}

async function runCurlAndMd5sum(served: ServedFile, url: string, file: string, caPath: string | undefined): Promise<void> {
  await runProcess('curl', ['-sS', '--fail', ...(caPath ? ['--cacert', caPath] : []), '-o', file, url]);
  const { stdout } = await runProcess('md5sum', [file]);
  await fs.rm(file, { force: true });
  if (stdout.split(' ')[0] !== served.md5sum) throw new Error('curl + md5sum: md5 mismatch');
}

async function runPlainNode(served: ServedFile, url: string, file: string, caPath: string | undefined): Promise<void> {
  const { stdout } = await runProcess(process.execPath, [path.join(__dirname, 'plain-node-download.js'), url, file, ...(caPath ? [caPath] : [])]);
  await fs.rm(file, { force: true });
  if (stdout.trim() !== served.md5sum) throw new Error('plain Node download: md5 mismatch');
}

export async function compareDownloads(options: {
  server: StaticFileServer;
  workDir: string;
  sizeMiB: number;
  schemes: Array<'http' | 'https'>;
  runs: number;
  caPath: string;
}): Promise<ComparisonRow[]> {
  const source = path.join(options.workDir, `source-${options.sizeMiB}.bin`);
  await writeRandomFile(source, options.sizeMiB * MiB);
  const served = await options.server.serve(`bench-${options.sizeMiB}`, source);
  await fs.rm(source, { force: true });
  const rows: ComparisonRow[] = [];
  try {
    for (const scheme of options.schemes) {
      const url = scheme === 'http' ? served.httpUrl : served.httpsUrl;
      const caPath = scheme === 'https' ? options.caPath : undefined;
      const file = path.join(options.workDir, 'reference.bin');
      const directory = path.join(options.workDir, 'downloads');
      const curl: Array<{ wall: number; cpu: number }> = [];
      const plainNode: Array<{ wall: number; cpu: number }> = [];
      const ours: Array<{ wall: number; cpu: number } & OursFigures> = [];
      const oursHashingThread: Array<{ wall: number; cpu: number }> = [];
      const oursSigned: Array<{ wall: number; cpu: number } & OursFigures> = [];
      const measureCurl = async () => {
        const timed = await timeProcesses(() => runCurlAndMd5sum(served, url, file, caPath));
        curl.push({ wall: timed.wallSeconds, cpu: timed.cpuSeconds });
      };
      const measurePlainNode = async () => {
        const timed = await timeProcesses(() => runPlainNode(served, url, file, caPath));
        plainNode.push({ wall: timed.wallSeconds, cpu: timed.cpuSeconds });
      };
      const measureOurs = async () => {
        const timed = await timeProcesses(() => runOurs(served, url, directory, caPath));
        ours.push({ wall: timed.wallSeconds, cpu: timed.cpuSeconds, ...timed.result });
      };
      const measureOursHashingThread = async () => {
        const timed = await timeProcesses(() => runOurs(served, url, directory, caPath, 'worker'));
        oursHashingThread.push({ wall: timed.wallSeconds, cpu: timed.cpuSeconds });
      };
      const measureOursSigned = async () => {
        const timed = await timeProcesses(() => runOurs(served, url, directory, caPath, undefined, { signed: true }));
        oursSigned.push({ wall: timed.wallSeconds, cpu: timed.cpuSeconds, ...timed.result });
      };
      // One unmeasured round warms the page cache and the server.
      await runCurlAndMd5sum(served, url, file, caPath);
      await runOurs(served, url, directory, caPath);
      for (let run = 0; run < options.runs; run++) {
        const order =
          run % 2 === 0
            ? [measureCurl, measureOurs, measurePlainNode, measureOursHashingThread, measureOursSigned]
            : [measureOursSigned, measureOursHashingThread, measureOurs, measurePlainNode, measureCurl];
        for (const measure of order) await measure();
      }
      rows.push({
        sizeMiB: options.sizeMiB,
        scheme,
        runs: options.runs,
        curl: { wall: median(curl.map((r) => r.wall)), cpu: median(curl.map((r) => r.cpu)) },
        plainNode: { wall: median(plainNode.map((r) => r.wall)), cpu: median(plainNode.map((r) => r.cpu)) },
        ours: {
          wall: median(ours.map((r) => r.wall)),
          cpu: median(ours.map((r) => r.cpu)),
          download: median(ours.map((r) => r.downloadSeconds)),
          verify: median(ours.map((r) => r.verifySeconds)),
          peakRssGrowthMiB: Math.max(...ours.map((r) => r.peakRssGrowthMiB)),
        },
        oursHashingThread: { wall: median(oursHashingThread.map((r) => r.wall)), cpu: median(oursHashingThread.map((r) => r.cpu)) },
        oursSigned: {
          wall: median(oursSigned.map((r) => r.wall)),
          cpu: median(oursSigned.map((r) => r.cpu)),
          verify: median(oursSigned.map((r) => r.verifySeconds)),
          fileReadAgain: oursSigned.some((r) => r.fileReadAgain),
        },
      });
    }
  } finally {
    await served.remove();
  }
  return rows;
}

function ratio(value: number, reference: number): string {
  return reference > 0 ? `${(value / reference).toFixed(2)}×` : 'n/a';
}

export function printComparison(rows: ComparisonRow[], log: (line: string) => void): void {
  log(
    '  size      scheme  curl+md5sum wall/CPU s   plain Node wall/CPU    ours wall/CPU (download + verify s)      ours/curl wall   CPU    peak RSS growth   hashing thread wall/CPU   signed wall/CPU (verify s, file read again)',
  );
  for (const row of rows) {
    const { curl, plainNode, ours, oursHashingThread, oursSigned } = row;
    log(
      [
        `  ${`${row.sizeMiB} MiB`.padEnd(9)}`,
        row.scheme.padEnd(7),
        `${curl.wall.toFixed(2)} / ${curl.cpu.toFixed(2)}`.padEnd(23),
        `${ratio(plainNode.wall, curl.wall)} / ${ratio(plainNode.cpu, curl.cpu)}`.padEnd(22),
        `${ours.wall.toFixed(2)} / ${ours.cpu.toFixed(2)} (${ours.download.toFixed(2)} + ${ours.verify.toFixed(2)})`.padEnd(40),
        ratio(ours.wall, curl.wall).padStart(15),
        ratio(ours.cpu, curl.cpu).padStart(6),
        `${ours.peakRssGrowthMiB.toFixed(1)} MiB`.padStart(18),
        `   ${ratio(oursHashingThread.wall, curl.wall)} / ${ratio(oursHashingThread.cpu, curl.cpu)}`.padEnd(27),
        `${ratio(oursSigned.wall, curl.wall)} / ${ratio(oursSigned.cpu, curl.cpu)} (${oursSigned.verify.toFixed(3)}, ${oursSigned.fileReadAgain ? 'yes' : 'no'})`,
      ].join(' '),
    );
  }
}
