import { strict as assert } from 'assert';
import type * as TlsModule from 'tls';
import { secureContextTrusting } from '../../lib/tls-trust';
import { DownloadsFolder } from '../../lib/downloads-folder';
import { checkedUpdateCommand } from '../../lib/ota-messages';
import { ResumableDownload } from '../../lib/resumable-download';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { firmwareBytes, md5Of, startFirmwareFixture, type FirmwareFixture } from '../support/firmware-fixture';

const PRODUCT = 'PRODUCT01';

describe('TLS trust of downloads', function () {
  let fixture: FirmwareFixture;
  let directory: string;
  const bytes = firmwareBytes(64 * 1024);

  before(async () => {
    fixture = await startFirmwareFixture();
    await fixture.upload(PRODUCT, '2.0.0', bytes);
  });

  after(async () => {
    await fixture.close();
  });

  beforeEach(async () => {
    directory = await fs.mkdtemp(path.join(os.tmpdir(), 'tls-trust-'));
  });

  afterEach(async () => {
    await fs.rm(directory, { recursive: true, force: true });
  });

  it('builds one context per set of extra certificates and hands the same one out again', () => {
    const first = secureContextTrusting(fixture.caPem);
    assert.equal(secureContextTrusting(fixture.caPem), first);
    assert.equal(secureContextTrusting([`\n${fixture.caPem}\n`]), first, 'the same certificate, spaced differently');
    assert.notEqual(secureContextTrusting([fixture.caPem, fixture.caPem]), first);
  });

  it('shares that context between downloads and their retries: no context is built per connection', async () => {
    secureContextTrusting(fixture.caPem);
    // The module object itself (tls.connect calls through it), not a namespace copy of its exports.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const tls = require('tls') as { createSecureContext: typeof TlsModule.createSecureContext };
    const original = tls.createSecureContext;
    let built = 0;
    tls.createSecureContext = (options) => {
      built += 1;
      return original(options);
    };
    try {
      await fixture.store.setFaults(PRODUCT, '2.0.0', { closeAfterBytes: 20_000, closeAfterResponses: 2 });
      for (let index = 0; index < 3; index++) {
        const download = new ResumableDownload({
          command: checkedUpdateCommand({ url: fixture.url(PRODUCT, '2.0.0', { scheme: 'https' }), version: '2.0.0', md5sum: md5Of(bytes), file_size: bytes.length }),
          folder: new DownloadsFolder(path.join(directory, String(index))),
          ca: fixture.caPem,
          retryBackoffMs: 10,
        });
        const result = await download.start();
        assert.equal(result.md5, md5Of(bytes));
      }
    } finally {
      tls.createSecureContext = original;
    }
    const served = fixture.store.get(PRODUCT, '2.0.0')?.served.requests ?? [];
    assert.ok(served.filter((request) => request.scheme === 'https').length >= 5, 'three downloads, two of them retried');
    assert.equal(built, 0);
  });

  it('refuses a server its context does not trust, without a retry', async () => {
    const download = new ResumableDownload({
      command: checkedUpdateCommand({ url: fixture.url(PRODUCT, '2.0.0', { scheme: 'https' }), version: '2.0.0', md5sum: md5Of(bytes), file_size: bytes.length }),
      folder: new DownloadsFolder(directory),
      retryBackoffMs: 10,
    });
    await assert.rejects(download.start(), (error: Error & { resultCode?: number }) => {
      assert.equal(error.resultCode, -1);
      assert.match(error.message, /not trusted/);
      return true;
    });
  });
});
