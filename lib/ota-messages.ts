/**
 * The OTA messages of PROTOCOL.md §3 as types, with one builder for each message a device sends
 * and one strict parser for each message it receives (and, for the stand-in, the reverse).
 * Numbers a device sends are JSON strings; numbers the cloud sends are JSON numbers.
 */
import { describeInvalidFirmwareVersion, type FirmwareVersion } from './firmware-version';
import { printable } from './printable-text';

/** result_code values of report_progress. */
export const OtaResultCode = {
  success: 0,
  downloadTimeout: -1,
  fileNotFound: -2,
  signatureExpired: -3,
  md5Mismatch: -4,
  upgradeFailed: -5,
} as const;
export type OtaResultCodeValue = (typeof OtaResultCode)[keyof typeof OtaResultCode];

export type ProgressState = 'downloading' | 'burning' | 'done' | 'fail';
export const PROGRESS_STATES: readonly ProgressState[] = ['downloading', 'burning', 'done', 'fail'];

export interface ReportVersionMessage {
  type: 'report_version';
  report: { version: string };
}

export interface ReportVersionResponse {
  type: 'report_version_rsp';
  result_code: number;
  result_msg: string;
  version: string;
}

export interface UpdateFirmwareCommand {
  type: 'update_firmware';
  version: string;
  url: string;
  md5sum: string;
  file_size: number;
  user_defined?: unknown;
}

/** 32 lowercase hexadecimal digits, checked once where they came in. */
export type Md5Hex = string & { readonly __brand: 'Md5Hex' };

/**
 * An update_firmware command as parseUpdateFirmwareCommand accepted it: every field checked, the URL
 * in its parsed (WHATWG) form, the md5sum in lowercase. The rest of the pipeline trusts it.
 */
export interface UpdateCommand extends UpdateFirmwareCommand {
  readonly version: FirmwareVersion;
  readonly md5sum: Md5Hex;
  /** IoT Explorer's user_defined as it came: a JSON-encoded string, which user_defined holds parsed when it is a JSON object. */
  readonly user_defined_text?: string;
}

export interface ReportProgressMessage {
  type: 'report_progress';
  report: {
    progress: { state: ProgressState; percent?: string; result_code: string; result_msg: string };
    version: string;
  };
}

/** A progress report as the device means it, before it is put into the wire's strings. */
export type ProgressReport =
  { state: 'downloading'; percent: number } | { state: 'burning' } | { state: 'done' } | { state: 'fail'; resultCode: number; resultMessage: string };

export type ParseResult<T> = { ok: true; value: T } | { ok: false; field: string; error: string };

function fail<T>(field: string, error: string): ParseResult<T> {
  return { ok: false, field, error };
}

export function buildReportVersion(version: string): ReportVersionMessage {
  return { type: 'report_version', report: { version } };
}

export function buildReportProgress(version: string, report: ProgressReport): ReportProgressMessage {
  switch (report.state) {
    case 'downloading': {
      const percent = Math.max(0, Math.min(100, Math.floor(report.percent)));
      return {
        type: 'report_progress',
        report: { progress: { state: 'downloading', percent: String(percent), result_code: '0', result_msg: '' }, version },
      };
    }
    case 'burning':
    case 'done':
      return { type: 'report_progress', report: { progress: { state: report.state, result_code: '0', result_msg: '' }, version } };
    case 'fail':
      return {
        type: 'report_progress',
        report: {
          progress: { state: 'fail', result_code: String(report.resultCode), result_msg: printable(report.resultMessage, 256) },
          version,
        },
      };
  }
}

/** QoS of each device report (PROTOCOL.md §2): downloading 0, everything else 1. */
export function reportQos(message: ReportVersionMessage | ReportProgressMessage): 0 | 1 {
  return message.type === 'report_progress' && message.report.progress.state === 'downloading' ? 0 : 1;
}

export function buildReportVersionResponse(version: string, resultCode = 0, resultMessage = 'success'): ReportVersionResponse {
  return { type: 'report_version_rsp', result_code: resultCode, result_msg: resultMessage, version };
}

export function buildUpdateFirmwareCommand(fields: Omit<UpdateFirmwareCommand, 'type'>): UpdateFirmwareCommand {
  const command: UpdateFirmwareCommand = {
    type: 'update_firmware',
    version: fields.version,
    url: fields.url,
    md5sum: fields.md5sum,
    file_size: fields.file_size,
  };
  if (fields.user_defined !== undefined) command.user_defined = fields.user_defined;
  return command;
}

/** Parses a payload (Buffer, string or object) into a JSON object, or says why it is not one. */
export function parseJsonObject(payload: Buffer | string | object): ParseResult<Record<string, unknown>> {
  let value: unknown = payload;
  if (Buffer.isBuffer(payload) || typeof payload === 'string') {
    try {
      value = JSON.parse(payload.toString());
    } catch {
      return fail('payload', 'payload is not valid JSON');
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail('payload', 'payload is not a JSON object');
  }
  return { ok: true, value: value as Record<string, unknown> };
}

function checkVersion<T>(value: unknown, field = 'version'): ParseResult<T> | undefined {
  const problem = describeInvalidFirmwareVersion(value);
  return problem ? fail(field, problem) : undefined;
}

/** The `type` of an OTA message, whatever else it holds; undefined when there is none. */
export function otaMessageType(payload: Buffer | string | object): string | undefined {
  const parsed = parseJsonObject(payload);
  return parsed.ok && typeof parsed.value.type === 'string' ? parsed.value.type : undefined;
}

export interface UpdateCommandLimits {
  /** Largest file_size accepted, in bytes (default 1 GiB, the console's limit). */
  maxFileSize?: number;
}

export const DEFAULT_MAX_FIRMWARE_SIZE = 1024 * 1024 * 1024;

/** IoT Explorer's user_defined is a JSON-encoded string: the object it encodes, else the value as it came. */
function parseUserDefined(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    const parsed: unknown = JSON.parse(value);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? parsed : value;
  } catch {
    return value;
  }
}

export function parseUpdateFirmwareCommand(payload: Buffer | string | object, limits: UpdateCommandLimits = {}): ParseResult<UpdateCommand> {
  const parsed = parseJsonObject(payload);
  if (!parsed.ok) return parsed;
  const message = parsed.value;
  if (message.type !== 'update_firmware') return fail('type', `type is "${printable(String(message.type), 40)}", expected "update_firmware"`);
  const badVersion = checkVersion<UpdateCommand>(message.version);
  if (badVersion) return badVersion;
  if (typeof message.url !== 'string') return fail('url', 'url is missing');
  let url: URL;
  try {
    url = new URL(message.url);
  } catch {
    return fail('url', `url "${printable(message.url, 80)}" is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return fail('url', `url must be http or https, got ${printable(url.protocol.replace(':', ''), 20)}`);
  }
  if (typeof message.md5sum !== 'string' || !/^[0-9a-fA-F]{32}$/.test(message.md5sum)) {
    return fail('md5sum', 'md5sum must be 32 hexadecimal digits');
  }
  const maxFileSize = limits.maxFileSize ?? DEFAULT_MAX_FIRMWARE_SIZE;
  const size = message.file_size;
  if (typeof size !== 'number' || !Number.isInteger(size) || size <= 0) {
    return fail('file_size', 'file_size must be a positive integer number of bytes');
  }
  if (size > maxFileSize) return fail('file_size', `file_size ${size} is larger than the maximum of ${maxFileSize} bytes`);
  const command = buildUpdateFirmwareCommand({
    version: message.version as string,
    // The parsed form is what gets fetched, so that what was checked is what is used.
    url: url.href,
    md5sum: message.md5sum.toLowerCase(),
    file_size: size,
    user_defined: parseUserDefined(message.user_defined),
  });
  if (typeof message.user_defined === 'string') return { ok: true, value: { ...command, user_defined_text: message.user_defined } as UpdateCommand };
  return { ok: true, value: command as UpdateCommand };
}

export function parseReportVersionResponse(payload: Buffer | string | object): ParseResult<ReportVersionResponse> {
  const parsed = parseJsonObject(payload);
  if (!parsed.ok) return parsed;
  const message = parsed.value;
  if (message.type !== 'report_version_rsp') return fail('type', `type is "${printable(String(message.type), 40)}", expected "report_version_rsp"`);
  // The SDKs' cloud sends a number; a string of decimal digits is taken too, nothing looser ("" is no 0).
  const code = typeof message.result_code === 'string' && /^-?\d+$/.test(message.result_code.trim()) ? Number(message.result_code) : message.result_code;
  if (typeof code !== 'number' || !Number.isInteger(code)) return fail('result_code', 'result_code must be an integer');
  return {
    ok: true,
    value: {
      type: 'report_version_rsp',
      result_code: code,
      result_msg: typeof message.result_msg === 'string' ? message.result_msg : '',
      version: typeof message.version === 'string' ? message.version : '',
    },
  };
}

/** What the cloud reads from a device report: either message, with numbers back as numbers. */
export type DeviceReport = { type: 'report_version'; version: string } | { type: 'report_progress'; version: string; progress: ProgressReport };

export function parseDeviceReport(payload: Buffer | string | object): ParseResult<DeviceReport> {
  const parsed = parseJsonObject(payload);
  if (!parsed.ok) return parsed;
  const message = parsed.value;
  const report = message.report;
  if (typeof report !== 'object' || report === null) return fail('report', 'report is missing');
  const reportFields = report as Record<string, unknown>;
  const badVersion = checkVersion<DeviceReport>(reportFields.version, 'report.version');
  if (badVersion) return badVersion;
  const version = reportFields.version as string;
  if (message.type === 'report_version') return { ok: true, value: { type: 'report_version', version } };
  if (message.type !== 'report_progress') return fail('type', `type "${printable(String(message.type), 40)}" is not a device report`);
  const progress = reportFields.progress;
  if (typeof progress !== 'object' || progress === null) return fail('report.progress', 'report.progress is missing');
  const fields = progress as Record<string, unknown>;
  const state = fields.state;
  if (typeof state !== 'string' || !(PROGRESS_STATES as readonly string[]).includes(state)) {
    return fail('report.progress.state', `state "${String(state)}" is not one of ${PROGRESS_STATES.join(', ')}`);
  }
  const asInteger = (value: unknown): number | undefined => {
    const text = typeof value === 'number' ? String(value) : value;
    return typeof text === 'string' && /^-?\d+$/.test(text) ? Number(text) : undefined;
  };
  switch (state as ProgressState) {
    case 'downloading': {
      const percent = asInteger(fields.percent);
      if (percent === undefined || percent < 0 || percent > 100) {
        return fail('report.progress.percent', 'percent must be an integer from 0 to 100');
      }
      return { ok: true, value: { type: 'report_progress', version, progress: { state: 'downloading', percent } } };
    }
    case 'fail': {
      const resultCode = asInteger(fields.result_code);
      if (resultCode === undefined) return fail('report.progress.result_code', 'result_code must be an integer');
      const resultMessage = typeof fields.result_msg === 'string' ? fields.result_msg : '';
      return { ok: true, value: { type: 'report_progress', version, progress: { state: 'fail', resultCode, resultMessage } } };
    }
    default:
      return { ok: true, value: { type: 'report_progress', version, progress: { state: state as 'burning' | 'done' } } };
  }
}

/** The command of these fields, checked as parseUpdateFirmwareCommand does; throws when a field is wrong. */
export function checkedUpdateCommand(fields: Omit<UpdateFirmwareCommand, 'type'>, limits: UpdateCommandLimits = {}): UpdateCommand {
  const parsed = parseUpdateFirmwareCommand(buildUpdateFirmwareCommand(fields), limits);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}
