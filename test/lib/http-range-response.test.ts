import { strict as assert } from 'assert';
import { judgeRangeResponse, parseContentRange, rangeRequestHeaders, redirectTarget } from '../../lib/http-range-response';
import { UpdateFailure } from '../../lib/update-failure';

const headers = (fields: Record<string, string>) => ({ get: (name: string) => fields[name.toLowerCase()] ?? null });
const SIZE = 1000;

function failureOf(action: () => unknown): UpdateFailure {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof UpdateFailure, `expected an UpdateFailure, got ${String(error)}`);
    return error;
  }
  return assert.fail('expected a failure');
}

describe('judging a firmware server answer', function () {
  it('asks for the rest of the file from the same ETag, uncompressed', function () {
    assert.deepEqual(rangeRequestHeaders({ position: 0, fileSize: SIZE }), { 'Accept-Encoding': 'identity' });
    assert.deepEqual(rangeRequestHeaders({ position: 400, fileSize: SIZE, etag: '"abc"' }), { 'Accept-Encoding': 'identity', Range: 'bytes=400-', 'If-Range': '"abc"' });
    assert.deepEqual(rangeRequestHeaders({ position: 400, fileSize: SIZE, etag: 'W/"weak"' }), { 'Accept-Encoding': 'identity', Range: 'bytes=400-' });
  });

  it('reads Content-Range', function () {
    assert.deepEqual(parseContentRange('bytes 400-999/1000'), { start: 400, end: 999, total: 1000 });
    assert.deepEqual(parseContentRange('bytes 400-999/*'), { start: 400, end: 999 });
    assert.equal(parseContentRange('items 1-2/3'), undefined);
  });

  it('writes a 206 that starts where the file ends', function () {
    assert.deepEqual(judgeRangeResponse(206, headers({ 'content-range': 'bytes 400-999/1000', etag: '"a"' }), { position: 400, fileSize: SIZE, etag: '"a"' }), {
      kind: 'write',
      etag: '"a"',
    });
  });

  it('starts from zero for a 206 of another start, another ETag or a 416', function () {
    assert.equal(judgeRangeResponse(206, headers({ 'content-range': 'bytes 0-999/1000' }), { position: 400, fileSize: SIZE }).kind, 'restart');
    assert.equal(
      judgeRangeResponse(206, headers({ 'content-range': 'bytes 400-999/1000', etag: '"b"' }), { position: 400, fileSize: SIZE, etag: '"a"' }).kind,
      'restart',
    );
    assert.equal(judgeRangeResponse(416, headers({}), { position: 400, fileSize: SIZE }).kind, 'restart');
  });

  it('writes a whole-file 200 from zero when it asked for a range', function () {
    assert.deepEqual(judgeRangeResponse(200, headers({ 'content-length': '1000' }), { position: 400, fileSize: SIZE }), {
      kind: 'write',
      etag: undefined,
      restartReason: 'the server ignored Range and sent the whole file (HTTP 200)',
    });
  });

  it('maps 404, 403 and a wrong size to their result codes, and retries a 5xx', function () {
    assert.equal(failureOf(() => judgeRangeResponse(404, headers({}), { position: 0, fileSize: SIZE })).resultCode, -2);
    assert.equal(failureOf(() => judgeRangeResponse(403, headers({}), { position: 0, fileSize: SIZE })).resultCode, -3);
    assert.equal(failureOf(() => judgeRangeResponse(200, headers({ 'content-length': '999' }), { position: 0, fileSize: SIZE })).resultCode, -4);
    assert.deepEqual(judgeRangeResponse(503, headers({}), { position: 0, fileSize: SIZE }), { kind: 'retry', reason: 'HTTP 503 from the download server' });
  });

  it('refuses a content or transfer coding it would have to undo', function () {
    assert.match(failureOf(() => judgeRangeResponse(200, headers({ 'content-encoding': 'gzip' }), { position: 0, fileSize: SIZE })).reason, /gzip-encoded/);
    assert.equal(
      failureOf(() => judgeRangeResponse(200, headers({ 'transfer-encoding': 'gzip, chunked' }), { position: 0, fileSize: SIZE })).reason,
      'the server sent Transfer-Encoding: gzip, chunked; only chunked is accepted',
    );
    assert.equal(judgeRangeResponse(200, headers({ 'transfer-encoding': 'Chunked' }), { position: 0, fileSize: SIZE }).kind, 'write');
  });

  it('hands redirects to redirectTarget, which refuses to step down to http or out of http(s)', function () {
    assert.deepEqual(judgeRangeResponse(302, headers({ location: '/next' }), { position: 0, fileSize: SIZE }), { kind: 'redirect', location: '/next' });
    const from = new URL('https://cos.example.com/fw?sign=1');
    assert.equal(redirectTarget(from, '/other?sign=2', 0, 5).href, 'https://cos.example.com/other?sign=2');
    assert.equal(failureOf(() => redirectTarget(from, 'http://cos.example.com/fw', 0, 5)).reason, 'redirect from https to http refused');
    assert.equal(failureOf(() => redirectTarget(from, 'ftp://cos.example.com/fw', 0, 5)).reason, 'redirect to a ftp URL refused');
    assert.equal(failureOf(() => redirectTarget(from, null, 0, 5)).reason, 'redirect without a Location');
    assert.equal(failureOf(() => redirectTarget(from, '/again', 5, 5)).reason, 'too many redirects (more than 5)');
    assert.equal(redirectTarget(new URL('http://a.example/fw'), 'https://b.example/fw', 0, 5).href, 'https://b.example/fw');
  });

  it('puts no control characters of a header into its reason', function () {
    const reason = failureOf(() => judgeRangeResponse(200, headers({ 'content-encoding': 'x\r\ny' }), { position: 0, fileSize: SIZE })).reason;
    assert.doesNotMatch(reason, /[\r\n]/);
  });
});
