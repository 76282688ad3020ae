import { strict as assert } from 'assert';
import type { NodeMessage } from '../../nodes/common/node-red-runtime';
import { getNode, loadFlow, nodeModules, statusMatching, unloadFlow, waitForEvent, type TestNode } from '../support/node-red-test-runtime';
import { DEVICE, isProgress, startOtaFlowContext, withStatus, type OtaFlowContext } from '../support/ota-flow';

const MD5 = '0123456789abcdef0123456789abcdef';

function updateCommand(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'update_firmware',
    version: '1.0.0',
    url: 'https://firmware.example.com/1250000000_PRODUCT1_1.0.0?sign=abc',
    md5sum: MD5,
    file_size: 4096,
    ...fields,
  };
}

describe('ota-update-in node', function () {
  let context: OtaFlowContext;
  let listener: TestNode;
  /** Every message the node emitted, in order. */
  let emitted: NodeMessage[];
  let output: TestNode;

  beforeEach(async function () {
    context = await startOtaFlowContext();
  });

  afterEach(async function () {
    await unloadFlow();
    await context.close();
  });

  async function startFlow(options: Record<string, unknown> = {}, deviceOptions: Record<string, unknown> = {}): Promise<void> {
    const subscribed = context.subscribed();
    await loadFlow(
      [nodeModules.tencentIotDevice, nodeModules.otaUpdateIn],
      [context.deviceNode(deviceOptions), { id: 'in', type: 'ota-update-in', device: 'dev', wires: [['out']], ...options }, { id: 'out', type: 'helper' }],
      context.credentials,
    );
    listener = getNode('in');
    output = getNode('out');
    emitted = [];
    output.on('input', (message: NodeMessage) => emitted.push(message));
    await subscribed;
  }

  /** Pushes a valid command for another version and waits for it: whatever came before was not emitted unless it is in `emitted`. */
  async function pushAndReceive(version: string): Promise<NodeMessage> {
    const received = waitForEvent<NodeMessage>(output, 'input');
    await context.push(updateCommand({ version }));
    return received;
  }

  it('logs messages on the update topic that are not OTA messages, at most once per interval', async function () {
    await startFlow();
    const deviceNode = getNode('dev');
    const warnings: string[] = [];
    deviceNode.on('call:warn', (call: { args: [string] }) => warnings.push(String(call.args[0])));
    await context.push('not json at all');
    await context.push({ type: 'reboot_now' });
    await context.push({ no: 'type' });
    // A valid command after them: once it is out, the three came and went.
    await pushAndReceive('1.0.0');
    assert.deepEqual(warnings, ['tencent-iot-device.log.unknown-message'], 'one line for the first, the rest are counted into the next');
    assert.deepEqual(
      emitted.map((message) => message.topic),
      ['1.0.0'],
    );
  });

  it('emits the command of an update task started on the console, with the target version as topic', async function () {
    await startFlow();
    const firmware = await context.sim.uploadFirmware(DEVICE.productId, '1.0.0', Buffer.alloc(5000, 7));
    const received = waitForEvent<NodeMessage>(output, 'input');
    const status = statusMatching(listener, withStatus('ota-update-in.status.update', { version: '1.0.0' }));
    await context.sim.console.startUpdate({ productId: DEVICE.productId, version: '1.0.0', deviceNames: [DEVICE.deviceName] });
    const message = await received;
    assert.equal(message.topic, '1.0.0');
    const payload = message.payload as Record<string, unknown>;
    assert.deepEqual(Object.keys(payload).sort(), ['file_size', 'md5sum', 'url', 'version']);
    assert.equal(payload.version, '1.0.0');
    assert.equal(payload.md5sum, firmware.md5sum);
    assert.equal(payload.file_size, 5000);
    assert.match(String(payload.url), /^https:\/\/127\.0\.0\.1:\d+\//);
    assert.equal((await status).fill, 'green');
    assert.deepEqual(context.wire.reports, [], 'a command taken up is not answered');
  });

  it('passes user_defined on, parsed with its text kept, and writes md5sum in lowercase', async function () {
    await startFlow();
    const received = waitForEvent<NodeMessage>(output, 'input');
    await context.push(updateCommand({ md5sum: MD5.toUpperCase(), user_defined: '{"channel":"beta"}' }));
    const payload = (await received).payload as Record<string, unknown>;
    assert.equal(payload.md5sum, MD5);
    assert.deepEqual(payload.user_defined, { channel: 'beta' });
    assert.equal(payload.user_defined_text, '{"channel":"beta"}');
  });

  const malformed: Array<{ field: string; change: Record<string, unknown>; says: RegExp }> = [
    { field: 'url', change: { url: 'ftp://firmware.example.com/fw.bin' }, says: /^invalid command: url must be http or https, got ftp$/ },
    { field: 'url', change: { url: 42 }, says: /^invalid command: url is missing$/ },
    { field: 'md5sum', change: { md5sum: 'not-an-md5' }, says: /^invalid command: md5sum must be 32 hexadecimal digits$/ },
    { field: 'file_size', change: { file_size: -1 }, says: /^invalid command: file_size must be a positive integer number of bytes$/ },
    { field: 'file_size', change: { file_size: 1.5 }, says: /^invalid command: file_size must be a positive integer number of bytes$/ },
    { field: 'file_size', change: { file_size: 2 * 1024 * 1024 }, says: /^invalid command: file_size 2097152 is larger than the maximum of 1048576 bytes$/ },
  ];
  for (const { field, change, says } of malformed) {
    it(`reports a command with a bad ${field} (${JSON.stringify(change[field])}) in the status, the debug sidebar and to the cloud as fail -5`, async function () {
      await startFlow({ maxFileSize: 1 });
      const status = statusMatching(listener, withStatus('ota-update-in.status.invalid', { field }));
      const error = waitForEvent<{ args: [string, NodeMessage] }>(listener, 'call:error');
      await context.push(updateCommand(change));

      const [text, details] = (await error).args;
      assert.equal(text, 'ota-update-in.errors.invalid');
      assert.equal(details.field, field);
      assert.match(String(details.reason), says);
      assert.equal((await status).fill, 'red');

      const report = await context.wire.waitFor(isProgress('fail', '1.0.0'));
      assert.equal(report.qos, 1);
      assert.equal(report.message.report?.progress?.result_code, '-5');
      assert.match(report.message.report?.progress?.result_msg ?? '', says);

      assert.equal((await pushAndReceive('1.0.1')).topic, '1.0.1');
      assert.equal(emitted.length, 1, 'the malformed command was not emitted');
    });
  }

  it('cannot answer the cloud for a command whose version is invalid, and shows it', async function () {
    await startFlow();
    const status = statusMatching(listener, withStatus('ota-update-in.status.invalid'));
    const error = waitForEvent<{ args: [string, NodeMessage] }>(listener, 'call:error');
    await context.push(updateCommand({ version: '1.0.0 final' }));
    await status;
    assert.equal((await error).args[1].field, 'version');
    assert.deepEqual(context.wire.reports, []);
    assert.equal((await pushAndReceive('1.0.1')).topic, '1.0.1');
    assert.equal(emitted.length, 1);
  });

  it('ignores a command for the version already running and tells the cloud done for it', async function () {
    await startFlow({}, { runningVersion: '1.0.0' });
    const status = statusMatching(listener, withStatus('ota-update-in.status.same-version', { version: '1.0.0' }));
    await context.push(updateCommand({ version: '1.0.0' }));
    await status;
    const report = context.wire.progress('done', '1.0.0');
    assert.equal(report.length, 1, 'done is acknowledged before the status shows');
    assert.equal(report[0].qos, 1);
    assert.deepEqual(report[0].message.report?.progress, { state: 'done', result_code: '0', result_msg: '' });
    assert.equal((await pushAndReceive('1.0.1')).topic, '1.0.1');
    assert.equal(emitted.length, 1);
  });

  it('emits a command for the running version when told not to ignore it', async function () {
    await startFlow({ ignoreSameVersion: false }, { runningVersion: '1.0.0' });
    assert.equal((await pushAndReceive('1.0.0')).topic, '1.0.0');
    assert.deepEqual(context.wire.reports, []);
  });

  it('refuses a downgrade when told to, telling the cloud why', async function () {
    await startFlow({ refuseDowngrade: true }, { runningVersion: '1.2.0' });
    const status = statusMatching(listener, withStatus('ota-update-in.status.downgrade'));
    await context.push(updateCommand({ version: '1.1.0' }));
    assert.equal((await status).fill, 'yellow');
    const [report] = context.wire.progress('fail', '1.1.0');
    assert.equal(report.qos, 1);
    assert.deepEqual(report.message.report?.progress, { state: 'fail', result_code: '-5', result_msg: 'downgrade from 1.2.0 to 1.1.0 refused' });
    assert.equal((await pushAndReceive('1.3.0')).topic, '1.3.0');
    assert.equal(emitted.length, 1);
  });

  it('does not emit the same command twice when the cloud re-pushes it while it is handled', async function () {
    await startFlow();
    assert.equal((await pushAndReceive('1.0.0')).topic, '1.0.0');
    const status = statusMatching(listener, withStatus('ota-update-in.status.duplicate', { version: '1.0.0' }));
    await context.push(updateCommand({ version: '1.0.0' }));
    assert.equal((await status).fill, 'grey');
    assert.equal((await pushAndReceive('2.0.0')).topic, '2.0.0');
    assert.deepEqual(
      emitted.map((message) => message.topic),
      ['1.0.0', '2.0.0'],
    );
    assert.deepEqual(
      context.wire.reports.map((report) => [report.message.report?.version, report.message.report?.progress]),
      [['1.0.0', { state: 'fail', result_code: '-5', result_msg: 'superseded by version 2.0.0' }]],
      'the update the new command replaced ends with its one final report',
    );
  });
});
