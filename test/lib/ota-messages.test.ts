import { strict as assert } from 'assert';
import {
  DEFAULT_MAX_FIRMWARE_SIZE,
  OtaResultCode,
  PROGRESS_STATES,
  buildReportProgress,
  buildReportVersion,
  buildReportVersionResponse,
  buildUpdateFirmwareCommand,
  otaMessageType,
  parseDeviceReport,
  parseJsonObject,
  parseReportVersionResponse,
  parseUpdateFirmwareCommand,
  reportQos,
  type ParseResult,
} from '../../lib/ota-messages';

/*
 * The examples of PROTOCOL.md §3, as a device or the cloud puts them on the wire. The URL of the
 * update_firmware example is written there with placeholders; a COS URL of the same shape stands in.
 */
const REPORT_VERSION = '{"type":"report_version","report":{"version":"0.1.0"}}';
const REPORT_VERSION_RSP = '{"result_code":0,"result_msg":"success","type":"report_version_rsp","version":"0.1.0"}';
const FIRMWARE_URL =
  'https://ota-1254092559.cos.ap-guangzhou.myqcloud.com/100008273549_E69UADXUYY_0.0.2?sign=q-sign-algorithm%3Dsha1%26q-ak%3DAKIDexample%26q-sign-time%3D1715817600%3B1715904000';
const UPDATE_FIRMWARE = `{"file_size":511774,"md5sum":"b550fe42dec6fe0bc2d66f23e8074a5d","type":"update_firmware","url":"${FIRMWARE_URL}","version":"0.0.2"}`;
const UPDATE_FIRMWARE_EXPLORER = `{"file_size":511774,"md5sum":"b550fe42dec6fe0bc2d66f23e8074a5d","type":"update_firmware","url":"${FIRMWARE_URL}","version":"0.0.2","user_defined":"{\\"time\\":\\"2024-05-16\\"}"}`;
const REPORT_PROGRESS = '{"type":"report_progress","report":{"progress":{"state":"downloading","percent":"13","result_code":"0","result_msg":""},"version":"1.0.0"}}';

const COMMAND = JSON.parse(UPDATE_FIRMWARE) as Record<string, unknown>;

/** The failure of a parse, or an assertion error that shows what was accepted instead. */
function failureOf<T>(result: ParseResult<T>): { field: string; error: string } {
  if (result.ok) assert.fail(`expected a refusal, got ${JSON.stringify(result.value)}`);
  return { field: result.field, error: result.error };
}

function valueOf<T>(result: ParseResult<T>): T {
  if (!result.ok) assert.fail(`expected acceptance, got ${result.field}: ${result.error}`);
  return result.value;
}

describe('OTA messages', () => {
  describe('what the device sends', () => {
    it('builds report_version exactly as the protocol example', () => {
      assert.deepEqual(buildReportVersion('0.1.0'), JSON.parse(REPORT_VERSION));
      assert.deepEqual(buildReportVersion('0.1.0'), { type: 'report_version', report: { version: '0.1.0' } });
    });

    it('builds a downloading report exactly as the protocol example, with percent and result_code as strings', () => {
      const message = buildReportProgress('1.0.0', { state: 'downloading', percent: 13 });
      assert.deepEqual(message, JSON.parse(REPORT_PROGRESS));
      assert.deepEqual(message, {
        type: 'report_progress',
        report: { progress: { state: 'downloading', percent: '13', result_code: '0', result_msg: '' }, version: '1.0.0' },
      });
    });

    const percents: Array<[number, string]> = [
      [0, '0'],
      [13.99, '13'],
      [99.999, '99'],
      [100, '100'],
      [100.5, '100'],
      [250, '100'],
      [-0.5, '0'],
      [-20, '0'],
    ];
    for (const [percent, sent] of percents) {
      it(`sends a downloading percent of ${percent} as "${sent}" (floored, within 0-100)`, () => {
        assert.equal(buildReportProgress('2.0.0', { state: 'downloading', percent }).report.progress.percent, sent);
      });
    }

    for (const state of ['burning', 'done'] as const) {
      it(`builds a ${state} report without percent, result_code "0"`, () => {
        const message = buildReportProgress('2.0.0', { state });
        assert.deepEqual(message, {
          type: 'report_progress',
          report: { progress: { state, result_code: '0', result_msg: '' }, version: '2.0.0' },
        });
        assert.equal(
          JSON.stringify(message),
          `{"type":"report_progress","report":{"progress":{"state":"${state}","result_code":"0","result_msg":""},"version":"2.0.0"}}`,
        );
      });
    }

    it('builds a fail report with the result code as a string and the reason, without percent', () => {
      const message = buildReportProgress('2.0.0', { state: 'fail', resultCode: OtaResultCode.md5Mismatch, resultMessage: 'MD5 mismatch: got 0123' });
      assert.deepEqual(message, {
        type: 'report_progress',
        report: { progress: { state: 'fail', result_code: '-4', result_msg: 'MD5 mismatch: got 0123' }, version: '2.0.0' },
      });
    });

    it('sends each result code of the protocol as the string the SDKs send', () => {
      const sent = [-1, -2, -3, -4, -5].map((resultCode) => buildReportProgress('2.0.0', { state: 'fail', resultCode, resultMessage: 'x' }).report.progress.result_code);
      assert.deepEqual(sent, ['-1', '-2', '-3', '-4', '-5']);
    });

    it('cuts a long fail reason to 256 characters, marking the cut', () => {
      const reason = 'x'.repeat(300) + 'tail';
      const sent = buildReportProgress('2.0.0', { state: 'fail', resultCode: -5, resultMessage: reason }).report.progress.result_msg;
      assert.equal(sent.length, 256);
      assert.equal(sent, `${reason.slice(0, 255)}…`);
    });

    it('writes the control characters of a fail reason as escapes, so that no CR/LF reaches the cloud', () => {
      const sent = buildReportProgress('2.0.0', { state: 'fail', resultCode: -5, resultMessage: 'bad\r\nline\u0000' }).report.progress.result_msg;
      assert.equal(sent, 'bad\\u000d\\u000aline\\u0000');
    });

    it('keeps a fail reason of up to 256 characters whole', () => {
      const reason = 'y'.repeat(256);
      assert.equal(buildReportProgress('2.0.0', { state: 'fail', resultCode: -5, resultMessage: reason }).report.progress.result_msg, reason);
    });

    it('puts the target version, not the running one, in a progress report', () => {
      assert.equal(buildReportProgress('3.1.4', { state: 'burning' }).report.version, '3.1.4');
    });

    it('sends downloading with QoS 0, and burning, done, fail and report_version with QoS 1', () => {
      assert.equal(reportQos(buildReportProgress('2.0.0', { state: 'downloading', percent: 50 })), 0);
      assert.equal(reportQos(buildReportProgress('2.0.0', { state: 'burning' })), 1);
      assert.equal(reportQos(buildReportProgress('2.0.0', { state: 'done' })), 1);
      assert.equal(reportQos(buildReportProgress('2.0.0', { state: 'fail', resultCode: -1, resultMessage: 'timed out' })), 1);
      assert.equal(reportQos(buildReportVersion('1.0.0')), 1);
    });

    it('knows the result codes of the protocol', () => {
      assert.deepEqual(OtaResultCode, {
        success: 0,
        downloadTimeout: -1,
        fileNotFound: -2,
        signatureExpired: -3,
        md5Mismatch: -4,
        upgradeFailed: -5,
      });
    });

    it('knows the four progress states', () => {
      assert.deepEqual([...PROGRESS_STATES], ['downloading', 'burning', 'done', 'fail']);
    });
  });

  describe('what the cloud sends (the stand-in builds it)', () => {
    it('builds report_version_rsp exactly as the protocol example, with result_code a number', () => {
      assert.deepEqual(buildReportVersionResponse('0.1.0'), JSON.parse(REPORT_VERSION_RSP));
    });

    it('builds a refusing report_version_rsp with the given code and message', () => {
      assert.deepEqual(buildReportVersionResponse('0.1.0', -1, 'refused'), {
        type: 'report_version_rsp',
        result_code: -1,
        result_msg: 'refused',
        version: '0.1.0',
      });
    });

    it('builds update_firmware exactly as the protocol example, with file_size a number', () => {
      const command = buildUpdateFirmwareCommand({ version: '0.0.2', url: FIRMWARE_URL, md5sum: 'b550fe42dec6fe0bc2d66f23e8074a5d', file_size: 511774 });
      assert.deepEqual(command, JSON.parse(UPDATE_FIRMWARE));
      assert.equal('user_defined' in command, false);
    });

    it('adds user_defined, as IoT Explorer does, only when there is one', () => {
      const command = buildUpdateFirmwareCommand({
        version: '0.0.2',
        url: FIRMWARE_URL,
        md5sum: 'b550fe42dec6fe0bc2d66f23e8074a5d',
        file_size: 511774,
        user_defined: '{"time":"2024-05-16"}',
      });
      assert.deepEqual(command, JSON.parse(UPDATE_FIRMWARE_EXPLORER));
    });
  });

  describe('parseJsonObject', () => {
    it('reads a JSON object from a Buffer, a string or an object already parsed', () => {
      assert.deepEqual(valueOf(parseJsonObject(Buffer.from(REPORT_VERSION))), JSON.parse(REPORT_VERSION));
      assert.deepEqual(valueOf(parseJsonObject(REPORT_VERSION)), JSON.parse(REPORT_VERSION));
      assert.deepEqual(valueOf(parseJsonObject({ type: 'x' })), { type: 'x' });
    });

    it('says the payload is not valid JSON', () => {
      for (const payload of ['', '{', 'report_version', Buffer.from([0xff, 0x00])]) {
        assert.deepEqual(failureOf(parseJsonObject(payload)), { field: 'payload', error: 'payload is not valid JSON' }, JSON.stringify(payload.toString()));
      }
    });

    it('says a JSON value that is not an object is not a JSON object', () => {
      for (const payload of ['[]', '[{"type":"report_version"}]', 'null', '42', '"update_firmware"', 'true']) {
        assert.deepEqual(failureOf(parseJsonObject(payload)), { field: 'payload', error: 'payload is not a JSON object' }, payload);
      }
    });
  });

  describe('otaMessageType', () => {
    it('names the type of each protocol example', () => {
      assert.equal(otaMessageType(REPORT_VERSION), 'report_version');
      assert.equal(otaMessageType(Buffer.from(REPORT_VERSION_RSP)), 'report_version_rsp');
      assert.equal(otaMessageType(UPDATE_FIRMWARE), 'update_firmware');
      assert.equal(otaMessageType(REPORT_PROGRESS), 'report_progress');
    });

    it('names the type of an unknown message too, whatever else it holds', () => {
      assert.equal(otaMessageType('{"type":"ping"}'), 'ping');
    });

    it('finds no type in a payload that is not JSON, not an object, without type or with a type that is not a string', () => {
      for (const payload of ['not json', '["update_firmware"]', '{}', '{"type":1}', '{"type":null}', '{"Type":"update_firmware"}']) {
        assert.equal(otaMessageType(payload), undefined, payload);
      }
    });
  });

  describe('parseUpdateFirmwareCommand', () => {
    const command = (change: Record<string, unknown>, remove: string[] = []): string => {
      const fields: Record<string, unknown> = { ...COMMAND, ...change };
      for (const name of remove) delete fields[name];
      return JSON.stringify(fields);
    };

    it('accepts the protocol example as it arrives', () => {
      assert.deepEqual(valueOf(parseUpdateFirmwareCommand(Buffer.from(UPDATE_FIRMWARE))), {
        type: 'update_firmware',
        version: '0.0.2',
        url: FIRMWARE_URL,
        md5sum: 'b550fe42dec6fe0bc2d66f23e8074a5d',
        file_size: 511774,
      });
    });

    it('parses the JSON-encoded user_defined string of IoT Explorer into an object, keeping its text', () => {
      const parsed = valueOf(parseUpdateFirmwareCommand(UPDATE_FIRMWARE_EXPLORER));
      assert.deepEqual(parsed.user_defined, { time: '2024-05-16' });
      assert.equal(parsed.user_defined_text, '{"time":"2024-05-16"}');
    });

    it('keeps a user_defined string that is no JSON object as it is', () => {
      const parsed = valueOf(parseUpdateFirmwareCommand(command({ user_defined: 'beta channel' })));
      assert.equal(parsed.user_defined, 'beta channel');
      assert.equal(parsed.user_defined_text, 'beta channel');
    });

    it('passes a user_defined that is not a string through too', () => {
      assert.deepEqual(valueOf(parseUpdateFirmwareCommand(command({ user_defined: { channel: 'beta' } }))).user_defined, { channel: 'beta' });
    });

    it('accepts a command without user_defined and adds none', () => {
      assert.equal('user_defined' in valueOf(parseUpdateFirmwareCommand(UPDATE_FIRMWARE)), false);
    });

    it('lowercases an md5sum sent in capitals', () => {
      assert.equal(valueOf(parseUpdateFirmwareCommand(command({ md5sum: 'B550FE42DEC6FE0BC2D66F23E8074A5D' }))).md5sum, 'b550fe42dec6fe0bc2d66f23e8074a5d');
    });

    it('accepts a plain http URL', () => {
      assert.equal(
        valueOf(parseUpdateFirmwareCommand(command({ url: 'http://127.0.0.1:8080/fw/E69UADXUYY/0.0.2?sign=abc' }))).url,
        'http://127.0.0.1:8080/fw/E69UADXUYY/0.0.2?sign=abc',
      );
    });

    it('accepts a version of exactly 32 characters and every allowed character', () => {
      assert.equal(valueOf(parseUpdateFirmwareCommand(command({ version: 'A'.repeat(32) }))).version, 'A'.repeat(32));
      assert.equal(valueOf(parseUpdateFirmwareCommand(command({ version: 'v1.2.3-rc_1.Z9' }))).version, 'v1.2.3-rc_1.Z9');
    });

    it('accepts file_size 1 and file_size of exactly 1024 MB', () => {
      assert.equal(valueOf(parseUpdateFirmwareCommand(command({ file_size: 1 }))).file_size, 1);
      assert.equal(DEFAULT_MAX_FIRMWARE_SIZE, 1073741824);
      assert.equal(valueOf(parseUpdateFirmwareCommand(command({ file_size: 1073741824 }))).file_size, 1073741824);
    });

    it('says why a payload that is not a JSON object is refused', () => {
      assert.deepEqual(failureOf(parseUpdateFirmwareCommand('{"type":"update_firmware"')), { field: 'payload', error: 'payload is not valid JSON' });
      assert.deepEqual(failureOf(parseUpdateFirmwareCommand(`[${UPDATE_FIRMWARE}]`)), { field: 'payload', error: 'payload is not a JSON object' });
    });

    const refused: Array<{ what: string; payload: string; field: string; error: RegExp | string }> = [
      { what: 'another type', payload: command({ type: 'report_version_rsp' }), field: 'type', error: 'type is "report_version_rsp", expected "update_firmware"' },
      { what: 'no type', payload: command({}, ['type']), field: 'type', error: 'type is "undefined", expected "update_firmware"' },
      { what: 'no version', payload: command({}, ['version']), field: 'version', error: 'version must be a string, got undefined' },
      { what: 'a version that is a number', payload: command({ version: 2 }), field: 'version', error: 'version must be a string, got number' },
      { what: 'an empty version', payload: command({ version: '' }), field: 'version', error: 'version is empty' },
      { what: 'a version of 33 characters', payload: command({ version: '1'.repeat(33) }), field: 'version', error: /^version "1{33}" is longer than 32 characters$/ },
      {
        what: 'a version with a space',
        payload: command({ version: 'v2.0 beta' }),
        field: 'version',
        error: 'version "v2.0 beta" has characters outside [A-Za-z0-9._-]',
      },
      { what: 'a version with a slash', payload: command({ version: '2.0/1' }), field: 'version', error: /has characters outside \[A-Za-z0-9\._-\]/ },
      { what: 'no url', payload: command({}, ['url']), field: 'url', error: 'url is missing' },
      { what: 'a url that is not a string', payload: command({ url: 42 }), field: 'url', error: 'url is missing' },
      { what: 'a url that is not a URL', payload: command({ url: 'not a url' }), field: 'url', error: 'url "not a url" is not a valid URL' },
      { what: 'a relative url', payload: command({ url: '/fw/0.0.2.bin' }), field: 'url', error: 'url "/fw/0.0.2.bin" is not a valid URL' },
      { what: 'an ftp url', payload: command({ url: 'ftp://cos.example.com/fw.bin' }), field: 'url', error: 'url must be http or https, got ftp' },
      { what: 'a file url', payload: command({ url: 'file:///etc/passwd' }), field: 'url', error: 'url must be http or https, got file' },
      { what: 'no md5sum', payload: command({}, ['md5sum']), field: 'md5sum', error: 'md5sum must be 32 hexadecimal digits' },
      { what: 'an md5sum of 31 digits', payload: command({ md5sum: 'b550fe42dec6fe0bc2d66f23e8074a5' }), field: 'md5sum', error: 'md5sum must be 32 hexadecimal digits' },
      {
        what: 'an md5sum of 33 digits',
        payload: command({ md5sum: 'b550fe42dec6fe0bc2d66f23e8074a5d0' }),
        field: 'md5sum',
        error: 'md5sum must be 32 hexadecimal digits',
      },
      {
        what: 'an md5sum with a non-hex digit',
        payload: command({ md5sum: 'g550fe42dec6fe0bc2d66f23e8074a5d' }),
        field: 'md5sum',
        error: 'md5sum must be 32 hexadecimal digits',
      },
      { what: 'an md5sum that is a number', payload: command({ md5sum: 12345 }), field: 'md5sum', error: 'md5sum must be 32 hexadecimal digits' },
      { what: 'no file_size', payload: command({}, ['file_size']), field: 'file_size', error: 'file_size must be a positive integer number of bytes' },
      { what: 'file_size 0', payload: command({ file_size: 0 }), field: 'file_size', error: 'file_size must be a positive integer number of bytes' },
      { what: 'a negative file_size', payload: command({ file_size: -511774 }), field: 'file_size', error: 'file_size must be a positive integer number of bytes' },
      { what: 'a fractional file_size', payload: command({ file_size: 511774.5 }), field: 'file_size', error: 'file_size must be a positive integer number of bytes' },
      { what: 'file_size as a string', payload: command({ file_size: '511774' }), field: 'file_size', error: 'file_size must be a positive integer number of bytes' },
      { what: 'file_size null', payload: command({ file_size: null }), field: 'file_size', error: 'file_size must be a positive integer number of bytes' },
      {
        what: 'a file_size over 1024 MB',
        payload: command({ file_size: 1073741825 }),
        field: 'file_size',
        error: 'file_size 1073741825 is larger than the maximum of 1073741824 bytes',
      },
    ];
    for (const { what, payload, field, error } of refused) {
      it(`refuses a command with ${what}, naming ${field}`, () => {
        const failure = failureOf(parseUpdateFirmwareCommand(payload));
        assert.equal(failure.field, field);
        if (typeof error === 'string') assert.equal(failure.error, error);
        else assert.match(failure.error, error);
      });
    }

    it('cuts a very long invalid url in its error', () => {
      const failure = failureOf(parseUpdateFirmwareCommand(command({ url: 'x'.repeat(500) })));
      assert.equal(failure.field, 'url');
      assert.equal(failure.error, `url "${'x'.repeat(79)}…" is not a valid URL`);
    });

    it('quotes an invalid url and version without their control characters, so that no CR/LF reaches a log line or the cloud', () => {
      const badUrl = failureOf(parseUpdateFirmwareCommand(command({ url: 'no scheme\r\n[error] forged' })));
      assert.equal(badUrl.error, 'url "no scheme\\u000d\\u000a[error] forged" is not a valid URL');
      const badVersion = failureOf(parseUpdateFirmwareCommand(command({ version: '1.0\r\nforged' })));
      assert.doesNotMatch(badVersion.error, /[\r\n]/);
    });

    it('keeps the URL in its parsed form, which is what gets fetched', () => {
      const parsed = parseUpdateFirmwareCommand(command({ url: 'HTTPS://COS.example.com:443/a b/../fw?x=1 2' }));
      assert.ok(parsed.ok);
      assert.equal(parsed.value.url, 'https://cos.example.com/fw?x=1%202');
    });

    it('applies a smaller file_size limit given by the caller, accepting the limit itself', () => {
      assert.equal(valueOf(parseUpdateFirmwareCommand(command({ file_size: 2097152 }), { maxFileSize: 2097152 })).file_size, 2097152);
      assert.deepEqual(failureOf(parseUpdateFirmwareCommand(command({ file_size: 2097153 }), { maxFileSize: 2097152 })), {
        field: 'file_size',
        error: 'file_size 2097153 is larger than the maximum of 2097152 bytes',
      });
    });

    it('applies a larger file_size limit given by the caller', () => {
      assert.equal(valueOf(parseUpdateFirmwareCommand(command({ file_size: 2147483648 }), { maxFileSize: 4294967296 })).file_size, 2147483648);
    });
  });

  describe('parseReportVersionResponse', () => {
    it('accepts the protocol example as it arrives', () => {
      assert.deepEqual(valueOf(parseReportVersionResponse(Buffer.from(REPORT_VERSION_RSP))), {
        type: 'report_version_rsp',
        result_code: 0,
        result_msg: 'success',
        version: '0.1.0',
      });
    });

    it('accepts result_code as a number or as a string, and gives it back as a number', () => {
      const reply = (code: unknown) => JSON.stringify({ type: 'report_version_rsp', result_code: code, result_msg: 'm', version: '1.0.0' });
      assert.equal(valueOf(parseReportVersionResponse(reply(0))).result_code, 0);
      assert.equal(valueOf(parseReportVersionResponse(reply('0'))).result_code, 0);
      assert.equal(valueOf(parseReportVersionResponse(reply(-1))).result_code, -1);
      assert.equal(valueOf(parseReportVersionResponse(reply('-1'))).result_code, -1);
      assert.equal(valueOf(parseReportVersionResponse(reply(1001))).result_code, 1001);
    });

    it('takes a missing result_msg or version as empty', () => {
      assert.deepEqual(valueOf(parseReportVersionResponse('{"type":"report_version_rsp","result_code":0}')), {
        type: 'report_version_rsp',
        result_code: 0,
        result_msg: '',
        version: '',
      });
    });

    it('refuses another type, naming type', () => {
      assert.deepEqual(failureOf(parseReportVersionResponse(UPDATE_FIRMWARE)), {
        field: 'type',
        error: 'type is "update_firmware", expected "report_version_rsp"',
      });
    });

    it('refuses a payload that is not JSON, naming payload', () => {
      assert.equal(failureOf(parseReportVersionResponse('success')).field, 'payload');
    });

    for (const code of [undefined, null, 'abc', 1.5, '1.5', true, [0], {}]) {
      it(`refuses result_code ${JSON.stringify(code) ?? 'missing'}, naming result_code`, () => {
        const payload = JSON.stringify({ type: 'report_version_rsp', result_code: code, result_msg: 'success', version: '0.1.0' });
        assert.deepEqual(failureOf(parseReportVersionResponse(payload)), { field: 'result_code', error: 'result_code must be an integer' });
      });
    }

    it('refuses a result_code string that is not a decimal integer ("", " ", "0x10", "1e3"), naming result_code', () => {
      // parseDeviceReport accepts only decimal digits for its result_code; an empty code here must not read as success (0).
      const accepted: string[] = [];
      for (const code of ['', ' ', '0x10', '1e3']) {
        const payload = JSON.stringify({ type: 'report_version_rsp', result_code: code, result_msg: 'success', version: '0.1.0' });
        const result = parseReportVersionResponse(payload);
        if (result.ok) accepted.push(`${JSON.stringify(code)} as ${result.value.result_code}`);
        else assert.deepEqual({ field: result.field, error: result.error }, { field: 'result_code', error: 'result_code must be an integer' });
      }
      assert.deepEqual(
        accepted,
        [],
        `lib/ota-messages.ts parseReportVersionResponse converts a string result_code with Number(), so it accepts ${accepted.join(', ')}; ` +
          'an empty or blank code is taken for success (0)',
      );
    });
  });

  describe('parseDeviceReport', () => {
    const progress = (fields: Record<string, unknown>, version: unknown = '2.0.0') => JSON.stringify({ type: 'report_progress', report: { progress: fields, version } });
    /** The progress read from a report that must be a report_progress. */
    const progressOf = (payload: string) => {
      const report = valueOf(parseDeviceReport(payload));
      if (report.type !== 'report_progress') assert.fail(`expected report_progress, got ${report.type}`);
      return report.progress;
    };

    it('reads the report_version example', () => {
      assert.deepEqual(valueOf(parseDeviceReport(Buffer.from(REPORT_VERSION))), { type: 'report_version', version: '0.1.0' });
    });

    it('reads the report_progress example, with the percent back as a number', () => {
      assert.deepEqual(valueOf(parseDeviceReport(REPORT_PROGRESS)), {
        type: 'report_progress',
        version: '1.0.0',
        progress: { state: 'downloading', percent: 13 },
      });
    });

    it('reads what the device builds, for every state', () => {
      const reports = [
        { state: 'downloading', percent: 0 },
        { state: 'downloading', percent: 100 },
        { state: 'burning' },
        { state: 'done' },
        { state: 'fail', resultCode: -4, resultMessage: 'MD5 mismatch' },
      ] as const;
      for (const report of reports) {
        assert.deepEqual(valueOf(parseDeviceReport(JSON.stringify(buildReportProgress('2.0.0', report)))), {
          type: 'report_progress',
          version: '2.0.0',
          progress: report,
        });
      }
    });

    it('reads a fail report with result_code as a string or a number', () => {
      for (const code of ['-4', -4]) {
        assert.deepEqual(progressOf(progress({ state: 'fail', result_code: code, result_msg: 'time_out' })), {
          state: 'fail',
          resultCode: -4,
          resultMessage: 'time_out',
        });
      }
    });

    it('reads a fail report without result_msg with an empty reason', () => {
      assert.deepEqual(progressOf(progress({ state: 'fail', result_code: '-1' })), {
        state: 'fail',
        resultCode: -1,
        resultMessage: '',
      });
    });

    it('reads a downloading percent sent as a number', () => {
      assert.deepEqual(progressOf(progress({ state: 'downloading', percent: 42, result_code: '0', result_msg: '' })), {
        state: 'downloading',
        percent: 42,
      });
    });

    const refused: Array<{ what: string; payload: string; field: string; error: RegExp | string }> = [
      { what: 'a payload that is not JSON', payload: '{"type":"report_version"', field: 'payload', error: 'payload is not valid JSON' },
      { what: 'no report', payload: '{"type":"report_version"}', field: 'report', error: 'report is missing' },
      { what: 'report null', payload: '{"type":"report_version","report":null}', field: 'report', error: 'report is missing' },
      { what: 'no report.version', payload: '{"type":"report_version","report":{}}', field: 'report.version', error: 'version must be a string, got undefined' },
      {
        what: 'report.version a number',
        payload: '{"type":"report_version","report":{"version":1}}',
        field: 'report.version',
        error: 'version must be a string, got number',
      },
      { what: 'report.version empty', payload: '{"type":"report_version","report":{"version":""}}', field: 'report.version', error: 'version is empty' },
      {
        what: 'report.version of 33 characters',
        payload: JSON.stringify({ type: 'report_version', report: { version: 'a'.repeat(33) } }),
        field: 'report.version',
        error: /longer than 32 characters/,
      },
      {
        what: 'report.version with bad characters',
        payload: '{"type":"report_version","report":{"version":"1.0 (beta)"}}',
        field: 'report.version',
        error: 'version "1.0 (beta)" has characters outside [A-Za-z0-9._-]',
      },
      {
        what: 'the version outside report',
        payload: '{"type":"report_version","version":"1.0.0","report":{}}',
        field: 'report.version',
        error: 'version must be a string, got undefined',
      },
      {
        what: 'a type that is no device report',
        payload: '{"type":"update_firmware","report":{"version":"1.0.0"}}',
        field: 'type',
        error: 'type "update_firmware" is not a device report',
      },
      { what: 'no type', payload: '{"report":{"version":"1.0.0"}}', field: 'type', error: 'type "undefined" is not a device report' },
      { what: 'no report.progress', payload: '{"type":"report_progress","report":{"version":"1.0.0"}}', field: 'report.progress', error: 'report.progress is missing' },
      {
        what: 'no state',
        payload: progress({ percent: '10', result_code: '0', result_msg: '' }),
        field: 'report.progress.state',
        error: 'state "undefined" is not one of downloading, burning, done, fail',
      },
      {
        what: 'an unknown state',
        payload: progress({ state: 'installing', result_code: '0', result_msg: '' }),
        field: 'report.progress.state',
        error: 'state "installing" is not one of downloading, burning, done, fail',
      },
      {
        what: 'a state in capitals',
        payload: progress({ state: 'DONE', result_code: '0', result_msg: '' }),
        field: 'report.progress.state',
        error: /state "DONE" is not one of/,
      },
      {
        what: 'a downloading report without percent',
        payload: progress({ state: 'downloading', result_code: '0', result_msg: '' }),
        field: 'report.progress.percent',
        error: 'percent must be an integer from 0 to 100',
      },
      {
        what: 'percent "101"',
        payload: progress({ state: 'downloading', percent: '101', result_code: '0', result_msg: '' }),
        field: 'report.progress.percent',
        error: 'percent must be an integer from 0 to 100',
      },
      {
        what: 'percent "-1"',
        payload: progress({ state: 'downloading', percent: '-1', result_code: '0', result_msg: '' }),
        field: 'report.progress.percent',
        error: 'percent must be an integer from 0 to 100',
      },
      {
        what: 'percent "13.5"',
        payload: progress({ state: 'downloading', percent: '13.5', result_code: '0', result_msg: '' }),
        field: 'report.progress.percent',
        error: 'percent must be an integer from 0 to 100',
      },
      {
        what: 'percent 13.5',
        payload: progress({ state: 'downloading', percent: 13.5, result_code: '0', result_msg: '' }),
        field: 'report.progress.percent',
        error: 'percent must be an integer from 0 to 100',
      },
      {
        what: 'percent "13%"',
        payload: progress({ state: 'downloading', percent: '13%', result_code: '0', result_msg: '' }),
        field: 'report.progress.percent',
        error: 'percent must be an integer from 0 to 100',
      },
      {
        what: 'percent ""',
        payload: progress({ state: 'downloading', percent: '', result_code: '0', result_msg: '' }),
        field: 'report.progress.percent',
        error: 'percent must be an integer from 0 to 100',
      },
      {
        what: 'a fail report without result_code',
        payload: progress({ state: 'fail', result_msg: 'time_out' }),
        field: 'report.progress.result_code',
        error: 'result_code must be an integer',
      },
      {
        what: 'result_code "-4.0"',
        payload: progress({ state: 'fail', result_code: '-4.0', result_msg: 'x' }),
        field: 'report.progress.result_code',
        error: 'result_code must be an integer',
      },
      {
        what: 'result_code "abc"',
        payload: progress({ state: 'fail', result_code: 'abc', result_msg: 'x' }),
        field: 'report.progress.result_code',
        error: 'result_code must be an integer',
      },
      {
        what: 'result_code ""',
        payload: progress({ state: 'fail', result_code: '', result_msg: 'x' }),
        field: 'report.progress.result_code',
        error: 'result_code must be an integer',
      },
      {
        what: 'a progress report with a bad target version',
        payload: progress({ state: 'done', result_code: '0', result_msg: '' }, '2.0.0!'),
        field: 'report.version',
        error: /has characters outside/,
      },
    ];
    for (const { what, payload, field, error } of refused) {
      it(`refuses a report with ${what}, naming ${field}`, () => {
        const failure = failureOf(parseDeviceReport(payload));
        assert.equal(failure.field, field);
        if (typeof error === 'string') assert.equal(failure.error, error);
        else assert.match(failure.error, error);
      });
    }
  });
});
