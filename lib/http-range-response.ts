/**
 * What a firmware server's answer to a (range) request means for a resumable download: carry on
 * from the bytes on disk, start again from zero, follow a redirect, try again later, or give up
 * with a result code. Pure functions of the status and headers; the downloader acts on them.
 */
import { OtaResultCode } from './ota-messages';
import { printable } from './printable-text';
import { UpdateFailure } from './update-failure';

/** What the download holds when it asks: the bytes on disk and the validator they came with. */
export interface RangeRequest {
  position: number;
  fileSize: number;
  etag?: string;
}

export interface ResponseHeaders {
  get(name: string): string | null;
}

export type RangeJudgement =
  /** Write the body from `position` on; with `restartReason`, after emptying the file (a whole-file 200). */
  | { kind: 'write'; etag?: string; restartReason?: string }
  /** The bytes on disk are no use: empty the file and ask again from zero. */
  | { kind: 'restart'; reason: string }
  /** Follow the redirect (checked by redirectTarget). */
  | { kind: 'redirect'; location: string | null }
  /** A passing trouble of the server: ask again after a pause. */
  | { kind: 'retry'; reason: string };

/** A failure worth another request from the bytes on disk. */
export class RetryableFailure extends Error {}

/** `bytes <start>-<end>/<total or *>` of a 206 answer. */
export function parseContentRange(header: string | null | undefined): { start: number; end: number; total?: number } | undefined {
  const match = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(header ?? '');
  if (!match) return undefined;
  const range: { start: number; end: number; total?: number } = { start: Number(match[1]), end: Number(match[2]) };
  if (match[3] !== '*') range.total = Number(match[3]);
  return range;
}

/** The headers of a request for the bytes after `position`, the same file (If-Range) and no compression. */
export function rangeRequestHeaders(request: RangeRequest): Record<string, string> {
  const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
  if (request.position > 0) {
    headers.Range = `bytes=${request.position}-`;
    // If-Range takes only a strong validator.
    if (request.etag !== undefined && !request.etag.startsWith('W/')) headers['If-Range'] = request.etag;
  }
  return headers;
}

function sizeMismatch(serverSize: number, fileSize: number): UpdateFailure {
  return new UpdateFailure(OtaResultCode.md5Mismatch, `size mismatch: the server's file has ${serverSize} bytes, file_size is ${fileSize}`);
}

/**
 * Where a redirect leads, or a failure for one that must not be followed: a scheme other than
 * http(s), a step down from https to http, an invalid Location, or too many redirects.
 */
export function redirectTarget(from: URL, location: string | null, redirectsSoFar: number, maxRedirects: number): URL {
  if (redirectsSoFar >= maxRedirects) {
    throw new UpdateFailure(OtaResultCode.downloadTimeout, `too many redirects (more than ${maxRedirects})`);
  }
  if (!location) throw new UpdateFailure(OtaResultCode.downloadTimeout, 'redirect without a Location');
  let target: URL;
  try {
    target = new URL(location, from);
  } catch {
    throw new UpdateFailure(OtaResultCode.downloadTimeout, `redirect to an invalid URL "${printable(location, 60)}"`);
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new UpdateFailure(OtaResultCode.downloadTimeout, `redirect to a ${printable(target.protocol.replace(':', ''), 20)} URL refused`);
  }
  if (from.protocol === 'https:' && target.protocol === 'http:') {
    throw new UpdateFailure(OtaResultCode.downloadTimeout, 'redirect from https to http refused');
  }
  return target;
}

/** Judges an answer; throws an UpdateFailure for one that ends the download. */
export function judgeRangeResponse(status: number, headers: ResponseHeaders, request: RangeRequest): RangeJudgement {
  const { position, fileSize } = request;
  if (status === 404 || status === 410) {
    throw new UpdateFailure(OtaResultCode.fileNotFound, `firmware file not found (HTTP ${status})`);
  }
  if (status === 401 || status === 403) {
    throw new UpdateFailure(OtaResultCode.signatureExpired, `download URL refused: signature expired or invalid (HTTP ${status})`);
  }
  if (status === 416) return { kind: 'restart', reason: `the server has no bytes from ${position} on (HTTP 416)` };
  if (status === 408 || status === 429 || status >= 500) return { kind: 'retry', reason: `HTTP ${status} from the download server` };
  if (status === 301 || status === 302 || status === 303 || status === 307 || status === 308) {
    return { kind: 'redirect', location: headers.get('location') };
  }
  if (status !== 200 && status !== 206) {
    throw new UpdateFailure(OtaResultCode.downloadTimeout, `unexpected HTTP ${status} from the download server`);
  }
  const encoding = headers.get('content-encoding');
  if (encoding !== null && encoding.trim().toLowerCase() !== 'identity') {
    throw new UpdateFailure(OtaResultCode.downloadTimeout, `the server sent ${printable(encoding, 40)}-encoded content, identity was asked`);
  }
  // Node's parser removes only the chunked framing: any other coding would end up in the firmware file.
  const transferEncoding = headers.get('transfer-encoding');
  if (transferEncoding !== null && transferEncoding.trim().toLowerCase() !== 'chunked') {
    throw new UpdateFailure(OtaResultCode.downloadTimeout, `the server sent Transfer-Encoding: ${printable(transferEncoding, 40)}; only chunked is accepted`);
  }
  const etag = headers.get('etag') ?? undefined;
  const etagChanged = request.etag !== undefined && etag !== undefined && etag !== request.etag;
  if (status === 206) {
    const range = parseContentRange(headers.get('content-range'));
    if (range?.total !== undefined && range.total !== fileSize) throw sizeMismatch(range.total, fileSize);
    if (range && range.end >= fileSize) throw sizeMismatch(range.end + 1, fileSize);
    if (etagChanged) return { kind: 'restart', reason: `the firmware changed on the server (ETag ${request.etag} became ${etag})` };
    const start = range ? range.start : position === 0 ? 0 : undefined;
    if (start !== position) {
      return {
        kind: 'restart',
        reason: start === undefined ? 'HTTP 206 without Content-Range' : `the server answered from byte ${start} instead of ${position}`,
      };
    }
    return { kind: 'write', etag };
  }
  const length = headers.get('content-length');
  if (length !== null && /^\d+$/.test(length.trim()) && Number(length) !== fileSize) throw sizeMismatch(Number(length), fileSize);
  if (position === 0) return { kind: 'write', etag };
  return {
    kind: 'write',
    etag,
    restartReason: etagChanged
      ? `the firmware changed on the server (ETag ${request.etag} became ${etag})`
      : 'the server ignored Range and sent the whole file (HTTP 200)',
  };
}
