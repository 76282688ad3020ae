import { strict as assert } from 'assert';
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import { buildReportVersionResponse, checkedUpdateCommand, type UpdateCommand } from '../../lib/ota-messages';
import { DownloadSlots } from '../../lib/download-slots';
import { DownloadAbortedError } from '../../lib/resumable-download';
import { UpdateFailure } from '../../lib/update-failure';
import { UpdateAlreadyEndedError, UpdateStepError, type UpdateView } from '../../lib/update-session';
import { fileExists, hexDigest, placeDownloadedFirmware } from '../support/downloaded-firmware-fixture';
import { firmwareBytes, md5Of, startFirmwareFixture, type FirmwareFixture } from '../support/firmware-fixture';
import { RecordingDevice } from '../support/recording-device';

const PRODUCT = 'PRODUCT1';

describe('UpdateSession', function () {
  let device: RecordingDevice;
  let firmware: Buffer;
  let firmwarePath: string;
  let checkpointPath: string;

  const commandOf = (version: string, bytes: Buffer, url = 'https://example.com/fw?sign=abc'): UpdateCommand =>
    checkedUpdateCommand({ version, url, md5sum: hexDigest('md5', bytes), file_size: bytes.length });

  beforeEach(async function () {
    device = await RecordingDevice.create('1.0.0');
    firmware = randomBytes(64 * 1024 + 7);
    ({ filePath: firmwarePath, checkpointPath } = await placeDownloadedFirmware(device.downloadsDir, '2.0.0', firmware));
  });

  afterEach(async function () {
    await device.close();
  });

  describe('taking commands', function () {
    it('starts an update for a new command, and keeps it for the same command pushed again with a new URL', async function () {
      assert.equal(await device.session.receive(commandOf('2.0.0', firmware)), 'started');
      assert.equal(device.session.current?.state, 'received');
      const again = commandOf('2.0.0', firmware, 'https://example.com/fw?sign=fresh');
      assert.equal(await device.session.receive(again), 'duplicate');
      assert.equal(device.session.current?.command.url, 'https://example.com/fw?sign=fresh');
      assert.deepEqual(device.reports, [], 'nothing is reported for a re-push');
    });

    it('ends the update of another version with one fail report before it starts the new one', async function () {
      await device.session.receive(commandOf('2.0.0', firmware));
      assert.equal(await device.session.receive(commandOf('3.0.0', firmware)), 'replaced');
      assert.deepEqual(
        device.reports.map((report) => [report.message.report.version, report.message.report.progress]),
        [['2.0.0', { state: 'fail', result_code: '-5', result_msg: 'superseded by version 3.0.0' }]],
      );
      assert.equal(device.session.current?.version, '3.0.0');
    });

    it('tells every listener when a new update starts', async function () {
      const started: UpdateView[] = [];
      device.session.on('started', (view) => started.push(view));
      await device.session.receive(commandOf('2.0.0', firmware));
      await device.session.receive(commandOf('2.0.0', firmware));
      assert.deepEqual(
        started.map((view) => view.version),
        ['2.0.0'],
      );
    });

    it('answers a command it does not take up with done or fail, starting nothing', async function () {
      await device.session.decline('1.0.0', { state: 'done' });
      await device.session.decline('0.9.0', { state: 'fail', resultCode: -5, reason: 'downgrade from 1.0.0 to 0.9.0 refused' });
      assert.deepEqual(device.states(), ['done', 'fail']);
      assert.equal(device.session.current, undefined);
    });
  });

  describe('results', function () {
    beforeEach(async function () {
      await device.session.receive(commandOf('2.0.0', firmware));
    });

    it('reports burning and waits for the PUBACK, leaving the update going', async function () {
      await device.session.reportBurning('2.0.0');
      assert.deepEqual(device.reports[0].message.report, { version: '2.0.0', progress: { state: 'burning', result_code: '0', result_msg: '' } });
      assert.equal(device.reports[0].options.timeoutMs, 0, 'waits for ever');
      assert.equal(device.session.current?.state, 'burning');
      assert.ok(await fileExists(firmwarePath));
    });

    it('does not settle a fail before its PUBACK, and releases the update only then', async function () {
      device.holdPubacks();
      let settled = false;
      const reported = device.session.reportFail('2.0.0', -5, 'flash write error').then(() => (settled = true));
      await device.whenReported();
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(settled, false);
      assert.ok(device.session.current, 'not released before the PUBACK');
      device.releasePubacks();
      await reported;
      assert.equal(device.session.current, undefined);
    });

    it('after done stores the new running version, removes the download, ends the update and reports the version', async function () {
      const acknowledged = await device.session.reportDone('2.0.0');
      assert.deepEqual(device.states(), ['done']);
      assert.equal(await device.currentVersion(), '2.0.0');
      assert.equal(await fileExists(firmwarePath), false);
      assert.equal(await fileExists(checkpointPath), false);
      assert.equal(device.session.current, undefined);
      assert.deepEqual(device.versionReports, ['2.0.0']);
      assert.deepEqual(acknowledged.versionReport, buildReportVersionResponse('2.0.0'));
      assert.equal(acknowledged.versionReportError, undefined);
    });

    it('stores the running version before done is acknowledged, so a restart then reports the new version', async function () {
      device.holdPubacks();
      const reported = device.session.reportDone('2.0.0');
      await device.whenReported();
      assert.equal(await device.currentVersion(), '2.0.0');
      device.releasePubacks();
      await reported;
    });

    it('ends with fail -5 when the new running version cannot be stored, and the same command then starts again', async function () {
      // A folder where the file should be: the write fails as on a read-only or full state folder, even for root.
      await fs.mkdir(path.join(device.stateDir, 'running-version.json', 'in-the-way'), { recursive: true });
      const failure = await device.session.reportDone('2.0.0').then(
        () => assert.fail('done must not be reported'),
        (error: unknown) => error,
      );
      assert.ok(failure instanceof UpdateFailure);
      assert.equal(failure.resultCode, -5);
      assert.deepEqual(device.states(), ['fail']);
      const progress = device.reports[0].message.report.progress;
      assert.match(progress.result_msg, /^installed, but cannot record the running version: /);
      assert.doesNotMatch(progress.result_msg, new RegExp(device.stateDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'no local path goes to the cloud');
      assert.equal(device.session.current, undefined);
      assert.equal(await device.session.receive(commandOf('2.0.0', firmware)), 'started');
    });

    it('keeps the download when told to, and skips report_version when told to', async function () {
      const acknowledged = await device.session.reportDone('2.0.0', { keepFile: true, reportVersion: false });
      assert.ok(await fileExists(firmwarePath));
      assert.ok(await fileExists(checkpointPath));
      assert.deepEqual(device.versionReports, []);
      assert.equal(acknowledged.versionReport, undefined);
    });

    it('says when the cloud refuses the new version', async function () {
      device.versionResponse = (version) => buildReportVersionResponse(version, -1, 'unknown version');
      const acknowledged = await device.session.reportDone('2.0.0');
      assert.equal(acknowledged.versionReport?.result_code, -1);
      assert.match(acknowledged.versionReportError?.message ?? '', /refused version 2.0.0 \(-1\): unknown version/);
    });

    it('reports fail with the code and reason given, leaving the download for another try', async function () {
      await device.session.reportFail('2.0.0', -1, 'flash write error at 0x8000');
      assert.deepEqual(device.reports[0].message.report.progress, { state: 'fail', result_code: '-1', result_msg: 'flash write error at 0x8000' });
      assert.equal(await device.currentVersion(), '1.0.0');
      assert.ok(await fileExists(firmwarePath));
    });

    it('refuses a second final report for an update that has ended, sending nothing', async function () {
      await device.session.reportFail('2.0.0', -5, 'burn failed');
      await assert.rejects(device.session.reportDone('2.0.0'), UpdateAlreadyEndedError);
      await assert.rejects(device.session.reportFail('2.0.0', -5, 'again'), /has already ended with fail -5 \(burn failed\)/);
      assert.deepEqual(device.states(), ['fail']);
      assert.equal(await device.currentVersion(), '1.0.0');
    });

    it('releases the update even when the fail report cannot be sent, and says why', async function () {
      device.failReports = new Error('connection closed');
      await assert.rejects(device.session.reportFail('2.0.0', -5, 'burn failed'), /connection closed/);
      assert.equal(device.session.current, undefined);
    });

    it('strips control characters from a reason before it goes to the cloud', async function () {
      await device.session.reportFail('2.0.0', -5, 'line one\r\nforged: line two');
      assert.equal(device.reports[0].message.report.progress.result_msg, 'line one\\u000d\\u000aforged: line two');
    });
  });

  describe('verification', function () {
    beforeEach(async function () {
      await device.session.receive(commandOf('2.0.0', firmware));
    });

    it("passes a file whose MD5 matches the command's, read from disk when no download of this session wrote it, keeping the file", async function () {
      const result = await device.session.verify('2.0.0', { filePath: firmwarePath });
      assert.ok(result.ok);
      assert.equal(result.fromDownload, false);
      assert.equal(result.digest.md5, hexDigest('md5', firmware));
      assert.equal(result.digest.sha256, undefined, 'no SHA-256 was asked for');
      assert.ok(await fileExists(firmwarePath));
      assert.equal(device.session.current?.state, 'verified');
      assert.deepEqual(device.reports, []);
    });

    it('checks the bytes on disk against the md5sum of the command, not of the message', async function () {
      await fs.writeFile(firmwarePath, Buffer.concat([firmware.subarray(0, 100), Buffer.from('x'), firmware.subarray(101)]));
      const result = await device.session.verify('2.0.0', { filePath: firmwarePath, md5sum: hexDigest('md5', firmware) });
      assert.ok(!result.ok);
      assert.equal(result.resultCode, -4);
    });

    it('on an MD5 mismatch reports fail -4 once, removes the file and its checkpoint and ends the update', async function () {
      await fs.writeFile(firmwarePath, firmware.subarray(0, 1000));
      const result = await device.session.verify('2.0.0', { filePath: firmwarePath });
      assert.ok(!result.ok);
      assert.equal(result.resultCode, -4);
      assert.match(result.reason, /^md5 mismatch: expected [0-9a-f]{32}, got [0-9a-f]{32} \(file has 1000 of 65543 bytes\)$/);
      assert.deepEqual(device.reports[0].message.report.progress, { state: 'fail', result_code: '-4', result_msg: result.reason });
      assert.equal(device.reports.length, 1);
      assert.equal(await fileExists(firmwarePath), false);
      assert.equal(await fileExists(checkpointPath), false);
      assert.equal(device.session.current, undefined);
    });

    it('checks an optional SHA-256 as well', async function () {
      const result = await device.session.verify('2.0.0', { filePath: firmwarePath, sha256: '0'.repeat(64) });
      assert.ok(!result.ok);
      assert.match(result.reason, /^sha256 mismatch/);
    });

    it('fails a missing file with a clear reason that names no local path, reported as fail -5', async function () {
      await fs.rm(firmwarePath);
      const result = await device.session.verify('2.0.0', { filePath: firmwarePath });
      assert.ok(!result.ok);
      assert.equal(result.reason, 'firmware file FW_2.0.0.bin is missing');
      assert.deepEqual(device.reports[0].message.report.progress, { state: 'fail', result_code: '-5', result_msg: 'firmware file FW_2.0.0.bin is missing' });
    });

    it('never removes a failing file outside the downloads folder', async function () {
      const outside = await fs.mkdtemp(path.join(os.tmpdir(), 'user-firmware-'));
      try {
        const userFile = path.join(outside, 'my-firmware.bin');
        await fs.writeFile(userFile, Buffer.from('not the firmware'));
        const result = await device.session.verify('2.0.0', { filePath: userFile });
        assert.ok(!result.ok);
        assert.ok(await fileExists(userFile));
      } finally {
        await fs.rm(outside, { recursive: true, force: true });
      }
    });

    it("verifies a version it is not updating against the message's md5sum", async function () {
      const other = randomBytes(1000);
      const { filePath } = await placeDownloadedFirmware(device.downloadsDir, '2.5.0', other);
      const result = await device.session.verify('2.5.0', { filePath, md5sum: hexDigest('md5', other) });
      assert.ok(result.ok);
      await assert.rejects(device.session.verify('2.6.0', { filePath }), UpdateStepError);
    });
  });

  describe('downloads', function () {
    let fixture: FirmwareFixture;
    let bytes: Buffer;
    const servers: http.Server[] = [];

    beforeEach(async function () {
      fixture = await startFirmwareFixture();
      bytes = firmwareBytes(512 * 1024 + 5);
      await fixture.upload(PRODUCT, '3.0.0', bytes);
    });

    afterEach(async function () {
      for (const server of servers.splice(0)) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
      await fixture.close();
    });

    const downloadCommand = (url = fixture.url(PRODUCT, '3.0.0', { scheme: 'http' })) =>
      checkedUpdateCommand({ version: '3.0.0', url, md5sum: md5Of(bytes), file_size: bytes.length });

    async function startServer(handler: http.RequestListener): Promise<string> {
      const server = http.createServer(handler);
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    }

    it('downloads the firmware of the update, reporting downloading 0 first and 100 last', async function () {
      await device.session.receive(downloadCommand());
      const result = await device.session.download('3.0.0', { retryBackoffMs: 10 });
      assert.ok(result);
      assert.equal(result.md5, md5Of(bytes));
      assert.equal(device.session.current?.state, 'downloaded');
      const percents = device.reports.map((report) => report.message.report.progress.percent);
      assert.equal(percents[0], '0');
      assert.equal(percents[percents.length - 1], '100');
    });

    it("trusts the download's MD5 while the file is the one it finished, and reads the file again once it changed", async function () {
      await device.session.receive(downloadCommand());
      const result = await device.session.download('3.0.0', { retryBackoffMs: 10 });
      assert.ok(result);
      const trusted = await device.session.verify('3.0.0', { filePath: result.path });
      assert.ok(trusted.ok && trusted.fromDownload, 'the unchanged file is not read again');
      const reread = await device.session.verify('3.0.0', { filePath: result.path, reread: true });
      assert.ok(reread.ok && !reread.fromDownload, 'a re-read asked for reads the file');
      // The same size, another byte, another modification time: the kind of change a stale digest would miss.
      const changed = Buffer.from(bytes);
      changed[1000] ^= 0xff;
      await fs.writeFile(result.path, changed);
      await fs.utimes(result.path, new Date(), new Date(Date.now() + 5000));
      const check = await device.session.verify('3.0.0', { filePath: result.path });
      assert.ok(!check.ok);
      assert.equal(check.resultCode, -4);
      assert.match(check.reason, /^md5 mismatch/);
    });

    it('computes the SHA-256 as the bytes arrive once a verify step will check one, and checks it without reading the file', async function () {
      const release = device.session.expectSha256Checks();
      await device.session.receive(downloadCommand());
      const result = await device.session.download('3.0.0', { retryBackoffMs: 10 });
      release();
      assert.ok(result);
      assert.equal(result.sha256, hexDigest('sha256', bytes));
      const check = await device.session.verify('3.0.0', { filePath: result.path, sha256: hexDigest('sha256', bytes).toUpperCase() });
      assert.ok(check.ok && check.fromDownload);
      assert.equal(check.digest.sha256, hexDigest('sha256', bytes));
    });

    it('checks a SHA-256 nobody announced by reading the file for it alone', async function () {
      await device.session.receive(downloadCommand());
      const result = await device.session.download('3.0.0', { retryBackoffMs: 10 });
      assert.ok(result);
      assert.equal(result.sha256, undefined);
      const wrong = hexDigest('sha256', Buffer.from('another firmware'));
      const check = await device.session.verify('3.0.0', { filePath: result.path, sha256: wrong });
      assert.ok(!check.ok);
      assert.equal(check.resultCode, -4);
      assert.equal(check.reason, `sha256 mismatch: expected ${wrong}, got ${hexDigest('sha256', bytes)}`);
    });

    it('refuses to download a version that no update is under way for', async function () {
      await assert.rejects(device.session.download('3.0.0'), /no update to it is under way/);
      await device.session.receive(downloadCommand());
      await assert.rejects(device.session.download('4.0.0'), /the update under way is to 3.0.0/);
    });

    it('uses the URL of a command pushed again from the next request on', async function () {
      let firstRequests = 0;
      let cut: () => void = () => undefined;
      const firstUrl = await startServer((request, response) => {
        firstRequests += 1;
        if (firstRequests > 1) {
          // The first URL has expired by now.
          response.writeHead(403).end();
          return;
        }
        response.writeHead(200, { 'Content-Length': String(bytes.length) });
        response.write(bytes.subarray(0, 200 * 1024));
        cut = () => response.destroy();
      });
      await device.session.receive(downloadCommand(`${firstUrl}/fw`));
      const downloading = device.session.download('3.0.0', { retryBackoffMs: 10, readTimeoutMs: 60_000, progressIntervalMs: 0 });
      while (firstRequests === 0 || (device.session.current?.percent ?? 0) === 0) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(await device.session.receive(downloadCommand()), 'duplicate');
      cut();
      const result = await downloading;
      assert.equal(result?.md5, md5Of(bytes));
      assert.equal(firstRequests, 1, 'the expired URL is not asked again');
      assert.equal(device.states().filter((state) => state === 'fail').length, 0);
    });

    it('reports a failed download once, with its code, and releases the update', async function () {
      await device.session.receive(downloadCommand(fixture.url(PRODUCT, '3.0.0', { scheme: 'http', ttlSeconds: -10 })));
      const failure = await device.session.download('3.0.0').catch((error: unknown) => error);
      assert.ok(failure instanceof UpdateFailure);
      assert.equal(failure.resultCode, -3);
      assert.deepEqual(
        device.states().filter((state) => state !== 'downloading'),
        ['fail'],
      );
      assert.equal(device.session.current, undefined);
      assert.equal(await device.session.receive(downloadCommand()), 'started');
    });

    it('a cancel stops the download, removes its file and reports fail -5 once', async function () {
      await fixture.setFaults(PRODUCT, '3.0.0', { throttleBytesPerSecond: 64 * 1024 });
      await device.session.receive(downloadCommand());
      const downloading = device.session.download('3.0.0');
      while ((device.session.current?.percent ?? 0) === 0) await new Promise((resolve) => setTimeout(resolve, 20));
      await device.session.cancel('cancelled by the operator');
      await assert.rejects(downloading, (error: unknown) => error instanceof UpdateFailure && error.reason === 'cancelled by the operator');
      assert.deepEqual(
        device.reports.filter((report) => report.message.report.progress.state === 'fail').map((report) => report.message.report.progress.result_msg),
        ['cancelled by the operator'],
      );
      assert.equal(await fileExists(path.join(device.downloadsDir, 'FW_3.0.0.bin')), false);
    });

    it('a stopped download keeps its file, and the same command pushed again starts it again', async function () {
      await fixture.setFaults(PRODUCT, '3.0.0', { throttleBytesPerSecond: 64 * 1024 });
      await device.session.receive(downloadCommand());
      const downloading = device.session.download('3.0.0');
      while ((device.session.current?.percent ?? 0) === 0) await new Promise((resolve) => setTimeout(resolve, 20));
      await device.session.stopDownload('the node was stopped');
      await assert.rejects(downloading, DownloadAbortedError);
      assert.ok(await fileExists(path.join(device.downloadsDir, 'FW_3.0.0.bin')));
      assert.equal(await device.session.receive(downloadCommand()), 'resumed');
      await fixture.setFaults(PRODUCT, '3.0.0', {});
      const result = await device.session.download('3.0.0');
      assert.ok(result && result.resumedFromByte > 0, 'continues from the bytes on disk');
      assert.equal(device.states().filter((state) => state === 'fail').length, 0);
    });

    it('waits for a slot of the shared download limit, saying it is queued, and starts once the other download ends', async function () {
      const slots = new DownloadSlots(1);
      await device.close();
      device = await RecordingDevice.create('1.0.0', { downloadSlots: slots });
      const other = await RecordingDevice.create('1.0.0', { downloadSlots: slots });
      try {
        await fixture.setFaults(PRODUCT, '3.0.0', { throttleBytesPerSecond: 256 * 1024 });
        await device.session.receive(downloadCommand());
        await other.session.receive(downloadCommand());
        const first = device.session.download('3.0.0');
        while ((device.session.current?.percent ?? -1) < 0) await new Promise((resolve) => setTimeout(resolve, 10));
        let queued = false;
        const second = other.session.download('3.0.0', {}, { queued: () => (queued = true) });
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.equal(queued, true);
        assert.equal(other.reports.length, 0, 'nothing reported while it waits');
        await fixture.setFaults(PRODUCT, '3.0.0', {});
        assert.equal((await first)?.md5, md5Of(bytes));
        assert.equal((await second)?.md5, md5Of(bytes));
      } finally {
        await other.close();
      }
    });

    it('ends an update that outlives its deadline with fail -1 while it downloads', async function () {
      await device.close();
      device = await RecordingDevice.create('1.0.0', { deadlineMs: 300 });
      await fixture.setFaults(PRODUCT, '3.0.0', { throttleBytesPerSecond: 16 * 1024 });
      await device.session.receive(downloadCommand());
      const failure = await device.session.download('3.0.0').catch((error: unknown) => error);
      assert.ok(failure instanceof UpdateFailure);
      assert.equal(failure.resultCode, -1);
      const fails = device.reports.filter((report) => report.message.report.progress.state === 'fail');
      assert.deepEqual(
        fails.map((report) => report.message.report.progress),
        [{ state: 'fail', result_code: '-1', result_msg: 'download did not finish within 1 s' }],
      );
      assert.equal(device.session.current, undefined);
      assert.ok(await fileExists(path.join(device.downloadsDir, 'FW_3.0.0.bin')), 'the bytes on disk stay for a later try');
    });
  });
});
