import { strict as assert } from 'assert';
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import type { NodeMessage } from '../../nodes/common/node-red-runtime';
import { getNode, loadFlow, nodeModules, statusMatching, unloadFlow, waitForEvent, type TestNode } from '../support/node-red-test-runtime';
import { fileExists, hexDigest, placeDownloadedFirmware } from '../support/downloaded-firmware-fixture';
import { DEVICE, startOtaFlowContext, withStatus, type OtaFlowContext } from '../support/ota-flow';

describe('ota-verify node', function () {
  let context: OtaFlowContext;
  let firmware: Buffer;
  let firmwarePath: string;
  let checkpointPath: string;
  let verify: TestNode;
  let verifiedOutput: TestNode;
  let failedOutput: TestNode;

  beforeEach(async function () {
    context = await startOtaFlowContext();
    firmware = randomBytes(200 * 1024 + 3);
    ({ filePath: firmwarePath, checkpointPath } = await placeDownloadedFirmware(context.downloadsDir, '1.0.0', firmware));
  });

  afterEach(async function () {
    await unloadFlow();
    await context.close();
  });

  /** The update command as ota-update-in emits it. */
  function command(): Record<string, unknown> {
    return { version: '1.0.0', url: 'https://firmware.example.com/fw?sign=abc', md5sum: hexDigest('md5', firmware), file_size: firmware.length };
  }

  /** The message an ota-download node sends when the download is complete. */
  function downloaded(extra: Record<string, unknown> = {}): NodeMessage {
    return {
      topic: '1.0.0',
      payload: command(),
      firmware: { path: firmwarePath, version: '1.0.0', size: firmware.length, md5: hexDigest('md5', firmware), sha256: hexDigest('sha256', firmware) },
      ...extra,
    };
  }

  async function startFlow(options: Record<string, unknown> = {}): Promise<void> {
    const subscribed = context.subscribed();
    await loadFlow(
      [nodeModules.tencentIotDevice, nodeModules.otaUpdateIn, nodeModules.otaVerify],
      [
        context.deviceNode(),
        { id: 'in', type: 'ota-update-in', device: 'dev', wires: [['commands']] },
        { id: 'commands', type: 'helper' },
        { id: 'verify', type: 'ota-verify', device: 'dev', wires: [['verified'], ['failed']], ...options },
        { id: 'verified', type: 'helper' },
        { id: 'failed', type: 'helper' },
      ],
      context.credentials,
    );
    verify = getNode('verify');
    verifiedOutput = getNode('verified');
    failedOutput = getNode('failed');
    await subscribed;
  }

  /** Sends a message into the verify node; resolves with the output it came out of. */
  async function verifyMessage(message: NodeMessage): Promise<{ output: 'verified' | 'failed'; message: NodeMessage }> {
    const result = Promise.race([
      waitForEvent<NodeMessage>(verifiedOutput, 'input').then((sent) => ({ output: 'verified' as const, message: sent })),
      waitForEvent<NodeMessage>(failedOutput, 'input').then((sent) => ({ output: 'failed' as const, message: sent })),
    ]);
    verify.receive(message);
    return result;
  }

  it('passes a firmware whose MD5 matches to the first output with its MD5, keeping the file', async function () {
    await startFlow();
    const status = statusMatching(verify, withStatus('ota-verify.status.verified', { version: '1.0.0' }));
    const { output, message } = await verifyMessage(downloaded());
    assert.equal(output, 'verified');
    assert.deepEqual(message.verified, { md5: hexDigest('md5', firmware) });
    assert.equal((message.firmware as { path: string }).path, firmwarePath);
    assert.equal((await status).fill, 'green');
    assert.ok(await fileExists(firmwarePath));
    assert.ok(await fileExists(checkpointPath));
    assert.deepEqual(context.wire.reports, []);
  });

  it('on an MD5 mismatch of the file on disk reports fail -4, deletes file and checkpoint and uses the second output', async function () {
    await startFlow();
    // The download's own hash (msg.firmware.md5) was right; the file changed on disk since.
    const corrupted = Buffer.from(firmware);
    corrupted[corrupted.length - 1] ^= 0x01;
    await fs.writeFile(firmwarePath, corrupted);
    const status = statusMatching(verify, withStatus('ota-verify.status.failed', { code: '-4' }));

    const { output, message } = await verifyMessage(downloaded());
    assert.equal(output, 'failed');
    const reason = `md5 mismatch: expected ${hexDigest('md5', firmware)}, got ${hexDigest('md5', corrupted)}`;
    assert.deepEqual(message.error, { resultCode: -4, reason });
    assert.equal(message.verified, undefined);
    assert.equal((await status).fill, 'red');

    assert.equal(context.wire.reports.length, 1);
    const [report] = context.wire.reports;
    assert.equal(report.qos, 1);
    assert.deepEqual(report.message, {
      type: 'report_progress',
      report: { progress: { state: 'fail', result_code: '-4', result_msg: reason }, version: '1.0.0' },
    });
    assert.equal(await fileExists(firmwarePath), false);
    assert.equal(await fileExists(checkpointPath), false);
  });

  it('ends the update on a mismatch, so that the cloud pushing the command again starts it afresh', async function () {
    await startFlow();
    const commands = getNode('commands');
    const first = waitForEvent<NodeMessage>(commands, 'input');
    await context.push({ type: 'update_firmware', ...command() });
    await first;
    await fs.writeFile(firmwarePath, 'not the firmware');
    assert.equal((await verifyMessage(downloaded())).output, 'failed');
    const again = waitForEvent<NodeMessage>(commands, 'input');
    await context.push({ type: 'update_firmware', ...command() });
    assert.equal((await again).topic, '1.0.0');
  });

  it('checks the SHA-256 set on the node', async function () {
    const wrong = 'ab'.repeat(32);
    await startFlow({ sha256: wrong });
    const { output, message } = await verifyMessage(downloaded());
    assert.equal(output, 'failed');
    const reason = `sha256 mismatch: expected ${wrong}, got ${hexDigest('sha256', firmware)}`;
    assert.deepEqual(message.error, { resultCode: -4, reason });
    assert.deepEqual(context.wire.progress('fail', '1.0.0')[0].message.report?.progress, { state: 'fail', result_code: '-4', result_msg: reason });
    assert.equal(await fileExists(firmwarePath), false);
  });

  it('checks a SHA-256 given in msg.sha256', async function () {
    await startFlow();
    const { output, message } = await verifyMessage(downloaded({ sha256: hexDigest('sha256', firmware).toUpperCase() }));
    assert.equal(output, 'verified');
    assert.equal((message.verified as { sha256: string }).sha256, hexDigest('sha256', firmware));
  });

  it('checks a SHA-256 given in msg.payload.sha256', async function () {
    await startFlow();
    const { output } = await verifyMessage(downloaded({ payload: { ...command(), sha256: '0'.repeat(64) } }));
    assert.equal(output, 'failed');
    assert.equal(context.wire.progress('fail', '1.0.0')[0].message.report?.progress?.result_code, '-4');
  });

  it('sends a missing file to the second output with a clear reason, reported to the cloud as fail', async function () {
    await startFlow();
    await fs.rm(firmwarePath);
    const { output, message } = await verifyMessage(downloaded());
    assert.equal(output, 'failed');
    assert.deepEqual(message.error, { resultCode: -5, reason: 'firmware file FW_1.0.0.bin is missing' });
    const [report] = context.wire.progress('fail', '1.0.0');
    assert.equal(report.qos, 1);
    assert.deepEqual(report.message.report?.progress, { state: 'fail', result_code: '-5', result_msg: 'firmware file FW_1.0.0.bin is missing' });
    assert.equal(await fileExists(checkpointPath), false);
  });

  it('raises an error for a message without md5sum, touching neither the file nor the cloud', async function () {
    await startFlow();
    const error = waitForEvent<{ args: [Error | string] }>(verify, 'call:error');
    const status = statusMatching(verify, withStatus('ota-verify.status.invalid-input'));
    verify.receive(downloaded({ payload: { version: '1.0.0' } }));
    const [raised] = (await error).args;
    assert.match(String(raised instanceof Error ? raised.message : raised), /ota-verify.errors.invalid-input/);
    assert.equal((await status).fill, 'red');
    assert.ok(await fileExists(firmwarePath));
    assert.deepEqual(context.wire.reports, []);
  });

  describe('after the download node of the same device', function () {
    async function startPipeline(verifyOptions: Record<string, unknown>): Promise<{ firmware: TestNode; failed: TestNode }> {
      const subscribed = context.subscribed();
      await loadFlow(
        [nodeModules.tencentIotDevice, nodeModules.otaUpdateIn, nodeModules.otaDownload, nodeModules.otaVerify],
        [
          context.deviceNode(),
          { id: 'in', type: 'ota-update-in', device: 'dev', wires: [['download']] },
          { id: 'download', type: 'ota-download', device: 'dev', wires: [['verify'], []] },
          { id: 'verify', type: 'ota-verify', device: 'dev', wires: [['verified'], ['failed']], ...verifyOptions },
          { id: 'verified', type: 'helper' },
          { id: 'failed', type: 'helper' },
        ],
        context.credentials,
      );
      await subscribed;
      return { firmware: getNode('verified'), failed: getNode('failed') };
    }

    /** Serves the firmware from the stand-in and pushes its command; the file placed by beforeEach is not the download's. */
    async function pushServedFirmware(bytes: Buffer): Promise<void> {
      await fs.rm(firmwarePath, { force: true });
      await fs.rm(checkpointPath, { force: true });
      await context.sim.uploadFirmware(DEVICE.productId, '1.0.0', bytes);
      const url = context.sim.simulator.firmwareServer.signedUrl(DEVICE.productId, '1.0.0', { scheme: 'http', ttlSeconds: 600 });
      await context.push({ type: 'update_firmware', version: '1.0.0', url, md5sum: hexDigest('md5', bytes), file_size: bytes.length });
    }

    it('makes the download compute the SHA-256 set on the node, and checks it', async function () {
      const { firmware: verifiedNode } = await startPipeline({ sha256: hexDigest('sha256', firmware) });
      const verified = waitForEvent<NodeMessage>(verifiedNode, 'input');
      await pushServedFirmware(firmware);
      const message = await verified;
      assert.equal((message.firmware as { sha256?: string }).sha256, hexDigest('sha256', firmware), 'computed as the bytes arrived');
      assert.deepEqual(message.verified, { md5: hexDigest('md5', firmware), sha256: hexDigest('sha256', firmware) });
    });

    it('fails a firmware whose SHA-256 is not the one set on the node with -4', async function () {
      const { failed } = await startPipeline({ sha256: hexDigest('sha256', Buffer.from('another firmware')) });
      const failedMessage = waitForEvent<NodeMessage>(failed, 'input');
      await pushServedFirmware(firmware);
      const message = await failedMessage;
      assert.equal((message.error as { resultCode: number }).resultCode, -4);
      assert.match((message.error as { reason: string }).reason, /^sha256 mismatch/);
      const report = await context.wire.waitFor((entry) => entry.message.report?.progress?.state === 'fail');
      assert.equal(report.message.report?.progress?.result_code, '-4');
    });
  });
});
