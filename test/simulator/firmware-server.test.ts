import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { FirmwareServer } from '../../simulator/firmware-server';
import {
  FirmwareStore,
  FirmwareTooLargeError,
  FirmwareVersionExistsError,
  InvalidFirmwareError,
  MAX_RECORDED_REQUESTS,
  type ServedRequest,
} from '../../simulator/firmware-store';
import { firmwareBytes, md5Of, startFirmwareFixture, type FirmwareFixture } from '../support/firmware-fixture';
import { httpRequest } from '../support/http-request';

const PRODUCT = 'PRODUCT01';
const VERSION = '2.0.0';

describe('firmware server', () => {
  let fixture: FirmwareFixture;
  let firmware: Buffer;
  let url: string;

  beforeEach(async () => {
    fixture = await startFirmwareFixture();
    firmware = firmwareBytes(200 * 1024 + 17);
    await fixture.upload(PRODUCT, VERSION, firmware);
    url = fixture.url(PRODUCT, VERSION, { scheme: 'http' });
  });

  afterEach(async () => {
    await fixture.close();
  });

  describe('plain downloads', () => {
    it('serves the whole file with its md5, length, ETag and Accept-Ranges, uncompressed even when gzip is asked for', async () => {
      const answer = await httpRequest(url, { headers: { 'Accept-Encoding': 'gzip, deflate' } });
      assert.equal(answer.status, 200);
      assert.equal(md5Of(answer.body), md5Of(firmware));
      assert.equal(answer.headers['content-length'], String(firmware.length));
      assert.equal(answer.headers['accept-ranges'], 'bytes');
      assert.equal(answer.headers['content-encoding'], undefined);
      const record = fixture.store.get(PRODUCT, VERSION);
      assert.ok(record);
      assert.equal(answer.headers.etag, record.etag);
      assert.equal(record.md5sum, md5Of(firmware));
      assert.equal(record.file_size, firmware.length);
    });

    it('puts the app id, product and version into a single path segment with a signed expiring query', () => {
      const parsed = new URL(url);
      assert.equal(parsed.pathname, `/1250000000_${PRODUCT}_${VERSION}`);
      assert.match(parsed.searchParams.get('sign') ?? '', /^[0-9a-f]{64}$/);
      const expiry = Number(parsed.searchParams.get('t'));
      const dayFromNow = Date.now() / 1000 + 24 * 3600;
      assert.ok(Math.abs(expiry - dayFromNow) < 120, `expiry ${expiry} is about a day away`);
    });

    it('answers HEAD with the headers of a GET and no body', async () => {
      const answer = await httpRequest(url, { method: 'HEAD' });
      assert.equal(answer.status, 200);
      assert.equal(answer.headers['content-length'], String(firmware.length));
      assert.equal(answer.body.length, 0);
    });

    it('serves the same bytes over HTTPS to a client that trusts the stand-in CA', async () => {
      const answer = await httpRequest(fixture.url(PRODUCT, VERSION, { scheme: 'https' }), { ca: fixture.caPem });
      assert.equal(answer.status, 200);
      assert.equal(md5Of(answer.body), md5Of(firmware));
    });

    it('is refused over HTTPS by a client that does not trust the stand-in CA', async () => {
      await assert.rejects(httpRequest(fixture.url(PRODUCT, VERSION, { scheme: 'https' })), /self[- ]signed|unable to verify|certificate/i);
    });
  });

  describe('byte ranges', () => {
    it('answers a closed range with 206, its bytes and Content-Range', async () => {
      const answer = await httpRequest(url, { headers: { Range: 'bytes=1000-1999' } });
      assert.equal(answer.status, 206);
      assert.equal(answer.headers['content-range'], `bytes 1000-1999/${firmware.length}`);
      assert.equal(answer.headers['content-length'], '1000');
      assert.deepEqual(answer.body, firmware.subarray(1000, 2000));
    });

    it('answers an open range with the rest of the file', async () => {
      const answer = await httpRequest(url, { headers: { Range: 'bytes=150000-' } });
      assert.equal(answer.status, 206);
      assert.equal(answer.headers['content-range'], `bytes 150000-${firmware.length - 1}/${firmware.length}`);
      assert.deepEqual(answer.body, firmware.subarray(150000));
    });

    it('answers a suffix range with the last bytes', async () => {
      const answer = await httpRequest(url, { headers: { Range: 'bytes=-500' } });
      assert.equal(answer.status, 206);
      assert.equal(answer.headers['content-range'], `bytes ${firmware.length - 500}-${firmware.length - 1}/${firmware.length}`);
      assert.deepEqual(answer.body, firmware.subarray(firmware.length - 500));
    });

    it('clamps a range that runs past the end', async () => {
      const answer = await httpRequest(url, { headers: { Range: `bytes=${firmware.length - 10}-${firmware.length + 1000}` } });
      assert.equal(answer.status, 206);
      assert.deepEqual(answer.body, firmware.subarray(firmware.length - 10));
    });

    it('answers 416 with the size for a range that starts at or past the end', async () => {
      const answer = await httpRequest(url, { headers: { Range: `bytes=${firmware.length}-` } });
      assert.equal(answer.status, 416);
      assert.equal(answer.headers['content-range'], `bytes */${firmware.length}`);
    });

    it('honours the range when If-Range carries the current ETag', async () => {
      const etag = fixture.store.get(PRODUCT, VERSION)?.etag ?? '';
      const answer = await httpRequest(url, { headers: { Range: 'bytes=100-', 'If-Range': etag } });
      assert.equal(answer.status, 206);
      assert.deepEqual(answer.body, firmware.subarray(100));
    });

    it('answers the whole new file when If-Range carries the ETag of an earlier upload', async () => {
      const staleEtag = fixture.store.get(PRODUCT, VERSION)?.etag ?? '';
      const replacement = firmwareBytes(50 * 1024);
      const record = await fixture.upload(PRODUCT, VERSION, replacement);
      assert.notEqual(record.etag, staleEtag);
      const answer = await httpRequest(url, { headers: { Range: 'bytes=100-', 'If-Range': staleEtag } });
      assert.equal(answer.status, 200);
      assert.equal(answer.headers.etag, record.etag);
      assert.deepEqual(answer.body, replacement);
    });
  });

  describe('refusals', () => {
    it('answers 403 to an expired URL', async () => {
      const answer = await httpRequest(fixture.url(PRODUCT, VERSION, { scheme: 'http', ttlSeconds: -5 }));
      assert.equal(answer.status, 403);
    });

    it('answers 403 when the signature or the expiry was changed', async () => {
      const tamperedSignature = new URL(url);
      const sign = tamperedSignature.searchParams.get('sign') ?? '';
      tamperedSignature.searchParams.set('sign', (sign[0] === 'a' ? 'b' : 'a') + sign.slice(1));
      assert.equal((await httpRequest(tamperedSignature.toString())).status, 403);
      const extended = new URL(url);
      extended.searchParams.set('t', String(Number(extended.searchParams.get('t')) + 3600));
      assert.equal((await httpRequest(extended.toString())).status, 403);
      const unsigned = new URL(url);
      unsigned.search = '';
      assert.equal((await httpRequest(unsigned.toString())).status, 403);
    });

    it('answers 403 when a signed URL is used for another version', async () => {
      await fixture.upload(PRODUCT, '3.0.0', firmwareBytes(1000));
      const other = new URL(url);
      other.pathname = `/1250000000_${PRODUCT}_3.0.0`;
      assert.equal((await httpRequest(other.toString())).status, 403);
    });

    it('answers 404 to a well-signed URL of a firmware that was never uploaded', async () => {
      const answer = await httpRequest(fixture.url(PRODUCT, '9.9.9', { scheme: 'http' }));
      assert.equal(answer.status, 404);
    });

    it('answers 404 to any other path', async () => {
      assert.equal((await httpRequest(new URL('/index.html', url).toString())).status, 404);
    });

    it('answers 404 once the firmware is removed, and its files are gone', async () => {
      assert.equal(await fixture.store.remove(PRODUCT, VERSION), true);
      assert.equal((await httpRequest(url)).status, 404);
      const files = await fs.readdir(path.join(fixture.dataDir, 'firmware', PRODUCT));
      assert.deepEqual(files, []);
      assert.equal(await fixture.store.remove(PRODUCT, VERSION), false);
    });

    it('refuses methods other than GET and HEAD', async () => {
      const answer = await httpRequest(url, { method: 'PUT', body: 'x' });
      assert.equal(answer.status, 405);
      assert.equal(answer.headers.allow, 'GET, HEAD');
    });
  });

  describe('fault knobs', () => {
    it('throttles the body rate', async () => {
      const bytes = firmwareBytes(48 * 1024);
      await fixture.upload(PRODUCT, '3.0.0', bytes);
      await fixture.setFaults(PRODUCT, '3.0.0', { throttleBytesPerSecond: 16 * 1024 });
      const started = Date.now();
      const answer = await httpRequest(fixture.url(PRODUCT, '3.0.0', { scheme: 'http' }));
      const elapsed = Date.now() - started;
      assert.equal(answer.status, 200);
      assert.deepEqual(answer.body, bytes);
      // 48 KiB at 16 KiB/s takes about 3 s; a throttle can only make it slower than this bound.
      assert.ok(elapsed >= 1500, `took ${elapsed} ms`);
    });

    it('cuts the body after closeAfterBytes once, then serves normally', async () => {
      await fixture.setFaults(PRODUCT, VERSION, { closeAfterBytes: 70000 });
      const cut = await httpRequest(url);
      assert.equal(cut.status, 200);
      assert.equal(cut.complete, false);
      assert.equal(cut.cutOff, 'aborted');
      assert.equal(cut.body.length, 70000);
      assert.deepEqual(cut.body, firmware.subarray(0, 70000));
      const next = await httpRequest(url, { headers: { Range: 'bytes=70000-' } });
      assert.equal(next.status, 206);
      assert.equal(next.complete, true);
      assert.deepEqual(Buffer.concat([cut.body, next.body]), firmware);
      assert.deepEqual(fixture.store.get(PRODUCT, VERSION)?.faults, {});
    });

    it('cuts closeAfterResponses responses in a row', async () => {
      await fixture.setFaults(PRODUCT, VERSION, { closeAfterBytes: 1000, closeAfterResponses: 2 });
      const first = await httpRequest(url);
      const second = await httpRequest(url, { headers: { Range: 'bytes=1000-' } });
      const third = await httpRequest(url, { headers: { Range: 'bytes=2000-' } });
      assert.deepEqual([first.body.length, second.body.length], [1000, 1000]);
      assert.deepEqual([first.complete, second.complete, third.complete], [false, false, true]);
      assert.deepEqual(Buffer.concat([first.body, second.body, third.body]), firmware);
    });

    it('keeps a one-shot fault for the next response with a body, not for HEAD or 416 answers', async () => {
      await fixture.setFaults(PRODUCT, VERSION, { closeAfterBytes: 100 });
      assert.equal((await httpRequest(url, { method: 'HEAD' })).status, 200);
      assert.equal((await httpRequest(url, { headers: { Range: `bytes=${firmware.length}-` } })).status, 416);
      const cut = await httpRequest(url);
      assert.deepEqual([cut.complete, cut.body.length], [false, 100]);
    });

    it('stalls after stallAfterBytes with the socket open until the client gives up, once', async () => {
      await fixture.setFaults(PRODUCT, VERSION, { stallAfterBytes: 5000 });
      const stalled = await httpRequest(url, { idleTimeoutMs: 800 });
      assert.equal(stalled.complete, false);
      assert.equal(stalled.cutOff, 'timeout');
      assert.deepEqual(stalled.body, firmware.subarray(0, 5000));
      const next = await httpRequest(url, { idleTimeoutMs: 10000 });
      assert.equal(next.complete, true);
      assert.deepEqual(next.body, firmware);
    });

    it('answers 200 with the whole file when told to ignore Range, until the faults are cleared', async () => {
      await fixture.setFaults(PRODUCT, VERSION, { ignoreRange: true });
      const ignored = await httpRequest(url, { headers: { Range: 'bytes=100-' } });
      assert.equal(ignored.status, 200);
      assert.deepEqual(ignored.body, firmware);
      await fixture.setFaults(PRODUCT, VERSION, {});
      const honoured = await httpRequest(url, { headers: { Range: 'bytes=100-' } });
      assert.equal(honoured.status, 206);
    });

    it('refuses unknown or malformed fault knobs', async () => {
      await assert.rejects(fixture.store.setFaults(PRODUCT, VERSION, { closeAfterBytes: -1 }), InvalidFirmwareError);
      await assert.rejects(fixture.store.setFaults(PRODUCT, VERSION, JSON.parse('{"slowdown": 5}') as Record<string, number>), /unknown fault "slowdown"/);
    });
  });

  describe('served statistics', () => {
    it('records method, Range, status and body bytes of each request, and the total', async () => {
      await httpRequest(url);
      await httpRequest(url, { headers: { Range: 'bytes=0-99' } });
      await httpRequest(url, { method: 'HEAD' });
      await httpRequest(fixture.url(PRODUCT, VERSION, { scheme: 'http', ttlSeconds: -5 }));
      const record = fixture.store.get(PRODUCT, VERSION);
      assert.ok(record);
      const summary = record.served.requests.map((request) => [request.method, request.range, request.status, request.bytes]);
      assert.deepEqual(summary, [
        ['GET', undefined, 200, firmware.length],
        ['GET', 'bytes=0-99', 206, 100],
        ['HEAD', undefined, 200, 0],
        ['GET', undefined, 403, 0],
      ]);
      assert.equal(record.served.totalBytes, firmware.length + 100);
      assert.equal(record.served.requestCount, 4);
    });

    it('keeps the statistics in the record on disk', async () => {
      await httpRequest(url, { headers: { Range: 'bytes=0-9' } });
      await fixture.store.flush();
      const onDisk = JSON.parse(await fs.readFile(path.join(fixture.dataDir, 'firmware', PRODUCT, `${VERSION}.json`), 'utf8'));
      assert.equal(onDisk.served.totalBytes, 10);
      assert.equal(onDisk.md5sum, md5Of(firmware));
    });
  });

  describe('restarts', () => {
    it('serves the same firmware at the same signed URL after a restart over the same data dir', async () => {
      const httpsUrl = fixture.url(PRODUCT, VERSION, { scheme: 'https' });
      const ports = { httpPort: fixture.addresses.http.port, httpsPort: fixture.addresses.https.port };
      await fixture.close({ keepDataDir: true });
      const dataDir = fixture.dataDir;
      fixture = await startFirmwareFixture({ dataDir, ...ports });
      try {
        const answer = await httpRequest(httpsUrl, { ca: fixture.caPem });
        assert.equal(answer.status, 200);
        assert.deepEqual(answer.body, firmware);
      } finally {
        await fixture.close();
        await fs.rm(dataDir, { recursive: true, force: true });
        fixture = await startFirmwareFixture();
      }
    });
  });
});

describe('firmware store uploads', () => {
  let dataDir: string;

  beforeEach(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'firmware-store-'));
  });

  afterEach(async () => {
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  it('writes <productId>/<version>.bin and its record with md5 and size', async () => {
    const store = await FirmwareStore.open(dataDir);
    const bytes = firmwareBytes(12345);
    const { record, outcome } = await store.upload('PROD1', '1.0.0', bytes);
    assert.equal(outcome, 'created');
    assert.deepEqual(await fs.readFile(path.join(dataDir, 'firmware', 'PROD1', '1.0.0.bin')), bytes);
    const onDisk = JSON.parse(await fs.readFile(path.join(dataDir, 'firmware', 'PROD1', '1.0.0.json'), 'utf8'));
    assert.equal(onDisk.md5sum, md5Of(bytes));
    assert.equal(onDisk.file_size, 12345);
    assert.equal(record.etag, onDisk.etag);
    assert.match(record.etag, /^"[0-9a-f]{32}-[0-9a-z]+"$/);
    const reopened = await FirmwareStore.open(dataDir);
    assert.deepEqual(reopened.get('PROD1', '1.0.0'), record);
  });

  it('refuses other content under an existing version, leaving the stored upload as it was', async () => {
    const store = await FirmwareStore.open(dataDir);
    const bytes = firmwareBytes(100);
    const { record: first } = await store.upload('PROD1', '1.0.0', bytes);
    await assert.rejects(store.upload('PROD1', '1.0.0', firmwareBytes(100)), (error: unknown) => {
      assert.ok(error instanceof FirmwareVersionExistsError);
      assert.match(error.message, /firmware 1\.0\.0 of product PROD1 already exists with other content/);
      return true;
    });
    await assert.rejects(store.upload('PROD1', '1.0.0', firmwareBytes(101), { declaredSize: 101 }), FirmwareVersionExistsError);
    assert.deepEqual(store.get('PROD1', '1.0.0'), first);
    assert.deepEqual(await fs.readFile(path.join(dataDir, 'firmware', 'PROD1', '1.0.0.bin')), bytes);
    assert.deepEqual(
      (await fs.readdir(path.join(dataDir, 'firmware', 'PROD1'))).filter((name) => name.endsWith('.tmp')),
      [],
      'no upload is left behind',
    );
  });

  it('answers the stored record for the same content again, with its ETag unchanged', async () => {
    const store = await FirmwareStore.open(dataDir);
    const bytes = firmwareBytes(100);
    const first = await store.upload('PROD1', '1.0.0', bytes);
    const again = await store.upload('PROD1', '1.0.0', Buffer.from(bytes), { declaredSize: 100 });
    assert.equal(again.outcome, 'unchanged');
    assert.deepEqual(again.record, first.record);
  });

  it('replaces a version when asked, with a new md5 and a new ETag even for the same bytes', async () => {
    const store = await FirmwareStore.open(dataDir);
    const bytes = firmwareBytes(100);
    const first = await store.upload('PROD1', '1.0.0', bytes);
    const same = await store.upload('PROD1', '1.0.0', bytes, { replace: true });
    assert.equal(same.outcome, 'replaced');
    assert.notEqual(same.record.etag, first.record.etag);
    const other = await store.upload('PROD1', '1.0.0', firmwareBytes(200), { replace: true, declaredSize: 200 });
    assert.equal(other.outcome, 'replaced');
    assert.notEqual(other.record.md5sum, first.record.md5sum);
    assert.equal(other.record.file_size, 200);
    assert.equal(store.list('PROD1').length, 1);
  });

  it('refuses invalid versions and product ids', async () => {
    const store = await FirmwareStore.open(dataDir);
    await assert.rejects(store.upload('PROD1', 'v 1', firmwareBytes(10)), /characters outside/);
    await assert.rejects(store.upload('PROD1', 'x'.repeat(33), firmwareBytes(10)), /longer than 32/);
    await assert.rejects(store.upload('../etc', '1.0.0', firmwareBytes(10)), /productId/);
  });

  it('refuses an empty file and one above the size limit, leaving nothing behind', async () => {
    const store = await FirmwareStore.open(dataDir, { maxFileSize: 1000 });
    await assert.rejects(store.upload('PROD1', '1.0.0', Buffer.alloc(0)), /empty/);
    await assert.rejects(store.upload('PROD1', '1.0.0', firmwareBytes(1001)), FirmwareTooLargeError);
    assert.deepEqual(await fs.readdir(path.join(dataDir, 'firmware', 'PROD1')), []);
    assert.equal(store.get('PROD1', '1.0.0'), undefined);
  });

  it('keeps the URL-signing secret in the data dir', async () => {
    const store = await FirmwareStore.open(dataDir);
    await FirmwareServer.open({ store, dataDir, serverCertificate: { certPem: '', keyPem: '' } });
    const secret = await fs.readFile(path.join(dataDir, 'firmware-url-secret'), 'utf8');
    await FirmwareServer.open({ store, dataDir, serverCertificate: { certPem: '', keyPem: '' } });
    assert.equal(await fs.readFile(path.join(dataDir, 'firmware-url-secret'), 'utf8'), secret);
    assert.match(secret.trim(), /^[0-9a-f]{64}$/);
  });
});

describe('firmware store statistics on disk', () => {
  let dataDir: string;

  beforeEach(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'firmware-store-'));
  });

  afterEach(async () => {
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  const served: ServedRequest = { time: new Date(0).toISOString(), scheme: 'http', method: 'GET', range: 'bytes=0-99', status: 206, bytes: 100 };

  async function journalLineCount(journalPath: string): Promise<number> {
    const text = await fs.readFile(journalPath, 'utf8').catch(() => '');
    return text.split('\n').filter((line) => line !== '').length;
  }

  async function waitForLines(journalPath: string, count: number): Promise<void> {
    const deadline = Date.now() + 20_000;
    while ((await journalLineCount(journalPath)) < count) {
      if (Date.now() > deadline) throw new Error(`the journal never reached ${count} lines`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it('appends each request served to a journal, the same bytes per request however many came before, and leaves the record file alone', async () => {
    const store = await FirmwareStore.open(dataDir, { statisticsWriteDelayMs: 0 });
    await store.upload('PROD1', '1.0.0', firmwareBytes(1000));
    const recordPath = path.join(dataDir, 'firmware', 'PROD1', '1.0.0.json');
    const journalPath = path.join(dataDir, 'firmware', 'PROD1', '1.0.0.journal.jsonl');
    const recordBefore = await fs.stat(recordPath);
    const appended: number[] = [];
    let requests = 0;
    for (let batch = 0; batch < 12; batch++) {
      const sizeBefore = (await fs.stat(journalPath).catch(() => ({ size: 0 }))).size;
      for (let index = 0; index < 100; index++) store.recordServed('PROD1', '1.0.0', served);
      requests += 100;
      await waitForLines(journalPath, requests);
      appended.push((await fs.stat(journalPath)).size - sizeBefore);
    }
    const recordAfter = await fs.stat(recordPath);
    assert.deepEqual([recordAfter.ino, recordAfter.size], [recordBefore.ino, recordBefore.size], 'the record file was not rewritten');
    // Lines differ only by the digits of their sequence number.
    assert.ok(Math.max(...appended) <= 1.05 * Math.min(...appended), `bytes appended per 100 requests: ${appended.join(', ')}`);

    // Opened again without a flush, as after a crash: the journal is folded into the record.
    const reopened = await FirmwareStore.open(dataDir);
    const record = reopened.get('PROD1', '1.0.0');
    assert.ok(record);
    assert.deepEqual([record.served.requestCount, record.served.totalBytes, record.served.requests.length], [1200, 120_000, MAX_RECORDED_REQUESTS]);
    assert.equal((await fs.stat(journalPath)).size, 0);
    assert.equal(JSON.parse(await fs.readFile(recordPath, 'utf8')).served.requestCount, 1200);
  });

  it('keeps fault knobs and statistics of a removed and re-uploaded firmware apart from the new one', async () => {
    const store = await FirmwareStore.open(dataDir, { statisticsWriteDelayMs: 0 });
    await store.upload('PROD1', '1.0.0', firmwareBytes(1000));
    await store.setFaults('PROD1', '1.0.0', { closeAfterBytes: 10, closeAfterResponses: 2 });
    store.recordServed('PROD1', '1.0.0', served);
    assert.equal(await store.remove('PROD1', '1.0.0'), true);
    assert.deepEqual(await fs.readdir(path.join(dataDir, 'firmware', 'PROD1')), []);
    await store.upload('PROD1', '1.0.0', firmwareBytes(1000));
    store.recordServed('PROD1', '1.0.0', served);
    assert.deepEqual(store.takeResponseFaults('PROD1', '1.0.0'), {});
    await store.flush();
    const reopened = await FirmwareStore.open(dataDir);
    const record = reopened.get('PROD1', '1.0.0');
    assert.ok(record);
    assert.deepEqual([record.served.requestCount, record.faults], [1, {}]);
  });
});
