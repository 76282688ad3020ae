import { strict as assert } from 'assert';
import { createHash } from 'crypto';
import { promises as fs } from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import { FileCheckpointStore, type CheckpointStore, type DownloadCheckpoint } from '../../lib/checkpoint-store';
import { DownloadsFolder } from '../../lib/downloads-folder';
import { checkedUpdateCommand } from '../../lib/ota-messages';
import { UpdateFailure } from '../../lib/update-failure';
import { DownloadAbortedError, ResumableDownload, type DownloadProgress, type ResumableDownloadOptions } from '../../lib/resumable-download';
import type { ServedRequest } from '../../simulator/firmware-store';
import { firmwareBytes, md5Of, startFirmwareFixture, type FirmwareFixture } from '../support/firmware-fixture';

const PRODUCT = 'PRODUCT01';
const VERSION = '2.0.0';
const KIB = 1024;
const MIB = 1024 * KIB;

function sha256Of(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

type RequestHandler = (request: http.IncomingMessage, response: http.ServerResponse) => void;

/** The events of a download in the order they came. */
function recordEvents(download: ResumableDownload): { name: string; payload: unknown }[] {
  const events: { name: string; payload: unknown }[] = [];
  download.on('progress', (payload) => events.push({ name: 'progress', payload }));
  download.on('retry', (payload) => events.push({ name: 'retry', payload }));
  download.on('restart-from-zero', (payload) => events.push({ name: 'restart-from-zero', payload }));
  download.on('resumed', (payload) => events.push({ name: 'resumed', payload }));
  return events;
}

/** Wraps a store to count the saves. */
class CountingCheckpointStore implements CheckpointStore {
  saves = 0;
  constructor(private readonly inner: CheckpointStore) {}
  load(version: string): Promise<DownloadCheckpoint | undefined> {
    return this.inner.load(version);
  }
  save(checkpoint: DownloadCheckpoint): Promise<void> {
    this.saves += 1;
    return this.inner.save(checkpoint);
  }
  remove(version: string): Promise<void> {
    return this.inner.remove(version);
  }
  list(): Promise<DownloadCheckpoint[]> {
    return this.inner.list();
  }
}

describe('resumable download', () => {
  let fixture: FirmwareFixture;
  let stateDir: string;
  let directory: string;
  let store: FileCheckpointStore;
  let firmware: Buffer;
  let servers: http.Server[];

  beforeEach(async () => {
    fixture = await startFirmwareFixture();
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'resumable-download-'));
    directory = path.join(stateDir, 'downloads');
    store = new FileCheckpointStore(directory);
    firmware = firmwareBytes(MIB + 12345);
    await fixture.upload(PRODUCT, VERSION, firmware);
    servers = [];
  });

  afterEach(async () => {
    for (const server of servers) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await fixture.close();
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  type DownloadOverrides = Partial<Omit<ResumableDownloadOptions, 'command' | 'folder'>> & {
    url?: string;
    md5sum?: string;
    fileSize?: number;
    checkpointStore?: CheckpointStore;
  };

  function downloadOf(overrides: DownloadOverrides = {}): ResumableDownload {
    const { url, md5sum, fileSize, checkpointStore, ...options } = overrides;
    return new ResumableDownload({
      command: checkedUpdateCommand({
        url: url ?? fixture.url(PRODUCT, VERSION, { scheme: 'http' }),
        version: VERSION,
        md5sum: md5sum ?? md5Of(firmware),
        file_size: fileSize ?? firmware.length,
      }),
      folder: new DownloadsFolder(directory, { checkpointStore: checkpointStore ?? store }),
      retryBackoffMs: 10,
      ...options,
    });
  }

  function served(): ServedRequest[] {
    const record = fixture.store.get(PRODUCT, VERSION);
    assert.ok(record, 'the firmware is in the store');
    return record.served.requests;
  }

  function servedBytes(): number {
    return fixture.store.get(PRODUCT, VERSION)?.served.totalBytes ?? 0;
  }

  async function filesOnDisk(): Promise<string[]> {
    return (await fs.readdir(directory).catch(() => [] as string[])).sort();
  }

  /** An HTTP server on an ephemeral port; `firmwarePath` of a signed URL works on it as on the firmware server. */
  async function startServer(handler: RequestHandler): Promise<string> {
    const server = http.createServer(handler);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** A server in front of the firmware server that may change each request before passing it on. */
  async function startProxy(change: (request: http.IncomingMessage, response: http.ServerResponse) => 'forward' | 'answered'): Promise<string> {
    const base = await startServer((request, response) => {
      if (change(request, response) === 'forward') fixture.server.handle(request, response, 'http');
    });
    const signed = new URL(fixture.url(PRODUCT, VERSION, { scheme: 'http' }));
    return `${base}${signed.pathname}${signed.search}`;
  }

  /** Stops the download, as a program that is shut down does, once it has at least `bytes` on disk. */
  function abortOncePast(download: ResumableDownload, bytes: number): void {
    download.on('progress', (progress: DownloadProgress) => {
      if (progress.bytes >= bytes) void download.abort('the program stops');
    });
  }

  /** A first run stopped once past `bytes`: leaves a partial file and its checkpoint, as a program shut down does. */
  async function interruptedDownloadPast(bytes: number): Promise<void> {
    const first = downloadOf({ progressIntervalMs: 0 });
    abortOncePast(first, bytes);
    await assert.rejects(first.start(), DownloadAbortedError);
  }

  async function expectUpdateFailure(download: ResumableDownload, resultCode: number, reason: RegExp): Promise<UpdateFailure> {
    const error = await download.start().then(
      () => assert.fail('the download should have failed'),
      (failure: unknown) => failure,
    );
    assert.ok(error instanceof UpdateFailure, `expected a UpdateFailure, got ${String(error)}`);
    assert.equal(error.resultCode, resultCode, error.reason);
    assert.match(error.reason, reason);
    return error;
  }

  describe('a plain download', () => {
    it('downloads the whole firmware over HTTPS and answers its MD5, and the file as it left it', async () => {
      const download = downloadOf({ url: fixture.url(PRODUCT, VERSION, { scheme: 'https' }), ca: fixture.caPem });
      const events = recordEvents(download);
      const result = await download.start();
      const stats = await fs.stat(result.path);
      assert.deepEqual(result, {
        path: path.join(directory, `FW_${VERSION}.bin`),
        version: VERSION,
        size: firmware.length,
        md5: md5Of(firmware),
        identity: { dev: stats.dev, ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs },
        bytesDownloaded: firmware.length,
        resumedFromByte: 0,
      });
      assert.deepEqual(await fs.readFile(result.path), firmware);
      assert.deepEqual(
        served().map((request) => [request.scheme, request.status, request.range]),
        [['https', 200, undefined]],
      );
      const percents = events.filter((event) => event.name === 'progress').map((event) => (event.payload as DownloadProgress).percent);
      assert.equal(percents[0], 0);
      assert.equal(percents[percents.length - 1], 100);
      assert.deepEqual(
        percents,
        [...percents].sort((a, b) => a - b),
      );
    });

    it('is refused over HTTPS when the server certificate is not trusted', async () => {
      const download = downloadOf({ url: fixture.url(PRODUCT, VERSION, { scheme: 'https' }), maxRetries: 3 });
      await expectUpdateFailure(download, -1, /TLS certificate is not trusted/);
      assert.equal(served().length, 0);
    });

    it('asks for the bytes uncompressed', async () => {
      const encodings: (string | undefined)[] = [];
      const url = await startProxy((request) => {
        encodings.push(request.headers['accept-encoding']);
        return 'forward';
      });
      await downloadOf({ url }).start();
      assert.deepEqual(encodings, ['identity']);
    });

    it('keeps a complete checkpoint, so that a later start only re-hashes the file', async () => {
      await downloadOf().start();
      assert.deepEqual((await store.load(VERSION))?.complete, true);
      const again = downloadOf();
      const events = recordEvents(again);
      const result = await again.start();
      assert.equal(result.bytesDownloaded, 0);
      assert.equal(result.md5, md5Of(firmware));
      assert.equal(served().length, 1, 'no second request');
      const percents = events.filter((event) => event.name === 'progress').map((event) => (event.payload as DownloadProgress).percent);
      assert.deepEqual(percents, [0, 100]);
    });

    it('downloads again when the file of a complete checkpoint was damaged on disk', async () => {
      const first = await downloadOf().start();
      const damaged = Buffer.from(firmware);
      damaged[1000] ^= 0xff;
      await fs.writeFile(first.path, damaged);
      const again = downloadOf();
      const events = recordEvents(again);
      const result = await again.start();
      assert.equal(result.bytesDownloaded, firmware.length);
      assert.deepEqual(await fs.readFile(result.path), firmware);
      assert.ok(events.some((event) => event.name === 'restart-from-zero'));
    });

    it('hands over a file whose MD5 differs from md5sum with its real digest, for verification to judge', async () => {
      const result = await downloadOf({ md5sum: 'b550fe42dec6fe0bc2d66f23e8074a5d' }).start();
      assert.equal(result.md5, md5Of(firmware));
      assert.deepEqual(await fs.readFile(result.path), firmware);
    });
  });

  describe('hashing', () => {
    for (const hashing of ['worker', 'inline'] as const) {
      it(`computes the SHA-256 as well when asked, hashed ${hashing === 'worker' ? 'on the hashing thread' : 'inline'}`, async () => {
        const download = downloadOf({ sha256: true, hashing });
        const result = await download.start();
        assert.equal(result.md5, md5Of(firmware));
        assert.equal(result.sha256, sha256Of(firmware));
      });
    }

    it('gives the same digests for a firmware that arrives in many small pieces', async () => {
      const url = await startServer((_request, response) => {
        response.writeHead(200, { 'Content-Length': String(firmware.length) });
        let offset = 0;
        const next = () => {
          if (offset >= firmware.length) return void response.end();
          const size = 1 + ((offset * 7919) % 3000);
          response.write(firmware.subarray(offset, offset + size), next);
          offset += size;
        };
        next();
      });
      const result = await downloadOf({ url, sha256: true }).start();
      assert.equal(result.md5, md5Of(firmware));
      assert.equal(result.sha256, sha256Of(firmware));
      assert.deepEqual(await fs.readFile(result.path), firmware);
    });
  });

  describe('resuming', () => {
    it('resumes a dropped connection with a Range request, fetching each byte about once', async () => {
      await fixture.setFaults(PRODUCT, VERSION, { closeAfterBytes: 300 * KIB });
      const download = downloadOf();
      const events = recordEvents(download);
      const result = await download.start();
      assert.deepEqual(await fs.readFile(result.path), firmware);
      const retries = events.filter((event) => event.name === 'retry');
      assert.equal(retries.length, 1);
      const retry = retries[0].payload as { attempt: number; fromByte: number; reason: string };
      assert.equal(retry.attempt, 1);
      assert.ok(retry.fromByte > 0 && retry.fromByte <= 300 * KIB, `resumes from byte ${retry.fromByte}`);
      assert.match(retry.reason, /connection closed/);
      const requests = served();
      assert.deepEqual(
        requests.map((request) => [request.status, request.range, request.ifRange]),
        [
          [200, undefined, undefined],
          [206, `bytes=${retry.fromByte}-`, fixture.store.get(PRODUCT, VERSION)?.etag],
        ],
      );
      assert.ok(servedBytes() < firmware.length + 64 * KIB, `served ${servedBytes()} bytes for a file of ${firmware.length}`);
      assert.equal(result.bytesDownloaded, firmware.length);
    });

    it('keeps the partial file and a checkpoint of exactly its bytes when aborted', async () => {
      const download = downloadOf({ progressIntervalMs: 0 });
      abortOncePast(download, 200 * KIB);
      await assert.rejects(download.start(), (error: unknown) => error instanceof DownloadAbortedError && error.reason === 'the program stops');
      const checkpoint = await store.load(VERSION);
      assert.ok(checkpoint, 'a checkpoint stays');
      const onDisk = await fs.readFile(path.join(directory, `FW_${VERSION}.bin`));
      assert.equal(checkpoint.bytesOnDisk, onDisk.length);
      assert.ok(onDisk.length >= 200 * KIB && onDisk.length < firmware.length);
      assert.deepEqual(onDisk, firmware.subarray(0, onDisk.length));
    });

    it('continues from the checkpoint in a new download object, as after a restart of the program', async () => {
      await interruptedDownloadPast(400 * KIB);
      const bytesOnDisk = (await store.load(VERSION))?.bytesOnDisk ?? 0;
      const servedBefore = servedBytes();

      const second = downloadOf();
      const events = recordEvents(second);
      const result = await second.start();
      assert.deepEqual(await fs.readFile(result.path), firmware);
      assert.equal(result.resumedFromByte, bytesOnDisk);
      assert.equal(result.bytesDownloaded, firmware.length - bytesOnDisk);
      assert.ok(result.bytesDownloaded < firmware.length);
      assert.deepEqual(events.find((event) => event.name === 'resumed')?.payload, { fromByte: bytesOnDisk });
      assert.equal(servedBytes() - servedBefore, firmware.length - bytesOnDisk);
      assert.equal(served()[served().length - 1].range, `bytes=${bytesOnDisk}-`);
    });

    it('trusts only the bytes the checkpoint vouches for, not what was written after it', async () => {
      await interruptedDownloadPast(300 * KIB);
      // Bytes a crash left after the last checkpoint, not known to be right, running past the firmware's end.
      const partial = path.join(directory, `FW_${VERSION}.bin`);
      const tail = firmware.length - (await fs.stat(partial)).size + 1000;
      await fs.appendFile(partial, Buffer.alloc(tail, 0xee));
      const result = await downloadOf().start();
      assert.deepEqual(await fs.readFile(result.path), firmware);
    });

    it('resumes after a stalled body once the read timeout passes', async () => {
      await fixture.setFaults(PRODUCT, VERSION, { stallAfterBytes: 200 * KIB });
      const download = downloadOf({ readTimeoutMs: 300 });
      const events = recordEvents(download);
      const result = await download.start();
      assert.deepEqual(await fs.readFile(result.path), firmware);
      const retry = events.find((event) => event.name === 'retry')?.payload as { reason: string; fromByte: number } | undefined;
      assert.ok(retry);
      assert.match(retry.reason, /read timeout/);
      assert.equal(served()[1].range, `bytes=${retry.fromByte}-`);
    });

    it('retries after a 5xx answer', async () => {
      let answered = 0;
      const url = await startProxy((_request, response) => {
        answered += 1;
        if (answered > 1) return 'forward';
        response.writeHead(503).end('busy');
        return 'answered';
      });
      const download = downloadOf({ url });
      const events = recordEvents(download);
      const result = await download.start();
      assert.deepEqual(await fs.readFile(result.path), firmware);
      assert.deepEqual(
        events.filter((event) => event.name === 'retry').map((event) => (event.payload as { reason: string }).reason),
        ['HTTP 503 from the download server'],
      );
    });
  });

  describe('servers that do not send what was asked', () => {
    it('starts from zero instead of appending when the server ignores Range', async () => {
      await fixture.setFaults(PRODUCT, VERSION, { ignoreRange: true, closeAfterBytes: 300 * KIB });
      const download = downloadOf();
      const events = recordEvents(download);
      const result = await download.start();
      assert.deepEqual(await fs.readFile(result.path), firmware);
      assert.equal(result.size, firmware.length);
      const restart = events.find((event) => event.name === 'restart-from-zero')?.payload as { reason: string } | undefined;
      assert.ok(restart);
      assert.match(restart.reason, /ignored Range/);
      assert.deepEqual(
        served().map((request) => [request.status, request.range !== undefined]),
        [
          [200, false],
          [200, true],
        ],
      );
    });

    it('starts from zero when the firmware was uploaded again and the server answers If-Range with the whole new file', async () => {
      await interruptedDownloadPast(300 * KIB);
      const oldEtag = (await store.load(VERSION))?.etag;
      assert.ok(oldEtag);
      await fixture.upload(PRODUCT, VERSION, firmware);

      const second = downloadOf();
      const events = recordEvents(second);
      const result = await second.start();
      assert.deepEqual(await fs.readFile(result.path), firmware);
      const last = served()[served().length - 1];
      assert.deepEqual([last.status, last.ifRange], [200, oldEtag]);
      const restart = events.find((event) => event.name === 'restart-from-zero')?.payload as { reason: string } | undefined;
      assert.ok(restart);
      assert.match(restart.reason, /changed on the server/);
      assert.equal(result.resumedFromByte, 0);
    });

    it('starts from zero when a server that ignores If-Range answers the range of a file with another ETag', async () => {
      await interruptedDownloadPast(300 * KIB);
      await fixture.upload(PRODUCT, VERSION, firmware);
      const url = await startProxy((request) => {
        delete request.headers['if-range'];
        return 'forward';
      });

      const second = downloadOf({ url });
      const events = recordEvents(second);
      const result = await second.start();
      assert.deepEqual(await fs.readFile(result.path), firmware);
      assert.match((events.find((event) => event.name === 'restart-from-zero')?.payload as { reason: string }).reason, /ETag/);
      const statuses = served()
        .slice(-2)
        .map((request) => [request.status, request.range !== undefined]);
      assert.deepEqual(statuses, [
        [206, true],
        [200, false],
      ]);
    });

    it('starts from zero when a 206 answer starts at another byte than asked', async () => {
      await interruptedDownloadPast(300 * KIB);
      const url = await startProxy((request) => {
        const asked = /^bytes=(\d+)-$/.exec(request.headers.range ?? '');
        if (asked) request.headers.range = `bytes=${Number(asked[1]) - 1000}-`;
        return 'forward';
      });

      const second = downloadOf({ url });
      const events = recordEvents(second);
      const result = await second.start();
      assert.deepEqual(await fs.readFile(result.path), firmware);
      assert.match((events.find((event) => event.name === 'restart-from-zero')?.payload as { reason: string }).reason, /instead of/);
    });

    it('fails with -4 and removes the file when the server has a larger file than file_size', async () => {
      await expectUpdateFailure(downloadOf({ fileSize: firmware.length - 100 }), -4, /size mismatch/);
      assert.deepEqual(await filesOnDisk(), []);
    });

    it('fails with -4 when a body of unannounced length runs past file_size', async () => {
      const url = await startServer((_request, response) => {
        response.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        response.end(Buffer.concat([firmware, Buffer.alloc(100)]));
      });
      await expectUpdateFailure(downloadOf({ url }), -4, /more than file_size/);
      assert.deepEqual(await filesOnDisk(), []);
    });
  });

  describe('failures', () => {
    it('fails with -2 when the firmware does not exist (HTTP 404)', async () => {
      const download = downloadOf({ url: fixture.url(PRODUCT, '9.9.9', { scheme: 'http' }) });
      const events = recordEvents(download);
      await expectUpdateFailure(download, -2, /HTTP 404/);
      assert.equal(events.filter((event) => event.name === 'retry').length, 0);
    });

    it('fails with -3 when the signed URL has expired (HTTP 403)', async () => {
      await expectUpdateFailure(downloadOf({ url: fixture.url(PRODUCT, VERSION, { scheme: 'http', ttlSeconds: -60 }) }), -3, /HTTP 403/);
    });

    it('fails with -1 after the retries when the server keeps stalling in the body', async () => {
      const url = await startServer((_request, response) => {
        response.writeHead(200, { 'Content-Length': String(firmware.length) });
        response.flushHeaders();
      });
      const download = downloadOf({ url, readTimeoutMs: 200, maxRetries: 2 });
      const events = recordEvents(download);
      await expectUpdateFailure(download, -1, /read timeout.*gave up after 2 retries/);
      assert.deepEqual(
        events.filter((event) => event.name === 'retry').map((event) => (event.payload as { attempt: number }).attempt),
        [1, 2],
      );
    });

    it('waits a jittered backoff between retries: between half the backoff and all of it', async () => {
      const url = await startServer((_request, response) => {
        response.writeHead(503);
        response.end();
      });
      const delaysWith = async (random: () => number) => {
        const download = downloadOf({ url, maxRetries: 3, retryBackoffMs: 20, maxRetryBackoffMs: 60, random });
        const events = recordEvents(download);
        await expectUpdateFailure(download, -1, /gave up after 3 retries/);
        return events.filter((event) => event.name === 'retry').map((event) => (event.payload as { delayMs: number }).delayMs);
      };
      assert.deepEqual(await delaysWith(() => 0), [10, 20, 30], 'the lowest: half of 20, 40 and 60 (the longest)');
      assert.deepEqual(await delaysWith(() => 0.999999), [20, 40, 60], 'the highest: the whole backoff');
    });

    it('fails with -1 after the retries when the server never answers', async () => {
      const url = await startServer(() => undefined);
      await expectUpdateFailure(downloadOf({ url, connectTimeoutMs: 200, maxRetries: 1 }), -1, /connect timeout/);
    });

    it('fails with -5, says the disk is full and removes the partial file when the file cannot be written', async function () {
      try {
        await fs.access('/dev/full');
      } catch {
        this.skip();
      }
      await fs.mkdir(directory, { recursive: true });
      await fs.symlink('/dev/full', path.join(directory, `FW_${VERSION}.bin`));
      await expectUpdateFailure(downloadOf(), -5, /^disk full: no space for the firmware after 0 of \d+ bytes$/);
      assert.deepEqual(await filesOnDisk(), [], 'the partial file and its checkpoint are removed');
    });
  });

  describe('the files it keeps', () => {
    it('removes the partial file and checkpoint of another version before it starts', async () => {
      await fs.mkdir(directory, { recursive: true });
      await fs.writeFile(path.join(directory, 'FW_1.0.0.bin'), firmware.subarray(0, 1000));
      await store.save({ version: '1.0.0', md5sum: md5Of(firmware), fileSize: firmware.length, bytesOnDisk: 1000, updatedAt: new Date().toISOString() });
      await downloadOf().start();
      assert.deepEqual(await filesOnDisk(), [`FW_${VERSION}.bin`, `FW_${VERSION}.json`]);
    });

    it('does not resume a partial file of the same version with another md5sum', async () => {
      await fs.mkdir(directory, { recursive: true });
      await fs.writeFile(path.join(directory, `FW_${VERSION}.bin`), Buffer.alloc(1000, 0xee));
      await store.save({
        version: VERSION,
        md5sum: 'b550fe42dec6fe0bc2d66f23e8074a5d',
        fileSize: firmware.length,
        bytesOnDisk: 1000,
        updatedAt: new Date().toISOString(),
      });
      const download = downloadOf();
      const events = recordEvents(download);
      const result = await download.start();
      assert.deepEqual(await fs.readFile(result.path), firmware);
      assert.equal(result.resumedFromByte, 0);
      assert.ok(!events.some((event) => event.name === 'resumed'));
    });

    it('discard removes the partial file and its checkpoint', async () => {
      const download = downloadOf({ progressIntervalMs: 0 });
      abortOncePast(download, 200 * KIB);
      await assert.rejects(download.start(), DownloadAbortedError);
      assert.equal((await filesOnDisk()).length, 2);
      await download.discard();
      assert.deepEqual(await filesOnDisk(), []);
    });

    it('abort during a download resolves once the partial file has a checkpoint of its bytes', async () => {
      await fixture.setFaults(PRODUCT, VERSION, { stallAfterBytes: 100 * KIB });
      const download = downloadOf({ progressIntervalMs: 0 });
      const started = download.start();
      await new Promise<void>((resolve) => {
        download.on('progress', (progress) => {
          if (progress.bytes > 0) resolve();
        });
      });
      await download.abort('the node is closed');
      const checkpoint = await store.load(VERSION);
      assert.ok(checkpoint && checkpoint.bytesOnDisk > 0);
      assert.equal((await fs.stat(path.join(directory, `FW_${VERSION}.bin`))).size, checkpoint.bytesOnDisk);
      await assert.rejects(started, (error: unknown) => error instanceof DownloadAbortedError && error.reason === 'the node is closed');
    });

    it('stops when aborted right after start, before its first request', async () => {
      const download = downloadOf();
      const started = download.start();
      await download.abort('stopped at once');
      await assert.rejects(started, (error: Error) => error instanceof DownloadAbortedError && /stopped at once/.test(error.message));
      const served = fixture.store.get(PRODUCT, VERSION)?.served;
      assert.ok((served?.totalBytes ?? 0) < firmware.length, 'the firmware was not downloaded');
    });

    it('discard during a download stops it and removes what it wrote', async () => {
      await fixture.setFaults(PRODUCT, VERSION, { stallAfterBytes: 100 * KIB });
      const download = downloadOf({ progressIntervalMs: 0 });
      const started = download.start();
      await new Promise<void>((resolve) => {
        download.on('progress', (progress) => {
          if (progress.bytes > 0) resolve();
        });
      });
      await download.discard();
      await assert.rejects(started, DownloadAbortedError);
      assert.deepEqual(await filesOnDisk(), []);
    });

    it('saves its checkpoint far less often than chunks arrive', async () => {
      firmware = firmwareBytes(4 * MIB);
      await fixture.upload(PRODUCT, VERSION, firmware);
      const counting = new CountingCheckpointStore(store);
      let chunks = 0;
      // Sends the body in 4 KiB pieces, each once the one before has left, as a slow link delivers it.
      const url = await startServer((_request, response) => {
        response.writeHead(200, { 'Content-Length': String(firmware.length) });
        let offset = 0;
        const next = () => {
          if (offset >= firmware.length) return void response.end();
          chunks += 1;
          response.write(firmware.subarray(offset, offset + 4 * KIB), next);
          offset += 4 * KIB;
        };
        next();
      });
      const result = await downloadOf({ url, checkpointStore: counting }).start();
      assert.deepEqual(await fs.readFile(result.path), firmware);
      assert.ok(chunks >= 1024, `${chunks} chunks`);
      assert.ok(counting.saves >= 2, 'a checkpoint at the start and a complete one at the end');
      assert.ok(counting.saves < chunks / 20, `${counting.saves} saves for ${chunks} chunks`);
    });
  });

  describe('servers that starve, redirect or encode', () => {
    it('ends a download that trickles below the minimum speed with -1, long before any read timeout', async () => {
      // One byte every 100 ms never leaves the socket silent for the read timeout.
      const url = await startServer((_request, response) => {
        response.writeHead(200, { 'Content-Length': String(firmware.length) });
        let sent = 0;
        const timer = setInterval(() => {
          if (response.destroyed) return clearInterval(timer);
          response.write(firmware.subarray(sent, sent + 1));
          sent += 1;
        }, 100);
        response.on('close', () => clearInterval(timer));
      });
      const error = await expectUpdateFailure(
        downloadOf({ url, readTimeoutMs: 60_000, minBytesPerSecond: 1024, minSpeedWindowMs: 1000, maxRetries: 5 }),
        -1,
        /^download too slow: \d+ bytes in 1 s at byte \d+ of \d+, the minimum is 1024 bytes\/s$/,
      );
      assert.ok(error.reason.length < 200);
    });

    it('keeps going while the speed stays above the minimum', async () => {
      await fixture.setFaults(PRODUCT, VERSION, { throttleBytesPerSecond: 512 * KIB });
      const result = await downloadOf({ minBytesPerSecond: 16 * KIB, minSpeedWindowMs: 500 }).start();
      assert.equal(result.md5, md5Of(firmware));
    });

    it('follows a redirect to the firmware', async () => {
      const target = fixture.url(PRODUCT, VERSION, { scheme: 'http' });
      const url = await startServer((_request, response) => response.writeHead(302, { Location: target }).end());
      const result = await downloadOf({ url }).start();
      assert.equal(result.md5, md5Of(firmware));
    });

    for (const [what, location, says] of [
      ['a non-http scheme', 'ftp://127.0.0.1/firmware.bin', /^redirect to a ftp URL refused$/],
      ['a file URL', 'file:///etc/passwd', /^redirect to a file URL refused$/],
    ] as const) {
      it(`fails at once, without retries, on a redirect to ${what}`, async () => {
        let requests = 0;
        const url = await startServer((_request, response) => {
          requests += 1;
          response.writeHead(302, { Location: location }).end();
        });
        await expectUpdateFailure(downloadOf({ url, maxRetries: 5 }), -1, says);
        assert.equal(requests, 1);
      });
    }

    it('stops after a bounded number of redirects', async () => {
      let requests = 0;
      const url = await startServer((request, response) => {
        requests += 1;
        response.writeHead(307, { Location: `/hop${requests}` }).end();
      });
      await expectUpdateFailure(downloadOf({ url, maxRedirects: 3 }), -1, /^too many redirects \(more than 3\)$/);
      assert.equal(requests, 4);
    });

    it('reads a chunked body, wherever the pieces the server sends split its framing', async () => {
      const url = await startServer((_request, response) => {
        // Written by hand: chunks of many sizes, an extension and a trailer, sent in small pieces.
        const parts: Buffer[] = [Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n')];
        for (let offset = 0, index = 0; offset < firmware.length; index++) {
          const size = Math.min(firmware.length - offset, 1 + ((index * 7919) % 70_000));
          parts.push(Buffer.from(`${size.toString(16)}${index % 5 === 0 ? ';part=' + index : ''}\r\n`), firmware.subarray(offset, offset + size), Buffer.from('\r\n'));
          offset += size;
        }
        parts.push(Buffer.from('0\r\nX-Note: the end\r\n\r\n'));
        const wire = Buffer.concat(parts);
        const socket = response.socket;
        let sent = 0;
        const next = () => {
          if (sent >= wire.length) return void socket?.end();
          const size = 1 + ((sent * 31) % 9000);
          socket?.write(wire.subarray(sent, sent + size), next);
          sent += size;
        };
        next();
      });
      const result = await downloadOf({ url }).start();
      assert.equal(result.md5, md5Of(firmware));
      assert.deepEqual(await fs.readFile(result.path), firmware);
    });

    it('refuses a Transfer-Encoding other than chunked instead of writing it into the firmware', async () => {
      const url = await startServer((_request, response) => {
        // Written by hand: Node's server would frame the body itself.
        response.socket?.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
        response.socket?.end();
      });
      await expectUpdateFailure(downloadOf({ url }), -1, /^the server sent Transfer-Encoding: gzip, chunked; only chunked is accepted$/);
      const partial = await fs.readFile(path.join(directory, `FW_${VERSION}.bin`)).catch(() => Buffer.alloc(0));
      assert.equal(partial.length, 0, 'nothing of the encoded body is in the firmware file');
    });

    it('fetches the URL as it was parsed', async () => {
      let requested = '';
      const url = await startServer((request, response) => {
        requested = request.url ?? '';
        response.writeHead(404).end();
      });
      await expectUpdateFailure(downloadOf({ url: `${url}/a b/../fw?x=1 2` }), -2, /not found/);
      assert.equal(requested, '/fw?x=1%202');
    });
  });

  describe('the downloads folder', () => {
    it('fails with -5 before it starts when the disk has less room than the firmware needs', async () => {
      const download = new ResumableDownload({
        command: checkedUpdateCommand({ url: fixture.url(PRODUCT, VERSION, { scheme: 'http' }), version: VERSION, md5sum: md5Of(firmware), file_size: firmware.length }),
        folder: new DownloadsFolder(directory, { freeBytes: async () => 4096 }),
      });
      const error = await download.start().catch((failure: unknown) => failure);
      assert.ok(error instanceof UpdateFailure);
      assert.equal(error.resultCode, -5);
      assert.equal(error.reason, `not enough space: 4096 bytes free, ${firmware.length} needed`);
      assert.equal(servedBytes(), 0, 'nothing is fetched');
    });

    it('removes the temporary files a crash left behind before it starts', async () => {
      await fs.mkdir(directory, { recursive: true });
      await fs.writeFile(path.join(directory, `.FW_${VERSION}.json.0a1b2c3d.tmp`), '{"half":');
      await fs.writeFile(path.join(directory, 'notes.txt'), 'the user');
      await downloadOf().start();
      assert.deepEqual(await filesOnDisk(), [`FW_${VERSION}.bin`, `FW_${VERSION}.json`, 'notes.txt']);
    });
  });
});
