/**
 * Faults that once left an update stuck (the cloud never heard a result, and every re-push was
 * ignored as "already being handled"): each must end in exactly one final report at the stand-in,
 * and the update must be released, so that the same command pushed again starts it afresh.
 * The real nodes in the Node-RED runtime, the stand-in's broker and firmware server, real files.
 */
import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as path from 'path';
import type { NodeMessage } from '../../nodes/common/node-red-runtime';
import { getNode, loadFlow, nodeModules, statusMatching, unloadFlow, waitForEvent, type TestNode } from '../support/node-red-test-runtime';
import { DEVICE, isProgress, startOtaFlowContext, withStatus, type OtaFlowContext, type WireReport } from '../support/ota-flow';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** chattr +i / -i; false where the file system or the user cannot. */
function setImmutable(folder: string, immutable: boolean): Promise<boolean> {
  return new Promise((resolve) => execFile('chattr', [immutable ? '+i' : '-i', folder], (error) => resolve(!error)));
}

const isFinal = (report: WireReport) => isProgress('done')(report) || isProgress('fail')(report);

describe('updates that once got stuck end with exactly one final report', function () {
  this.timeout(120_000);
  let context: OtaFlowContext;
  let emitted: NodeMessage[];
  let download: TestNode;
  let immutableFolder: string | undefined;
  const servers: http.Server[] = [];

  beforeEach(async function () {
    context = await startOtaFlowContext();
    emitted = [];
  });

  afterEach(async function () {
    if (immutableFolder) await setImmutable(immutableFolder, false);
    immutableFolder = undefined;
    await unloadFlow();
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await context.close();
  });

  /** The whole pipeline: listener → download → verify → burning → done, with the catch-all debug a user has. */
  async function startPipeline(tuning: { listener?: Record<string, unknown>; download?: Record<string, unknown> } = {}): Promise<void> {
    const subscribed = context.subscribed();
    await loadFlow(
      [nodeModules.tencentIotDevice, nodeModules.otaUpdateIn, nodeModules.otaDownload, nodeModules.otaVerify, nodeModules.otaReport],
      [
        context.deviceNode(),
        { id: 'in', type: 'ota-update-in', device: 'dev', wires: [['download', 'commands']], ...tuning.listener },
        { id: 'commands', type: 'helper' },
        { id: 'download', type: 'ota-download', device: 'dev', maxRetries: 3, readTimeout: 30, wires: [['verify'], []], ...tuning.download },
        { id: 'verify', type: 'ota-verify', device: 'dev', wires: [['report-burning'], []] },
        { id: 'report-burning', type: 'ota-report', device: 'dev', state: 'burning', wires: [['report-done']] },
        { id: 'report-done', type: 'ota-report', device: 'dev', state: 'done', wires: [[]] },
      ],
      context.credentials,
    );
    getNode('commands').on('input', (message: NodeMessage) => emitted.push(message));
    download = getNode('download');
    await subscribed;
  }

  async function upload(version: string, bytes: Buffer): Promise<{ version: string; md5sum: string; file_size: number }> {
    await context.sim.uploadFirmware(DEVICE.productId, version, bytes);
    return { version, md5sum: createHash('md5').update(bytes).digest('hex'), file_size: bytes.length };
  }

  const signedUrl = (version: string, ttlSeconds = 600) => context.sim.simulator.firmwareServer.signedUrl(DEVICE.productId, version, { scheme: 'http', ttlSeconds });

  function push(fields: Record<string, unknown>): Promise<void> {
    return context.push({ type: 'update_firmware', ...fields });
  }

  /** Waits for the final reports of `version` to reach `count`, then a little longer to see that no other follows. */
  async function finalReports(version: string, count: number): Promise<WireReport[]> {
    for (;;) {
      const finals = context.wire.reports.filter((report) => isFinal(report) && report.message.report?.version === version);
      if (finals.length >= count) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        return context.wire.reports.filter((report) => isFinal(report) && report.message.report?.version === version);
      }
      await context.wire.waitFor((report) => isFinal(report) && report.message.report?.version === version && !finals.includes(report), 90_000);
    }
  }

  async function startServer(handler: http.RequestListener): Promise<string> {
    const server = http.createServer(handler);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it('ends with fail -5 when the running version cannot be stored after the burn, and a re-push then updates', async function () {
    await startPipeline();
    const command = await upload('1.0.0', randomBytes(300 * KiB));
    // An immutable state folder takes no new file, even from root: running-version.json cannot be written, as on a
    // read-only or full SD card, while it can still be read and the downloads folder inside it still takes the firmware.
    await fs.mkdir(context.downloadsDir, { recursive: true });
    if (!(await setImmutable(context.stateDir, true))) this.skip();
    immutableFolder = context.stateDir;
    await push({ ...command, url: signedUrl('1.0.0') });
    const [failure] = await finalReports('1.0.0', 1);
    assert.equal(failure.qos, 1);
    assert.equal(failure.message.report?.progress?.result_code, '-5');
    assert.match(failure.message.report?.progress?.result_msg ?? '', /^installed, but cannot record the running version: /);
    assert.doesNotMatch(failure.message.report?.progress?.result_msg ?? '', /\/tmp\//, 'no local path goes to the cloud');
    assert.equal(context.wire.progress('done').length, 0);

    await setImmutable(context.stateDir, false);
    immutableFolder = undefined;
    await push({ ...command, url: signedUrl('1.0.0') });
    const finals = await finalReports('1.0.0', 2);
    assert.deepEqual(
      finals.map((report) => report.message.report?.progress?.state),
      ['fail', 'done'],
    );
    assert.equal(emitted.length, 2, 'the re-push was taken up');
    assert.equal(JSON.parse(await fs.readFile(path.join(context.stateDir, 'running-version.json'), 'utf8')).version, '1.0.0');
  });

  it('downloads a file over 1 GiB that ota-update-in was set to accept, ending in one final report', async function () {
    await startPipeline({ listener: { maxFileSize: 2048 } });
    const command = await upload('1.0.0', randomBytes(64 * KiB));
    // The firmware server has a smaller file than the command says: a size mismatch, not a refusal by size.
    await push({ ...command, file_size: 1.5 * GiB, url: signedUrl('1.0.0') });
    const [failure] = await finalReports('1.0.0', 1);
    assert.equal(emitted.length, 1, 'the listener took the command');
    assert.equal(failure.message.report?.progress?.result_code, '-4');
    assert.match(failure.message.report?.progress?.result_msg ?? '', /^size mismatch: the server's file has 65536 bytes, file_size is 1610612736$/);

    await push({ ...command, url: signedUrl('1.0.0') });
    const finals = await finalReports('1.0.0', 2);
    assert.equal(finals[1].message.report?.progress?.state, 'done');
  });

  it('resumes with the freshly signed URL of a re-pushed command once the first URL has expired', async function () {
    await startPipeline();
    const command = await upload('1.0.0', randomBytes(MiB));
    // The first response is cut after 512 KiB at 128 KiB/s, so no resume comes before the first URL (2 s) has expired.
    await context.sim.console.setFirmwareFaults(DEVICE.productId, '1.0.0', { throttleBytesPerSecond: 128 * KiB, closeAfterBytes: 512 * KiB });
    await push({ ...command, url: signedUrl('1.0.0', 2) });
    await statusMatching(download, withStatus('ota-download.status.downloading'));
    await push({ ...command, url: signedUrl('1.0.0', 600) });
    const finals = await finalReports('1.0.0', 1);
    assert.deepEqual(
      finals.map((report) => report.message.report?.progress),
      [{ state: 'done', result_code: '0', result_msg: '' }],
    );
    const served = (await context.sim.console.getFirmware(DEVICE.productId, '1.0.0')).served;
    const statuses = served?.requests.map((request) => request.status);
    assert.ok(statuses && statuses.length >= 2 && !statuses.includes(403), `the resume used the new URL: ${JSON.stringify(statuses)}`);
    assert.equal(emitted.length, 1, 'the re-push did not start the update twice');
  });

  it('ends a download that trickles a byte at a time with -1 once it is under the minimum speed, and a re-push then updates', async function () {
    await startPipeline({ download: { minSpeed: 1, minSpeedWindow: 2 } });
    const firmware = randomBytes(100_000);
    const command = await upload('1.0.0', firmware);
    const trickle = await startServer((_request, response) => {
      response.writeHead(200, { 'Content-Length': String(firmware.length) });
      let sent = 0;
      const timer = setInterval(() => {
        response.write(firmware.subarray(sent, sent + 1));
        sent += 1;
      }, 250);
      response.on('close', () => clearInterval(timer));
    });
    await push({ ...command, url: `${trickle}/fw` });
    const [failure] = await finalReports('1.0.0', 1);
    assert.equal(failure.message.report?.progress?.result_code, '-1');
    assert.match(failure.message.report?.progress?.result_msg ?? '', /^download too slow: \d+ bytes in 2 s at byte \d+ of 100000, the minimum is 1024 bytes\/s$/);

    await push({ ...command, url: signedUrl('1.0.0') });
    const finals = await finalReports('1.0.0', 2);
    assert.equal(finals[1].message.report?.progress?.state, 'done');
    assert.equal(emitted.length, 2);
  });

  it('tells a second final report for an ended update apart, sending nothing more', async function () {
    await startPipeline();
    const command = await upload('1.0.0', randomBytes(64 * KiB));
    await push({ ...command, md5sum: '0'.repeat(32), url: signedUrl('1.0.0') });
    const [failure] = await finalReports('1.0.0', 1);
    assert.equal(failure.message.report?.progress?.result_code, '-4');
    const done = getNode('report-done');
    const warned = waitForEvent<{ args: [string] }>(done, 'call:warn');
    done.receive({ topic: '1.0.0', payload: 'done' });
    assert.match((await warned).args[0], /has already ended with fail -4/);
    assert.equal((await finalReports('1.0.0', 1)).length, 1);
  });
});
