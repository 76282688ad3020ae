/**
 * What flows between the OTA nodes, written down once: msg.payload is the update command as
 * ota-update-in emits it, msg.topic its target version, msg.firmware the file once downloaded,
 * and msg.payload.state what ota-report is asked to send. Plus the readers of these loosely
 * typed fields.
 */
import type { DownloadResult } from '../../lib/resumable-download';
import type { NodeMessage } from './node-red-runtime';

/** msg.firmware after ota-download: an absolute path inside the device's downloads folder. */
export interface FirmwareFileFields {
  path: string;
  version: string;
  size: number;
  md5: string;
  sha256?: string;
}

/** Messages come from any node of the flow: each field is read as unknown and written as typed here. */
export interface UpdateFlowMessage extends NodeMessage {
  /** The target version. */
  topic?: string;
  /**
   * The command from ota-update-in (UpdateCommandFields), or for ota-report a state ('burning',
   * 'done', 'fail') or {state, result_code, result_msg}. Read with messageField: a flow may put anything here.
   */
  payload?: unknown;
  /** FirmwareFileFields once downloaded; read with messageField, as a flow may put anything here. */
  firmware?: unknown;
  /** After ota-verify: the digests of the file on disk (sha256 when one was checked or computed). */
  verified?: { md5: string; sha256?: string; signature?: { alg: string; keyId: string } };
  /** A firmware signature {alg, sig, keyId} the flow found itself; else ota-verify takes user_defined's. */
  signature?: unknown;
  /** After a failed ota-verify: what the cloud was told. */
  error?: { resultCode: number; reason: string };
  /** After ota-report: when the cloud acknowledged the report. */
  acknowledged?: { state: string; version: string; at: string };
}

export function firmwareFields(result: DownloadResult): FirmwareFileFields {
  const fields: FirmwareFileFields = { path: result.path, version: result.version, size: result.size, md5: result.md5 };
  if (result.sha256 !== undefined) fields.sha256 = result.sha256;
  return fields;
}

/** `value[name]` when value is an object, else undefined. */
export function messageField(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[name] : undefined;
}

/** The trimmed string, or undefined for anything that is not a non-blank string. */
export function nonBlankText(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

/** The target version a message of an update names: msg.firmware.version, else msg.topic, else msg.payload.version. */
export function targetVersionOf(message: { topic?: unknown; payload?: unknown; firmware?: unknown }): string | undefined {
  return nonBlankText(messageField(message.firmware, 'version')) ?? nonBlankText(message.topic) ?? nonBlankText(messageField(message.payload, 'version'));
}
