import { strict as assert } from 'assert';
import { spawn } from 'child_process';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { descriptorShortageCode, retryDuringDescriptorShortage, shortageRetryDelayMs } from '../../lib/descriptor-shortage';
import type { DownloadRetry } from '../../lib/resumable-download';
import { firmwareBytes, md5Of, startFirmwareFixture, type FirmwareFixture } from '../support/firmware-fixture';

const PRODUCT = 'PRODUCT01';

interface ChildReport {
  held: number;
  retries: DownloadRetry[];
  outcome: { ok: boolean; md5?: string; size?: number; resultCode?: number; message?: string };
}

/** Runs the child under `ulimit -n <limit>` (a real limit of the kernel, not a stub). */
function runUnderDescriptorLimit(limit: number, job: object): Promise<ChildReport> {
  const script = path.join(__dirname, '..', 'support', 'descriptor-shortage-child.js');
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', `ulimit -n ${limit} && exec "$0" "$@"`, process.execPath, script, JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0) reject(new Error(`the child ended with ${code}: ${stderr}`));
      else resolve(JSON.parse(stdout) as ChildReport);
    });
  });
}

describe('running out of file descriptors', function () {
  this.timeout(60_000);

  it('is recognised by its code, also as the cause of another error', () => {
    assert.equal(descriptorShortageCode(Object.assign(new Error('x'), { code: 'EMFILE' })), 'EMFILE');
    assert.equal(descriptorShortageCode(new Error('wrapped', { cause: Object.assign(new Error('x'), { code: 'ENFILE' }) })), 'ENFILE');
    assert.equal(descriptorShortageCode(Object.assign(new Error('x'), { code: 'ENOSPC' })), undefined);
  });

  it('retries with a jittered backoff that grows to 30 s, and lets other errors through at once', async () => {
    assert.equal(
      shortageRetryDelayMs(1, () => 0),
      250,
    );
    assert.equal(
      shortageRetryDelayMs(1, () => 0.999999),
      500,
    );
    assert.equal(
      shortageRetryDelayMs(20, () => 0),
      15_000,
    );
    let calls = 0;
    const told: string[] = [];
    const value = await retryDuringDescriptorShortage(
      async () => {
        calls += 1;
        if (calls < 3) throw Object.assign(new Error('too many open files'), { code: 'EMFILE' });
        return 'opened';
      },
      { random: () => 0, onRetry: ({ attempt, code }) => told.push(`${attempt} ${code}`) },
    );
    assert.equal(value, 'opened');
    assert.deepEqual(told, ['1 EMFILE', '2 EMFILE']);
    await assert.rejects(
      retryDuringDescriptorShortage(async () => {
        throw Object.assign(new Error('gone'), { code: 'ENOENT' });
      }),
      { code: 'ENOENT' },
    );
  });

  describe('during a download, in a process with a real descriptor limit', () => {
    let fixture: FirmwareFixture;
    let directory: string;
    const bytes = firmwareBytes(256 * 1024 + 3);

    before(async () => {
      fixture = await startFirmwareFixture();
      await fixture.upload(PRODUCT, '2.0.0', bytes);
    });

    after(async () => {
      await fixture.close();
    });

    beforeEach(async () => {
      directory = await fs.mkdtemp(path.join(os.tmpdir(), 'descriptor-shortage-'));
    });

    afterEach(async () => {
      await fs.rm(directory, { recursive: true, force: true });
    });

    it('waits for descriptors to come back, saying so, and then finishes the download', async () => {
      const report = await runUnderDescriptorLimit(64, {
        url: fixture.url(PRODUCT, '2.0.0', { scheme: 'http' }),
        md5sum: md5Of(bytes),
        size: bytes.length,
        directory,
        holdMs: 1500,
      });
      assert.ok(report.outcome.ok, `the download failed: ${report.outcome.message}`);
      assert.equal(report.outcome.md5, md5Of(bytes));
      const shortages = report.retries.filter((retry) => retry.descriptorShortage);
      assert.ok(shortages.length >= 1, `retries: ${JSON.stringify(report.retries)}`);
      assert.match(shortages[0].reason, /^out of file descriptors \(EMFILE\)$/);
      assert.deepEqual(
        report.retries.filter((retry) => !retry.descriptorShortage),
        [],
        'no ordinary retry was spent on it',
      );
    });
  });
});
