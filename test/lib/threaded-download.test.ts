import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DownloadsFolder } from '../../lib/downloads-folder';
import { checkedUpdateCommand } from '../../lib/ota-messages';
import { DownloadAbortedError, ResumableDownload, type DownloadProgress, type ResumableDownloadOptions } from '../../lib/resumable-download';
import { createFirmwareDownload } from '../../lib/threaded-download';
import { UpdateFailure } from '../../lib/update-failure';
import { firmwareBytes, md5Of, startFirmwareFixture, type FirmwareFixture } from '../support/firmware-fixture';

const PRODUCT = 'PRODUCT01';
const VERSION = '2.0.0';

describe('downloads on the download thread', function () {
  this.timeout(60_000);
  let fixture: FirmwareFixture;
  let directory: string;
  const bytes = firmwareBytes(1024 * 1024 + 17);

  before(async () => {
    fixture = await startFirmwareFixture();
  });

  after(async () => {
    await fixture.close();
  });

  beforeEach(async () => {
    directory = await fs.mkdtemp(path.join(os.tmpdir(), 'threaded-download-'));
    await fixture.upload(PRODUCT, VERSION, bytes);
  });

  afterEach(async () => {
    await fs.rm(directory, { recursive: true, force: true });
  });

  const optionsOf = (overrides: Partial<ResumableDownloadOptions> = {}): ResumableDownloadOptions => ({
    command: checkedUpdateCommand({ url: fixture.url(PRODUCT, VERSION, { scheme: 'https' }), version: VERSION, md5sum: md5Of(bytes), file_size: bytes.length }),
    folder: new DownloadsFolder(directory),
    ca: fixture.caPem,
    retryBackoffMs: 10,
    ...overrides,
  });

  it('runs a download whose options can cross there on the thread, and one with a random or folder of its own on the calling thread', () => {
    assert.ok(!(createFirmwareDownload(optionsOf()) instanceof ResumableDownload));
    assert.ok(createFirmwareDownload(optionsOf({ random: () => 0.5 })) instanceof ResumableDownload);
    assert.ok(createFirmwareDownload(optionsOf({ folder: new DownloadsFolder(directory, { freeBytes: async () => undefined }) })) instanceof ResumableDownload);
  });

  it('downloads the firmware with the events and the result of a ResumableDownload, retries included', async () => {
    await fixture.store.setFaults(PRODUCT, VERSION, { closeAfterBytes: 300_000 });
    const download = createFirmwareDownload(optionsOf({ sha256: true }));
    const percents: number[] = [];
    const retries: string[] = [];
    download.on('progress', (progress: DownloadProgress) => percents.push(progress.percent));
    download.on('retry', (retry) => retries.push(retry.reason));
    const result = await download.start();
    assert.equal(result.md5, md5Of(bytes));
    assert.ok(result.sha256 && /^[0-9a-f]{64}$/.test(result.sha256));
    assert.equal(result.path, path.join(directory, `FW_${VERSION}.bin`));
    assert.deepEqual(await fs.readFile(result.path), bytes);
    assert.equal(percents[0], 0);
    assert.equal(percents[percents.length - 1], 100);
    assert.equal(retries.length, 1);
    assert.match(retries[0], /connection closed/);
    assert.equal(download.isRunning, false);
  });

  it('rejects with the UpdateFailure and result code the download ended with', async () => {
    const download = createFirmwareDownload(
      optionsOf({
        command: checkedUpdateCommand({ url: fixture.url(PRODUCT, '9.9.9', { scheme: 'https' }), version: '9.9.9', md5sum: md5Of(bytes), file_size: bytes.length }),
      }),
    );
    await assert.rejects(download.start(), (error: unknown) => {
      assert.ok(error instanceof UpdateFailure);
      assert.equal(error.resultCode, -2);
      return true;
    });
  });

  it('stops on abort with a DownloadAbortedError and keeps the file for a resume; discard removes it', async () => {
    await fixture.store.setFaults(PRODUCT, VERSION, { throttleBytesPerSecond: 256 * 1024 });
    const download = createFirmwareDownload(optionsOf());
    const started = new Promise<void>((resolve) => download.on('progress', (progress: DownloadProgress) => progress.percent > 0 && resolve()));
    const outcome = download.start();
    await started;
    await download.abort('the node was closed');
    await assert.rejects(outcome, (error: unknown) => error instanceof DownloadAbortedError && error.reason === 'the node was closed');
    const checkpoint = JSON.parse(await fs.readFile(path.join(directory, `FW_${VERSION}.json`), 'utf8')) as { bytesOnDisk: number };
    assert.ok(checkpoint.bytesOnDisk > 0, 'the checkpoint keeps what arrived');
    await fixture.store.setFaults(PRODUCT, VERSION, {});
    const again = createFirmwareDownload(optionsOf());
    const resumed: number[] = [];
    again.on('resumed', ({ fromByte }) => resumed.push(fromByte));
    const result = await again.start();
    assert.equal(resumed[0], checkpoint.bytesOnDisk);
    assert.equal(result.resumedFromByte, checkpoint.bytesOnDisk);
    await again.discard('cancelled');
    assert.deepEqual(await fs.readdir(directory), []);
  });

  it('uses a URL given while it runs from the next request on', async () => {
    await fixture.store.setFaults(PRODUCT, VERSION, { closeAfterBytes: 200_000 });
    const download = createFirmwareDownload(
      optionsOf({ command: checkedUpdateCommand({ url: 'https://127.0.0.1:1/expired', version: VERSION, md5sum: md5Of(bytes), file_size: bytes.length }) }),
    );
    download.updateUrl(fixture.url(PRODUCT, VERSION, { scheme: 'https' }));
    const fresh = fixture.url(PRODUCT, VERSION, { scheme: 'https' }) + '&fresh=1';
    download.on('retry', () => download.updateUrl(fresh));
    const before = fixture.store.get(PRODUCT, VERSION)?.served.requestCount ?? 0;
    const result = await download.start();
    assert.equal(result.md5, md5Of(bytes));
    assert.equal((fixture.store.get(PRODUCT, VERSION)?.served.requestCount ?? 0) - before, 2, 'the cut request, then the rest from the fresh URL');
  });
});
