import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as path from 'path';
import type { NodeMessage } from '../../nodes/common/node-red-runtime';
import { getNode, loadFlow, nodeModules, statusMatching, unloadFlow, waitForEvent, type TestNode } from '../support/node-red-test-runtime';
import { fileExists, placeDownloadedFirmware } from '../support/downloaded-firmware-fixture';
import { DEVICE, isProgress, shownStatus, startOtaFlowContext, withStatus, type OtaFlowContext } from '../support/ota-flow';

async function storedRunningVersion(stateDir: string): Promise<unknown> {
  const text = await fs.readFile(path.join(stateDir, 'running-version.json'), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as { version?: unknown }).version;
}

interface Acknowledged {
  state: string;
  version: string;
  at: string;
}

describe('ota-report node', function () {
  let context: OtaFlowContext;
  let reportNode: TestNode;
  let acknowledgedOutput: TestNode;
  let firmwarePath: string;
  let checkpointPath: string;

  beforeEach(async function () {
    context = await startOtaFlowContext();
    ({ filePath: firmwarePath, checkpointPath } = await placeDownloadedFirmware(context.downloadsDir, '1.0.0', Buffer.from('the new firmware')));
  });

  afterEach(async function () {
    await unloadFlow();
    await context.close();
  });

  async function startFlow(options: Record<string, unknown> = {}, listenerOptions: Record<string, unknown> = {}): Promise<void> {
    const subscribed = context.subscribed();
    await loadFlow(
      [nodeModules.tencentIotDevice, nodeModules.otaUpdateIn, nodeModules.otaReport, nodeModules.otaVersion],
      [
        context.deviceNode(),
        { id: 'version', type: 'ota-version', device: 'dev', autoReport: false, wires: [[]] },
        { id: 'in', type: 'ota-update-in', device: 'dev', wires: [['commands']], ...listenerOptions },
        { id: 'commands', type: 'helper' },
        { id: 'report', type: 'ota-report', device: 'dev', wires: [['acknowledged']], ...options },
        { id: 'acknowledged', type: 'helper' },
      ],
      context.credentials,
    );
    reportNode = getNode('report');
    acknowledgedOutput = getNode('acknowledged');
    await subscribed;
  }

  /** Sends a message into the report node and resolves with what it outputs once the cloud acknowledged the report. */
  function report(message: NodeMessage): Promise<NodeMessage> {
    const output = waitForEvent<NodeMessage>(acknowledgedOutput, 'input');
    reportNode.receive(message);
    return output;
  }

  it('reports burning with QoS 1 and outputs the acknowledgement', async function () {
    await startFlow();
    const status = statusMatching(reportNode, withStatus('ota-report.status.burning', { version: '1.0.0' }));
    const message = await report({ topic: '1.0.0', payload: { state: 'burning' } });
    const acknowledged = message.acknowledged as Acknowledged;
    assert.deepEqual({ state: acknowledged.state, version: acknowledged.version }, { state: 'burning', version: '1.0.0' });
    assert.ok(!Number.isNaN(Date.parse(acknowledged.at)));
    assert.equal(message.versionReport, undefined);
    assert.equal((await status).fill, 'green');
    assert.equal(context.wire.reports.length, 1);
    assert.deepEqual(context.wire.reports[0], {
      qos: 1,
      message: { type: 'report_progress', report: { progress: { state: 'burning', result_code: '0', result_msg: '' }, version: '1.0.0' } },
    });
    assert.ok(await fileExists(firmwarePath));
  });

  it('after done, ota-version shows the version now running; a new update clears the statuses of the last one', async function () {
    await startFlow();
    const running = statusMatching(getNode('version'), withStatus('ota-version.status.running'));
    await report({ topic: '1.0.0', payload: { state: 'done' } });
    assert.equal((await running).fill, 'green');
    assert.deepEqual(shownStatus(reportNode.status.lastCall?.args[0]), { key: 'tencent-iot-device.status.done', parameters: { version: '1.0.0' } });
    const cleared = statusMatching(reportNode, withStatus('tencent-iot-device.status.connected'));
    const received = waitForEvent<NodeMessage>(getNode('commands'), 'input');
    await context.push({ type: 'update_firmware', version: '2.0.0', url: 'https://firmware.example.com/fw', md5sum: 'c'.repeat(32), file_size: 16 });
    await received;
    assert.equal((await cleared).fill, 'green');
  });

  it('after done stores the running version, removes the download and reports the new version', async function () {
    await startFlow();
    const message = await report({ payload: { state: 'done' }, firmware: { path: firmwarePath, version: '1.0.0' } });
    assert.equal((message.acknowledged as Acknowledged).state, 'done');
    assert.deepEqual(message.versionReport, { type: 'report_version_rsp', result_code: 0, result_msg: 'success', version: '1.0.0' });

    assert.deepEqual(
      context.wire.reports.map((sent) => [sent.message.type, sent.qos]),
      [
        ['report_progress', 1],
        ['report_version', 1],
      ],
    );
    assert.deepEqual(context.wire.reports[0].message.report, { progress: { state: 'done', result_code: '0', result_msg: '' }, version: '1.0.0' });
    assert.deepEqual(context.wire.reports[1].message, { type: 'report_version', report: { version: '1.0.0' } });

    assert.equal(await storedRunningVersion(context.stateDir), '1.0.0');
    assert.equal(await fileExists(firmwarePath), false);
    assert.equal(await fileExists(checkpointPath), false);
    const cloud = await context.sim.console.getDevice(DEVICE.productId, DEVICE.deviceName);
    assert.equal(cloud.version, '1.0.0');
  });

  it('keeps the downloaded file after done when told to', async function () {
    await startFlow({ keepFile: true });
    await report({ topic: '1.0.0', payload: { state: 'done' } });
    assert.ok(await fileExists(firmwarePath));
    assert.ok(await fileExists(checkpointPath));
    assert.equal(await storedRunningVersion(context.stateDir), '1.0.0');
  });

  it('does not report the version after done when told not to', async function () {
    await startFlow({ reportVersion: false });
    const message = await report({ topic: '1.0.0', payload: { state: 'done' } });
    assert.equal(message.versionReport, undefined);
    assert.deepEqual(
      context.wire.reports.map((sent) => sent.message.type),
      ['report_progress'],
    );
  });

  it('reports fail with the result code and reason as strings, with QoS 1', async function () {
    await startFlow();
    const status = statusMatching(reportNode, withStatus('tencent-iot-device.status.failed', { code: '-1' }));
    await report({ topic: '1.0.0', payload: { state: 'fail', result_code: -1, result_msg: 'flash write error at 0x8000' } });
    assert.deepEqual(context.wire.reports, [
      {
        qos: 1,
        message: { type: 'report_progress', report: { progress: { state: 'fail', result_code: '-1', result_msg: 'flash write error at 0x8000' }, version: '1.0.0' } },
      },
    ]);
    assert.equal((await status).fill, 'red');
    assert.equal(await storedRunningVersion(context.stateDir), undefined);
    assert.ok(await fileExists(firmwarePath));
  });

  it('reports fail with -5 when no result code is given', async function () {
    await startFlow();
    await report({ topic: '1.0.0', payload: { state: 'fail' } });
    assert.deepEqual(context.wire.reports[0].message.report?.progress, { state: 'fail', result_code: '-5', result_msg: 'upgrade failed' });
  });

  it('takes the reason of a fail from a Catch node message when there is no result_msg', async function () {
    await startFlow({ state: 'fail' });
    await report({ topic: '1.0.0', payload: 'anything', error: { message: 'install script crashed', source: { id: 'exec1' } } });
    assert.deepEqual(context.wire.reports[0].message.report?.progress, { state: 'fail', result_code: '-5', result_msg: 'install script crashed' });
  });

  it('reports the state it is set to, whatever the message holds (an exec node wired straight to done)', async function () {
    await startFlow({ state: 'done', reportVersion: false });
    const message = await report({ topic: '1.0.0', payload: 'flashed 16 bytes\n', rc: { code: 0 } });
    assert.equal((message.acknowledged as Acknowledged).state, 'done');
    assert.equal(context.wire.progress('done', '1.0.0').length, 1);
  });

  it('reports for the update the device is handling when the message names no version', async function () {
    await startFlow();
    const commands = getNode('commands');
    const command = waitForEvent<NodeMessage>(commands, 'input');
    await context.push({ type: 'update_firmware', version: '1.0.0', url: 'https://firmware.example.com/fw', md5sum: 'c'.repeat(32), file_size: 16 });
    await command;
    const message = await report({ payload: 'burning' });
    assert.equal((message.acknowledged as Acknowledged).version, '1.0.0');
    assert.equal(context.wire.progress('burning', '1.0.0').length, 1);
  });

  for (const state of ['done', 'fail'] as const) {
    it(`ends the update after ${state}, so that the same command pushed again is emitted again`, async function () {
      await startFlow({ reportVersion: false }, { ignoreSameVersion: false });
      const commands = getNode('commands');
      const push = () => context.push({ type: 'update_firmware', version: '1.0.0', url: 'https://firmware.example.com/fw', md5sum: 'c'.repeat(32), file_size: 16 });
      const first = waitForEvent<NodeMessage>(commands, 'input');
      await push();
      await first;
      await report({ topic: '1.0.0', payload: { state } });
      const again = waitForEvent<NodeMessage>(commands, 'input');
      await push();
      assert.equal((await again).topic, '1.0.0');
    });
  }

  it('after done, the same command pushed again is answered done: the new version is the running one', async function () {
    await startFlow({ reportVersion: false });
    await report({ topic: '1.0.0', payload: { state: 'done' } });
    const status = statusMatching(getNode('in'), withStatus('ota-update-in.status.same-version'));
    await context.push({ type: 'update_firmware', version: '1.0.0', url: 'https://firmware.example.com/fw', md5sum: 'c'.repeat(32), file_size: 16 });
    await status;
    assert.equal(context.wire.progress('done', '1.0.0').length, 2);
  });

  // The test runtime does not translate, so the error is its message key; the reason is in the substitution.
  for (const [what, message] of [
    ['an unknown state', { topic: '1.0.0', payload: { state: 'finished' } }],
    ['no state', { topic: '1.0.0', payload: {} }],
    ['no version anywhere', { payload: { state: 'done' } }],
    ['a result code that is not a negative integer', { topic: '1.0.0', payload: { state: 'fail', result_code: 'oops' } }],
  ] as const) {
    it(`raises an error for ${what} and sends nothing`, async function () {
      await startFlow();
      const error = waitForEvent<{ args: [Error | string] }>(reportNode, 'call:error');
      const status = statusMatching(reportNode, withStatus('ota-report.status.invalid'));
      reportNode.receive({ ...message });
      const [raised] = (await error).args;
      assert.equal(String(raised instanceof Error ? raised.message : raised), 'ota-report.errors.invalid');
      assert.equal((await status).fill, 'red');
      assert.deepEqual(context.wire.reports, []);
    });
  }

  it('keeps a report made while the cloud is down and delivers it once the cloud is back on the same ports', async function () {
    await startFlow();
    const disconnected = statusMatching(reportNode, withStatus('tencent-iot-device.status.disconnected'));
    await context.sim.stop();
    await disconnected;

    const output = report({ topic: '1.0.0', payload: { state: 'done' } });
    await context.sim.start();
    context.wire.attach(context.sim.simulator.broker);

    const message = await output;
    assert.equal((message.acknowledged as Acknowledged).state, 'done');
    assert.equal((message.versionReport as { result_code: number }).result_code, 0);
    const delivered = await context.wire.waitFor(isProgress('done', '1.0.0'));
    assert.equal(delivered.qos, 1);
    const cloud = await context.sim.console.getDevice(DEVICE.productId, DEVICE.deviceName);
    const history = cloud.ota.history.filter((entry) => entry.type === 'report_progress');
    assert.deepEqual(
      history.map((entry) => [entry.state, entry.version, entry.qos]),
      [['done', '1.0.0', 1]],
    );
    assert.equal(cloud.version, '1.0.0');
  });
});
