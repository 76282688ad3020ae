import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { FileCheckpointStore, MemoryCheckpointStore, type CheckpointStore, type DownloadCheckpoint } from '../../lib/checkpoint-store';

function checkpointOf(version: string, bytesOnDisk: number): DownloadCheckpoint {
  return {
    version,
    md5sum: 'b550fe42dec6fe0bc2d66f23e8074a5d',
    fileSize: 511774,
    bytesOnDisk,
    etag: '"b550fe42dec6fe0bc2d66f23e8074a5d-1"',
    url: 'https://firmware.example/1250000000_PRODUCT01_1.0.0?sign=abc',
    updatedAt: new Date(0).toISOString(),
  };
}

describe('file checkpoint store', () => {
  let directory: string;
  let store: FileCheckpointStore;

  beforeEach(async () => {
    directory = await fs.mkdtemp(path.join(os.tmpdir(), 'checkpoint-store-'));
    store = new FileCheckpointStore(path.join(directory, 'downloads'));
  });

  afterEach(async () => {
    await fs.rm(directory, { recursive: true, force: true });
  });

  it('keeps a checkpoint as FW_<version>.json and loads it back', async () => {
    await store.save(checkpointOf('1.0.0', 262144));
    const onDisk = JSON.parse(await fs.readFile(path.join(directory, 'downloads', 'FW_1.0.0.json'), 'utf8'));
    assert.equal(onDisk.version, '1.0.0');
    assert.deepEqual(await store.load('1.0.0'), checkpointOf('1.0.0', 262144));
  });

  it('leaves no temporary file behind after many saves', async () => {
    for (let bytes = 0; bytes < 20; bytes++) await store.save(checkpointOf('1.0.0', bytes * 1000));
    assert.deepEqual(await fs.readdir(path.join(directory, 'downloads')), ['FW_1.0.0.json']);
    assert.equal((await store.load('1.0.0'))?.bytesOnDisk, 19000);
  });

  it('answers undefined for a version it has no checkpoint of', async () => {
    assert.equal(await store.load('9.9.9'), undefined);
  });

  it('answers undefined for a corrupt or truncated checkpoint file instead of failing', async () => {
    await fs.mkdir(store.directory, { recursive: true });
    await fs.writeFile(store.filePath('1.0.0'), '{"version":"1.0.0","md5sum":"b550');
    assert.equal(await store.load('1.0.0'), undefined);
  });

  it('answers undefined for a checkpoint whose fields make no sense', async () => {
    await fs.mkdir(store.directory, { recursive: true });
    await fs.writeFile(store.filePath('1.0.0'), JSON.stringify({ ...checkpointOf('1.0.0', 0), bytesOnDisk: 600000 }));
    assert.equal(await store.load('1.0.0'), undefined);
    await fs.writeFile(store.filePath('1.0.0'), JSON.stringify({ ...checkpointOf('1.0.0', 0), version: '2.0.0' }));
    assert.equal(await store.load('1.0.0'), undefined);
  });

  it('removes a checkpoint, and removing one that is not there is no error', async () => {
    await store.save(checkpointOf('1.0.0', 10));
    await store.remove('1.0.0');
    await store.remove('1.0.0');
    assert.equal(await store.load('1.0.0'), undefined);
    assert.deepEqual(await fs.readdir(store.directory), []);
  });

  it('lists the checkpoints of every version, skipping other files', async () => {
    await store.save(checkpointOf('1.0.0', 10));
    await store.save(checkpointOf('2.0.0', 20));
    await fs.writeFile(path.join(store.directory, 'FW_1.0.0.bin'), 'firmware');
    await fs.writeFile(path.join(store.directory, 'FW_3.0.0.json'), 'not json');
    assert.deepEqual(
      (await store.list()).map((checkpoint) => [checkpoint.version, checkpoint.bytesOnDisk]),
      [
        ['1.0.0', 10],
        ['2.0.0', 20],
      ],
    );
  });

  it('lists nothing before its directory exists', async () => {
    assert.deepEqual(await store.list(), []);
  });

  it('refuses a version that could name a file outside its directory', async () => {
    await assert.rejects(store.load('../escape'), /characters outside/);
    await assert.rejects(store.save(checkpointOf('../escape', 0)), /characters outside/);
  });
});

describe('memory checkpoint store', () => {
  it('saves, loads, lists and removes copies of checkpoints', async () => {
    const store: CheckpointStore = new MemoryCheckpointStore();
    const checkpoint = checkpointOf('1.0.0', 10);
    await store.save(checkpoint);
    checkpoint.bytesOnDisk = 99;
    assert.equal((await store.load('1.0.0'))?.bytesOnDisk, 10);
    assert.deepEqual(
      (await store.list()).map((saved) => saved.version),
      ['1.0.0'],
    );
    await store.remove('1.0.0');
    assert.equal(await store.load('1.0.0'), undefined);
  });
});
