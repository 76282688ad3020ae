import { strict as assert } from 'assert';
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { asFirmwareDigest, createRunningHashes, HASH_READ_SIZE, md5Equals, updateHashesFromFile } from '../../lib/firmware-digest';
import { createFirmwareHasher, hashFirmwareFile, type HashingMode } from '../../lib/firmware-hasher';

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
    const hashes = createRunningHashes(['md5', 'sha256']);
    hashes.update(content.subarray(0, 1000));
    hashes.update(content.subarray(1000));
    assert.equal(hashes.bytes, content.length);
    assert.deepEqual(hashes.digest(), { md5: md5(content), sha256: sha256(content), bytes: content.length });
  });

  it('computes only the algorithms asked for', () => {
    const hashes = createRunningHashes(['md5']);
    hashes.update(content);
    assert.deepEqual(hashes.digest(), { md5: md5(content), bytes: content.length });
    assert.throws(() => asFirmwareDigest({ sha256: sha256(content), bytes: 1 }), /no MD5/);
  });

  it('continues running hashes from a file, as a resumed download does', async () => {
    const hashes = createRunningHashes(['md5']);
    const fromFile = await updateHashesFromFile(hashes, filePath, { upToBytes: 5000 });
    hashes.update(content.subarray(5000));
    assert.equal(fromFile, 5000);
    assert.equal(hashes.digest().md5, md5(content));
  });

  for (const mode of ['worker', 'inline'] as HashingMode[]) {
    describe(`hashed ${mode === 'worker' ? 'on the hashing thread' : 'inline'}`, () => {
      it('hashes a file larger than one read', async () => {
        assert.deepEqual(await hashFirmwareFile(filePath, { algorithms: ['md5', 'sha256'], mode }), {
          md5: md5(content),
          sha256: sha256(content),
          bytes: content.length,
        });
      });

      it('hashes only the first bytes of a file when asked, with only SHA-256 when asked', async () => {
        const upToBytes = HASH_READ_SIZE + 7;
        const prefix = content.subarray(0, upToBytes);
        assert.deepEqual(await hashFirmwareFile(filePath, { algorithms: ['sha256'], upToBytes, mode }), { sha256: sha256(prefix), bytes: upToBytes });
      });

      it('stops at the end of a file shorter than upToBytes', async () => {
        assert.equal((await hashFirmwareFile(filePath, { algorithms: ['md5'], upToBytes: content.length * 2, mode })).bytes, content.length);
      });

      it('hashes bytes and ranges of a file in the order they were asked for, without waiting for each', async () => {
        const hasher = createFirmwareHasher(['md5', 'sha256'], mode);
        const pending = [
          hasher.update(content.subarray(0, 1000)),
          hasher.updateFromFile(filePath, { upToBytes: 3000 }),
          hasher.update(content.subarray(3000, 5000)),
          hasher.updateFromFile(filePath, { upToBytes: HASH_READ_SIZE + 5000 }),
        ];
        const read = await Promise.all(pending);
        assert.deepEqual(
          read.slice(1).filter((value) => typeof value === 'number'),
          [2000, HASH_READ_SIZE],
        );
        const whole = content.subarray(0, HASH_READ_SIZE + 5000);
        assert.deepEqual(await hasher.digest(), { md5: md5(whole), sha256: sha256(whole), bytes: whole.length });
      });

      it('stops hashing when aborted', async () => {
        const controller = new AbortController();
        controller.abort();
        await assert.rejects(hashFirmwareFile(filePath, { algorithms: ['md5'], signal: controller.signal, mode }), { name: 'AbortError' });
      });

      it('rejects for a file that cannot be read, with the file system code', async () => {
        await assert.rejects(hashFirmwareFile(path.join(directory, 'missing.bin'), { algorithms: ['md5'], mode }), { code: 'ENOENT' });
      });
    });
  }

  it('compares MD5 strings without regard to case', () => {
    assert.ok(md5Equals('B550FE42DEC6FE0BC2D66F23E8074A5D', 'b550fe42dec6fe0bc2d66f23e8074a5d'));
    assert.ok(!md5Equals('b550fe42dec6fe0bc2d66f23e8074a5d', 'b550fe42dec6fe0bc2d66f23e8074a5e'));
  });
});
