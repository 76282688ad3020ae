import { strict as assert } from 'assert';
import { buildReportVersionResponse, buildUpdateFirmwareCommand } from '../../lib/ota-messages';
import { ResultReporter, type ResultReport } from '../../lib/result-reporter';
import { fileExists, placeDownloadedFirmware } from '../support/downloaded-firmware-fixture';
import { RecordingDevice } from '../support/recording-device';

describe('ResultReporter', function () {
  let device: RecordingDevice;
  let firmwarePath: string;
  let checkpointPath: string;

  beforeEach(async function () {
    device = await RecordingDevice.create('1.0.0');
    ({ filePath: firmwarePath, checkpointPath } = await placeDownloadedFirmware(device.downloadsDir, '2.0.0', Buffer.from('firmware')));
    device.beginUpdate(buildUpdateFirmwareCommand({ version: '2.0.0', url: 'https://example.com/fw', md5sum: 'f'.repeat(32), file_size: 8 }));
  });

  afterEach(async function () {
    await device.close();
  });

  it('reports burning and waits for the PUBACK, leaving the update going', async function () {
    const acknowledged = await new ResultReporter(device).report({ state: 'burning', version: '2.0.0' });
    assert.equal(acknowledged.state, 'burning');
    assert.equal(acknowledged.version, '2.0.0');
    assert.ok(!Number.isNaN(Date.parse(acknowledged.at)));
    assert.deepEqual(device.reports[0].message.report, { version: '2.0.0', progress: { state: 'burning', result_code: '0', result_msg: '' } });
    assert.equal(device.reports[0].options.timeoutMs, 0, 'waits for ever');
    assert.equal(device.device.activeUpdate?.command.version, '2.0.0');
    assert.ok(await fileExists(firmwarePath));
  });

  it('does not settle before the PUBACK', async function () {
    device.holdPubacks();
    let settled = false;
    const reported = new ResultReporter(device).report({ state: 'fail', version: '2.0.0' }).then(() => (settled = true));
    await device.whenReported();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, false);
    device.releasePubacks();
    await reported;
    assert.equal(settled, true);
  });

  it('after done stores the new running version, removes the download, ends the update and reports the version', async function () {
    const acknowledged = await new ResultReporter(device).report({ state: 'done', version: '2.0.0' });
    assert.deepEqual(device.states(), ['done']);
    assert.equal(await device.currentVersion(), '2.0.0');
    assert.equal(await fileExists(firmwarePath), false);
    assert.equal(await fileExists(checkpointPath), false);
    assert.equal(device.device.activeUpdate, undefined);
    assert.deepEqual(device.versionReports, ['2.0.0']);
    assert.deepEqual(acknowledged.versionReport, buildReportVersionResponse('2.0.0'));
    assert.equal(acknowledged.versionReportError, undefined);
  });

  it('stores the running version before done is acknowledged, so a restart then reports the new version', async function () {
    device.holdPubacks();
    const reported = new ResultReporter(device).report({ state: 'done', version: '2.0.0' });
    await device.whenReported();
    assert.equal(await device.currentVersion(), '2.0.0');
    device.releasePubacks();
    await reported;
  });

  it('keeps the download when told to, and skips report_version when told to', async function () {
    const acknowledged = await new ResultReporter(device).report({ state: 'done', version: '2.0.0' }, { keepFile: true, reportVersion: false });
    assert.ok(await fileExists(firmwarePath));
    assert.ok(await fileExists(checkpointPath));
    assert.deepEqual(device.versionReports, []);
    assert.equal(acknowledged.versionReport, undefined);
    assert.equal(await device.currentVersion(), '2.0.0');
  });

  it('says when the cloud refuses the new version', async function () {
    device.versionResponse = (version) => buildReportVersionResponse(version, -1, 'unknown version');
    const acknowledged = await new ResultReporter(device).report({ state: 'done', version: '2.0.0' });
    assert.equal(acknowledged.versionReport?.result_code, -1);
    assert.match(acknowledged.versionReportError?.message ?? '', /refused version 2.0.0 \(-1\): unknown version/);
  });

  it('reports fail with -5 and a generic reason by default, and ends the update', async function () {
    await new ResultReporter(device).report({ state: 'fail', version: '2.0.0' });
    assert.deepEqual(device.reports[0].message.report.progress, { state: 'fail', result_code: '-5', result_msg: 'upgrade failed' });
    assert.equal(device.device.activeUpdate, undefined);
    assert.equal(await device.currentVersion(), '1.0.0');
    assert.ok(await fileExists(firmwarePath), 'a failed burn leaves the download for another try');
  });

  it('reports fail with the code and reason given', async function () {
    await new ResultReporter(device).report({ state: 'fail', version: '2.0.0', resultCode: -1, resultMessage: 'flash write error at 0x8000' });
    assert.deepEqual(device.reports[0].message.report.progress, { state: 'fail', result_code: '-1', result_msg: 'flash write error at 0x8000' });
  });

  it('ends the update even when the fail report cannot be sent', async function () {
    device.failReports = new Error('connection closed');
    await assert.rejects(new ResultReporter(device).report({ state: 'fail', version: '2.0.0' }), /connection closed/);
    assert.equal(device.device.activeUpdate, undefined);
  });

  for (const [what, report, says] of [
    ['an unknown state', { state: 'finished', version: '2.0.0' }, /state must be one of burning, done, fail, got "finished"/],
    ['downloading (not a result)', { state: 'downloading', version: '2.0.0' }, /state must be one of/],
    ['an invalid version', { state: 'done', version: '' }, /target version is empty/],
    ['a positive result code', { state: 'fail', version: '2.0.0', resultCode: 3 }, /result_code must be a negative integer/],
  ] as const) {
    it(`refuses ${what}, sending nothing`, async function () {
      await assert.rejects(new ResultReporter(device).report(report as unknown as ResultReport), says);
      assert.deepEqual(device.reports, []);
      assert.equal(device.device.activeUpdate?.command.version, '2.0.0');
    });
  }
});
