import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readJsonFile, writeFileAtomic } from '../../lib/atomic-file';

describe('writeFileAtomic', function () {
  let directory: string;

  beforeEach(async function () {
    directory = await fs.mkdtemp(path.join(os.tmpdir(), 'atomic-file-'));
  });

  afterEach(async function () {
    await fs.rm(directory, { recursive: true, force: true });
  });

  it('replaces the file whole and leaves no temporary file', async function () {
    const file = path.join(directory, 'state.json');
    await writeFileAtomic(file, '{"version":"1.0.0"}');
    await writeFileAtomic(file, '{"version":"2.0.0"}');
    assert.deepEqual(await readJsonFile(file), { version: '2.0.0' });
    assert.deepEqual(await fs.readdir(directory), ['state.json']);
  });

  it('leaves no temporary file behind when the write cannot be completed', async function () {
    const file = path.join(directory, 'state.json');
    // A folder in the way makes the rename fail, as a full or read-only folder makes the write fail.
    await fs.mkdir(path.join(file, 'in-the-way'), { recursive: true });
    await assert.rejects(writeFileAtomic(file, '{"version":"2.0.0"}'));
    assert.deepEqual(await fs.readdir(directory), ['state.json']);
  });
});
