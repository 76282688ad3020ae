import { strict as assert } from 'assert';
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { checkFirmwareFile, FirmwareVerifier, type FirmwareExpectation } from '../../lib/firmware-verification';
import { buildUpdateFirmwareCommand } from '../../lib/ota-messages';
import { fileExists, hexDigest, placeDownloadedFirmware } from '../support/downloaded-firmware-fixture';
import { RecordingDevice } from '../support/recording-device';

describe('FirmwareVerifier', function () {
  let device: RecordingDevice;
  let firmware: Buffer;
  let firmwarePath: string;
  let checkpointPath: string;

  beforeEach(async function () {
    device = await RecordingDevice.create('1.0.0');
    firmware = randomBytes(64 * 1024 + 7);
    ({ filePath: firmwarePath, checkpointPath } = await placeDownloadedFirmware(device.downloadsDir, '2.0.0', firmware));
    device.beginUpdate(buildUpdateFirmwareCommand({ version: '2.0.0', url: 'https://example.com/fw', md5sum: hexDigest('md5', firmware), file_size: firmware.length }));
  });

  afterEach(async function () {
    await device.close();
  });

  const expectation = (fields: Partial<FirmwareExpectation> = {}): FirmwareExpectation => ({
    version: '2.0.0',
    filePath: firmwarePath,
    md5sum: hexDigest('md5', firmware),
    fileSize: firmware.length,
    ...fields,
  });

  it('passes a file whose MD5 matches (in any case) and gives both digests, keeping the file', async function () {
    const result = await new FirmwareVerifier(device).verify(expectation({ md5sum: hexDigest('md5', firmware).toUpperCase() }));
    assert.ok(result.ok);
    assert.equal(result.digest.md5, hexDigest('md5', firmware));
    assert.equal(result.digest.sha256, hexDigest('sha256', firmware));
    assert.equal(result.digest.bytes, firmware.length);
    assert.ok(await fileExists(firmwarePath));
    assert.deepEqual(device.reports, []);
    assert.equal(device.device.activeUpdate?.command.version, '2.0.0', 'the update goes on');
  });

  it('checks the bytes on disk, so a file changed after the download fails', async function () {
    const changed = Buffer.from(firmware);
    changed[1000] ^= 0xff;
    await fs.writeFile(firmwarePath, changed);
    const result = await new FirmwareVerifier(device).verify(expectation());
    assert.ok(!result.ok);
    assert.equal(result.resultCode, -4);
    assert.equal(result.reason, `md5 mismatch: expected ${hexDigest('md5', firmware)}, got ${hexDigest('md5', changed)}`);
  });

  it('on an MD5 mismatch reports fail -4, removes the file and its checkpoint and ends the update', async function () {
    const wrong = '0'.repeat(32);
    const result = await new FirmwareVerifier(device).verify(expectation({ md5sum: wrong }));
    assert.ok(!result.ok);
    assert.equal(device.reports.length, 1);
    assert.deepEqual(device.reports[0].message.report, {
      version: '2.0.0',
      progress: { state: 'fail', result_code: '-4', result_msg: `md5 mismatch: expected ${wrong}, got ${hexDigest('md5', firmware)}` },
    });
    assert.equal(device.reports[0].options.timeoutMs, 0);
    assert.equal(await fileExists(firmwarePath), false);
    assert.equal(await fileExists(checkpointPath), false);
    assert.equal(device.device.activeUpdate, undefined);
  });

  it('says how much of the file is there when it is shorter than the command said', async function () {
    await fs.truncate(firmwarePath, 1000);
    const result = await checkFirmwareFile(expectation());
    assert.ok(!result.ok);
    assert.match(result.reason, /^md5 mismatch: .* \(file has 1000 of 65543 bytes\)$/);
  });

  it('checks an optional SHA-256 as well', async function () {
    const verifier = new FirmwareVerifier(device);
    const good = await verifier.verify(expectation({ sha256: hexDigest('sha256', firmware).toUpperCase() }));
    assert.ok(good.ok);
    const wrong = 'a'.repeat(64);
    const bad = await verifier.verify(expectation({ sha256: wrong }));
    assert.ok(!bad.ok);
    assert.equal(bad.resultCode, -4);
    assert.equal(bad.reason, `sha256 mismatch: expected ${wrong}, got ${hexDigest('sha256', firmware)}`);
    assert.equal(await fileExists(firmwarePath), false);
  });

  it('fails a missing file with a clear reason, reported as fail -5', async function () {
    await fs.rm(firmwarePath);
    const result = await new FirmwareVerifier(device).verify(expectation());
    assert.ok(!result.ok);
    assert.equal(result.reason, 'firmware file FW_2.0.0.bin is missing');
    assert.deepEqual(device.reports[0].message.report.progress, { state: 'fail', result_code: '-5', result_msg: 'firmware file FW_2.0.0.bin is missing' });
    assert.equal(await fileExists(checkpointPath), false);
  });

  it('never removes a failing file outside the downloads folder', async function () {
    const outside = await fs.mkdtemp(path.join(os.tmpdir(), 'user-firmware-'));
    try {
      const userFile = path.join(outside, 'my-firmware.bin');
      await fs.writeFile(userFile, firmware);
      const result = await new FirmwareVerifier(device).verify(expectation({ filePath: userFile, md5sum: 'f'.repeat(32) }));
      assert.ok(!result.ok);
      assert.ok(await fileExists(userFile));
    } finally {
      await fs.rm(outside, { recursive: true, force: true });
    }
  });

  for (const [what, fields, says] of [
    ['an invalid version', { version: 'no spaces allowed' }, /has characters outside/],
    ['an invalid md5sum', { md5sum: 'abc' }, /md5sum must be 32 hexadecimal digits/],
    ['an invalid sha256', { sha256: 'abc' }, /sha256 must be 64 hexadecimal digits/],
    ['no file path', { filePath: '' }, /no firmware file path/],
  ] as const) {
    it(`refuses to start with ${what}, touching nothing`, async function () {
      await assert.rejects(new FirmwareVerifier(device).verify(expectation(fields)), says);
      assert.deepEqual(device.reports, []);
      assert.ok(await fileExists(firmwarePath));
    });
  }

  it('returns the error of a fail report that could not be sent', async function () {
    device.failReports = new Error('connection closed');
    const result = await new FirmwareVerifier(device).verify(expectation({ md5sum: '1'.repeat(32) }));
    assert.ok(!result.ok);
    assert.equal(result.reportError?.message, 'connection closed');
  });
});
