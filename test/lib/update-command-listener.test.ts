import { strict as assert } from 'assert';
import { UpdateCommandListener, updateCommandFields, type UpdateCommandPolicy } from '../../lib/update-command-listener';
import { RecordingDevice } from '../support/recording-device';

const VALID = {
  type: 'update_firmware',
  version: '2.0.0',
  url: 'https://firmware.example.com/1250000000_PRODUCT1_2.0.0?sign=abc',
  md5sum: 'B550FE42DEC6FE0BC2D66F23E8074A5D',
  file_size: 511774,
};

function command(fields: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ ...VALID, ...fields }));
}

describe('UpdateCommandListener', function () {
  let device: RecordingDevice;

  beforeEach(async function () {
    device = await RecordingDevice.create('1.0.0');
  });

  afterEach(async function () {
    await device.close();
  });

  const listen = (policy: UpdateCommandPolicy = {}) => new UpdateCommandListener(device, policy);

  it('accepts a valid command, with md5sum in lowercase, and marks it as being handled', async function () {
    const outcome = await listen().handle(command());
    assert.equal(outcome.kind, 'accepted');
    assert.ok(outcome.kind === 'accepted');
    assert.deepEqual(updateCommandFields(outcome.command), {
      version: '2.0.0',
      url: VALID.url,
      md5sum: 'b550fe42dec6fe0bc2d66f23e8074a5d',
      file_size: 511774,
    });
    assert.equal(device.session.current?.version, '2.0.0');
    assert.deepEqual(device.reports, [], 'nothing is reported for a command the flow takes up');
  });

  it('passes user_defined on to the flow', async function () {
    const outcome = await listen().handle(command({ user_defined: '{"channel":"beta"}' }));
    assert.ok(outcome.kind === 'accepted');
    assert.deepEqual(updateCommandFields(outcome.command).user_defined, { channel: 'beta' });
    assert.equal(updateCommandFields(outcome.command).user_defined_text, '{"channel":"beta"}');
  });

  const malformed: Array<{ field: string; change: Record<string, unknown>; says: RegExp }> = [
    { field: 'url', change: { url: 'ftp://firmware.example.com/fw.bin' }, says: /url must be http or https/ },
    { field: 'url', change: { url: 'not a url' }, says: /url .* is not a valid URL/ },
    { field: 'md5sum', change: { md5sum: 'b550fe42dec6fe0b' }, says: /md5sum must be 32 hexadecimal digits/ },
    { field: 'file_size', change: { file_size: 0 }, says: /file_size must be a positive integer/ },
    { field: 'file_size', change: { file_size: '511774' }, says: /file_size must be a positive integer/ },
    { field: 'file_size', change: { file_size: 3 * 1024 * 1024 }, says: /file_size 3145728 is larger than the maximum of 2097152 bytes/ },
  ];
  for (const { field, change, says } of malformed) {
    it(`answers a command with a bad ${field} (${JSON.stringify(change[field])}) with fail -5 naming the field`, async function () {
      const outcome = await listen({ maxFileSize: 2 * 1024 * 1024 }).handle(command(change));
      assert.ok(outcome.kind === 'invalid');
      assert.equal(outcome.field, field);
      assert.equal(outcome.version, '2.0.0');
      assert.equal(device.reports.length, 1);
      const { message, options } = device.reports[0];
      assert.equal(message.report.version, '2.0.0');
      assert.equal(message.report.progress.state, 'fail');
      assert.equal(message.report.progress.result_code, '-5');
      assert.match(message.report.progress.result_msg, /^invalid command: /);
      assert.match(message.report.progress.result_msg, says);
      assert.equal(options.timeoutMs, 0, 'the answer waits for its PUBACK however long it takes');
      assert.equal(device.session.current, undefined);
    });
  }

  it('cannot answer a command whose version is invalid, and says so', async function () {
    const outcome = await listen().handle(command({ version: 'v2.0.0 beta' }));
    assert.ok(outcome.kind === 'invalid');
    assert.equal(outcome.field, 'version');
    assert.equal(outcome.version, undefined);
    assert.match(outcome.reason, /version "v2.0.0 beta" has characters outside/);
    assert.deepEqual(device.reports, []);
  });

  it('tells the cloud done for the version already running, and does not start it', async function () {
    const outcome = await listen().handle(command({ version: '1.0.0' }));
    assert.equal(outcome.kind, 'same-version');
    assert.deepEqual(device.states(), ['done']);
    assert.equal(device.reports[0].message.report.version, '1.0.0');
    assert.equal(device.session.current, undefined);
  });

  it('takes the running version from the last successful update', async function () {
    await device.runningVersions.write('2.0.0');
    const outcome = await listen().handle(command({ version: '2.0.0' }));
    assert.equal(outcome.kind, 'same-version');
  });

  it('starts the running version again when told not to ignore it', async function () {
    const outcome = await listen({ ignoreSameVersion: false }).handle(command({ version: '1.0.0' }));
    assert.equal(outcome.kind, 'accepted');
    assert.deepEqual(device.reports, []);
  });

  it('refuses a downgrade with fail -5 when told to', async function () {
    await device.runningVersions.write('1.2.0');
    const outcome = await listen({ refuseDowngrade: true }).handle(command({ version: '1.1.0' }));
    assert.ok(outcome.kind === 'downgrade');
    assert.equal(outcome.runningVersion, '1.2.0');
    const progress = device.reports[0].message.report.progress;
    assert.deepEqual(progress, { state: 'fail', result_code: '-5', result_msg: 'downgrade from 1.2.0 to 1.1.0 refused' });
    assert.equal(device.session.current, undefined);
  });

  it('compares versions by their numbers, so 1.10.0 is no downgrade from 1.9.0', async function () {
    await device.runningVersions.write('1.9.0');
    const outcome = await listen({ refuseDowngrade: true }).handle(command({ version: '1.10.0' }));
    assert.equal(outcome.kind, 'accepted');
  });

  it('lets a downgrade through by default', async function () {
    const outcome = await listen().handle(command({ version: '0.9.0' }));
    assert.equal(outcome.kind, 'accepted');
  });

  it('does not start the same command twice when it is re-pushed while being handled', async function () {
    const listener = listen();
    const outcomes = await Promise.all([listener.handle(command()), listener.handle(command())]);
    assert.deepEqual(
      outcomes.map((outcome) => outcome.kind),
      ['accepted', 'duplicate'],
    );
    assert.deepEqual(device.reports, []);
  });

  it('starts the command again once its update has ended', async function () {
    const listener = listen();
    await listener.handle(command());
    await device.session.reportFail('2.0.0', -5, 'burn failed');
    assert.equal((await listener.handle(command())).kind, 'accepted');
  });

  it('lets a command for another version replace the one being handled', async function () {
    const listener = listen();
    await listener.handle(command());
    const outcome = await listener.handle(command({ version: '2.0.1', md5sum: '0123456789abcdef0123456789abcdef' }));
    assert.ok(outcome.kind === 'accepted');
    assert.equal(outcome.replaced, true);
    assert.deepEqual(device.states(), ['fail'], 'the replaced update ends with its one final report');
    assert.equal(device.session.current?.version, '2.0.1');
  });

  it('does not start a command when the running version needed for the checks is unknown', async function () {
    const unknown = await RecordingDevice.create('');
    try {
      const outcome = await new UpdateCommandListener(unknown).handle(command());
      assert.ok(outcome.kind === 'no-running-version');
      assert.match(outcome.reason, /no running version/);
      assert.equal(unknown.session.current, undefined);
      assert.deepEqual(unknown.reports, []);
    } finally {
      await unknown.close();
    }
  });

  it('returns the error of an answer that could not be sent', async function () {
    device.failReports = new Error('connection closed');
    const outcome = await listen().handle(command({ md5sum: 'xyz' }));
    assert.equal(outcome.kind, 'invalid');
    assert.equal(outcome.answerError?.message, 'connection closed');
  });
});
