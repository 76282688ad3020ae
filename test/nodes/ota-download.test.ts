import { strict as assert } from 'assert';
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import type { NodeMessage } from '../../nodes/common/node-red-runtime';
import { getNode, loadFlow, nextCall, nextMessage, nodeModules, statusMatching, unloadFlow, type TestNode } from '../support/node-red-test-runtime';
import { DEVICE, isProgress, shownStatus, startOtaFlowContext, withStatus, type OtaFlowContext } from '../support/ota-flow';

const MiB = 1024 * 1024;

function collect(node: TestNode): NodeMessage[] {
  const messages: NodeMessage[] = [];
  node.on('input', (message: NodeMessage) => messages.push(message));
  return messages;
}

describe('ota-download node', function () {
  this.timeout(120_000);
  let context: OtaFlowContext;
  let download: TestNode;
  let firmwareOutput: TestNode;
  let progressOutput: TestNode;

  beforeEach(async function () {
    context = await startOtaFlowContext();
    const subscribed = context.subscribed();
    await loadFlow(
      [nodeModules.tencentIotDevice, nodeModules.otaUpdateIn, nodeModules.otaDownload],
      [
        context.deviceNode(),
        { id: 'in', type: 'ota-update-in', device: 'dev', wires: [['download']] },
        { id: 'download', type: 'ota-download', device: 'dev', maxRetries: 2, readTimeout: 5, connectTimeout: 5, wires: [['firmware'], ['progress']] },
        { id: 'firmware', type: 'helper' },
        { id: 'progress', type: 'helper' },
      ],
      context.credentials,
    );
    download = getNode('download');
    firmwareOutput = getNode('firmware');
    progressOutput = getNode('progress');
    await subscribed;
  });

  afterEach(async function () {
    await unloadFlow();
    await context.close();
  });

  async function commandFor(version: string, bytes: Buffer) {
    await context.sim.uploadFirmware(DEVICE.productId, version, bytes);
    return {
      version,
      url: context.sim.simulator.firmwareServer.signedUrl(DEVICE.productId, version, { scheme: 'http', ttlSeconds: 600 }),
      md5sum: createHash('md5').update(bytes).digest('hex'),
      file_size: bytes.length,
    };
  }

  /** Pushes the command as the cloud does; ota-update-in hands it to the download node. */
  const push = (command: object) => context.push({ type: 'update_firmware', ...command });

  it('downloads the firmware, passes the command on with msg.firmware and reports progress on its second output and to the cloud', async function () {
    const firmware = randomBytes(2 * MiB + 99);
    const command = await commandFor('1.0.0', firmware);
    const progress = collect(progressOutput);
    const done = nextMessage(firmwareOutput, 60_000);
    await push(command);
    const message = await done;
    assert.deepEqual(message.payload, command, 'the command is passed on unchanged');
    const result = message.firmware as { path: string; version: string; size: number; md5: string; sha256?: string };
    assert.equal(result.version, '1.0.0');
    assert.equal(result.size, firmware.length);
    assert.equal(result.md5, command.md5sum);
    assert.equal(result.sha256, undefined, 'no verify step of this device checks a SHA-256, so none is computed');
    assert.ok(result.path.startsWith(context.downloadsDir), 'the file is in the device state folder');
    assert.deepEqual(await fs.readFile(result.path), firmware);

    const first = progress[0].payload as { version: string; percent: number; bytes: number; total: number; bytesPerSecond: number };
    assert.deepEqual(Object.keys(first).sort(), ['bytes', 'bytesPerSecond', 'percent', 'total', 'version']);
    assert.equal(first.percent, 0);
    assert.equal((progress[progress.length - 1].payload as { percent: number }).percent, 100);

    const onWire = await context.wire.waitFor((report) => isProgress('downloading')(report) && report.message.report?.progress?.percent === '100');
    assert.equal(onWire.qos, 0);
    assert.equal(context.wire.progress('downloading')[0].message.report?.progress?.percent, '0');
  });

  it('does not start the same command twice while it is downloading', async function () {
    const firmware = randomBytes(2 * MiB);
    const command = await commandFor('1.0.0', firmware);
    await context.sim.console.setFirmwareFaults(DEVICE.productId, '1.0.0', { throttleBytesPerSecond: MiB });
    const done = nextMessage(firmwareOutput, 60_000);
    await push(command);
    await statusMatching(download, withStatus('ota-download.status.downloading'));
    await push(command);
    download.receive({ topic: '1.0.0', payload: command });
    await done;
    const served = (await context.sim.console.getFirmware(DEVICE.productId, '1.0.0')).served;
    assert.equal(served?.requestCount, 1);
    assert.equal(served?.totalBytes, firmware.length);
  });

  it('stops on msg.cancel, removes the partial file and tells the cloud once', async function () {
    const command = await commandFor('1.0.0', randomBytes(4 * MiB));
    await context.sim.console.setFirmwareFaults(DEVICE.productId, '1.0.0', { throttleBytesPerSecond: 512 * 1024 });
    const aborted = nextCall<string>(download, 'error');
    await push(command);
    await statusMatching(download, withStatus('ota-download.status.downloading'));
    download.receive({ cancel: true });
    assert.match(String(await aborted), /failed-error/);
    const failure = await context.wire.waitFor(isProgress('fail', '1.0.0'));
    assert.equal(failure.qos, 1);
    assert.equal(failure.message.report?.progress?.result_code, '-5');
    assert.match(failure.message.report?.progress?.result_msg ?? '', /cancelled/);
    assert.deepEqual(await fs.readdir(context.downloadsDir), []);
    assert.equal(context.wire.progress('fail').length, 1);
  });

  it('refuses a message for a version no update is under way for, publishing nothing', async function () {
    const error = nextCall<string>(download, 'error');
    download.receive({ payload: { version: '1.0.0', url: 'ftp://firmware.example.com/fw', md5sum: 'x', file_size: 1 } });
    assert.match(String(await error), /no update to it is under way/);
    assert.equal(shownStatus(download.status.lastCall?.args[0])?.key, 'tencent-iot-device.status.wrong-step');
    assert.deepEqual(context.wire.reports, []);
  });
});
