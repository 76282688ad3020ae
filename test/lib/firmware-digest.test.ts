import { strict as assert } from 'assert';
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createFirmwareHashes, hashFile, HASH_READ_SIZE, md5Equals, updateHashesFromFile } from '../../lib/firmware-digest';

function md5(bytes: Buffer): string {
  return createHash('md5').update(bytes).digest('hex');
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

describe('firmware digest', () => {
  let directory: string;
  let filePath: string;
  let content: Buffer;

  beforeEach(async () => {
    directory = await fs.mkdtemp(path.join(os.tmpdir(), 'firmware-digest-'));
    filePath = path.join(directory, 'firmware.bin');
    // Longer than one read, and not a multiple of it.
    content = randomBytes(2 * HASH_READ_SIZE + 12345);
    await fs.writeFile(filePath, content);
  });

  afterEach(async () => {
    await fs.rm(directory, { recursive: true, force: true });
  });

  it('computes MD5 and SHA-256 of chunks fed one after another', () => {
    const hashes = createFirmwareHashes();
    hashes.update(content.subarray(0, 1000));
    hashes.update(content.subarray(1000));
    assert.equal(hashes.bytes, content.length);
    assert.deepEqual(hashes.digest(), { md5: md5(content), sha256: sha256(content), bytes: content.length });
  });

  it('hashes a file larger than one read', async () => {
    assert.deepEqual(await hashFile(filePath), { md5: md5(content), sha256: sha256(content), bytes: content.length });
  });

  it('hashes only the first bytes of a file when asked', async () => {
    const upToBytes = HASH_READ_SIZE + 7;
    const prefix = content.subarray(0, upToBytes);
    assert.deepEqual(await hashFile(filePath, { upToBytes }), { md5: md5(prefix), sha256: sha256(prefix), bytes: upToBytes });
  });

  it('stops at the end of a file shorter than upToBytes', async () => {
    assert.equal((await hashFile(filePath, { upToBytes: content.length * 2 })).bytes, content.length);
  });

  it('continues running hashes from a file, as a resumed download does', async () => {
    const hashes = createFirmwareHashes();
    const fromFile = await updateHashesFromFile(hashes, filePath, { upToBytes: 5000 });
    hashes.update(content.subarray(5000));
    assert.equal(fromFile, 5000);
    assert.equal(hashes.digest().md5, md5(content));
  });

  it('stops hashing when aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(hashFile(filePath, { signal: controller.signal }), { name: 'AbortError' });
  });

  it('compares MD5 strings without regard to case', () => {
    assert.ok(md5Equals('B550FE42DEC6FE0BC2D66F23E8074A5D', 'b550fe42dec6fe0bc2d66f23e8074a5d'));
    assert.ok(!md5Equals('b550fe42dec6fe0bc2d66f23e8074a5d', 'b550fe42dec6fe0bc2d66f23e8074a5e'));
  });
});
