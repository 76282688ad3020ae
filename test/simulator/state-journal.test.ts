import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { StateJournal, type StateJournalOptions } from '../../simulator/state-journal';

interface Counter {
  count: number;
  items: string[];
}

/** A state of the shape the tests keep: a counter and the items added to it, one change per item. */
class CounterState {
  readonly state: Counter = { count: 0, items: [] };

  add(item: string): { item: string } {
    this.state.count += 1;
    this.state.items.push(item);
    return { item };
  }

  apply(changes: unknown[]): void {
    for (const change of changes) this.add((change as { item: string }).item);
  }
}

describe('StateJournal', function () {
  let directory: string;
  let files: StateJournalOptions;

  beforeEach(async function () {
    directory = await fs.mkdtemp(path.join(os.tmpdir(), 'state-journal-'));
    files = { snapshotPath: path.join(directory, 'state.json'), journalPath: path.join(directory, 'state.journal.jsonl') };
  });

  afterEach(async function () {
    await fs.rm(directory, { recursive: true, force: true });
  });

  async function reopen(options: StateJournalOptions = files): Promise<{ journal: StateJournal; counter: CounterState }> {
    const stored = await StateJournal.open<Counter>(options);
    const counter = new CounterState();
    if (stored.snapshot) Object.assign(counter.state, stored.snapshot);
    counter.apply(stored.changes);
    return { journal: stored.journal, counter };
  }

  it('hands back the snapshot and the changes recorded after it, and folds them into a new snapshot', async function () {
    const { journal, counter } = await reopen();
    await journal.record([counter.add('a'), counter.add('b')], () => counter.state);
    await journal.compact(() => counter.state);
    await journal.record([counter.add('c')], () => counter.state);
    const snapshot = JSON.parse(await fs.readFile(files.snapshotPath, 'utf8'));
    assert.deepEqual(snapshot.items, ['a', 'b']);
    assert.equal((await fs.readFile(files.journalPath, 'utf8')).trim().split('\n').length, 1);

    const reopened = await reopen();
    assert.deepEqual(reopened.counter.state, { count: 3, items: ['a', 'b', 'c'] });
    await reopened.journal.compact(() => reopened.counter.state);
    assert.equal(await fs.readFile(files.journalPath, 'utf8'), '');
    assert.deepEqual(JSON.parse(await fs.readFile(files.snapshotPath, 'utf8')).items, ['a', 'b', 'c']);
    assert.deepEqual((await reopen()).counter.state, { count: 3, items: ['a', 'b', 'c'] });
  });

  it('skips a torn last line, as a crash in the middle of an append leaves it', async function () {
    const { journal, counter } = await reopen();
    await journal.record([counter.add('a'), counter.add('b')], () => counter.state);
    const whole = await fs.readFile(files.journalPath, 'utf8');
    await fs.writeFile(files.journalPath, whole.slice(0, whole.length - 7));
    const reopened = await reopen();
    assert.deepEqual(reopened.counter.state.items, ['a']);
    // Folding it in drops the torn line, so that the next append starts a line of its own.
    await reopened.journal.compact(() => reopened.counter.state);
    await reopened.journal.record([reopened.counter.add('c')], () => reopened.counter.state);
    assert.deepEqual((await reopen()).counter.state.items, ['a', 'c']);
  });

  it('skips a garbled line and keeps the lines around it', async function () {
    const { journal, counter } = await reopen();
    await journal.record([counter.add('a')], () => counter.state);
    await fs.appendFile(files.journalPath, '{"seq":2,"change":{"it\u0000\u0000garbage\n');
    await fs.appendFile(files.journalPath, 'not json at all\n');
    await fs.appendFile(files.journalPath, `${JSON.stringify({ seq: 4, change: { item: 'd' } })}\n`);
    await fs.appendFile(files.journalPath, '{"seq":5,"cha');
    assert.deepEqual((await reopen()).counter.state.items, ['a', 'd']);
  });

  it('does not apply twice the lines a snapshot already holds (a crash before the journal was emptied)', async function () {
    const { journal, counter } = await reopen();
    await journal.record([counter.add('a'), counter.add('b')], () => counter.state);
    const journalBeforeSnapshot = await fs.readFile(files.journalPath, 'utf8');
    await journal.compact(() => counter.state);
    await fs.writeFile(files.journalPath, journalBeforeSnapshot);
    await fs.appendFile(files.journalPath, `${JSON.stringify({ seq: 3, change: { item: 'c' } })}\n`);
    assert.deepEqual((await reopen()).counter.state, { count: 3, items: ['a', 'b', 'c'] });
  });

  it('loads a JSON file written without a journal (by an earlier version) as its snapshot', async function () {
    await fs.writeFile(files.snapshotPath, JSON.stringify({ count: 2, items: ['x', 'y'] }, null, 2) + '\n');
    const { journal, counter } = await reopen();
    assert.deepEqual(counter.state, { count: 2, items: ['x', 'y'] });
    await journal.record([counter.add('z')], () => counter.state);
    assert.deepEqual((await reopen()).counter.state, { count: 3, items: ['x', 'y', 'z'] });
  });

  it('folds the journal into a new snapshot once it outgrows a multiple of the snapshot, so the journal stays bounded', async function () {
    const options = { ...files, compactionRatio: 2, minimumCompactionBytes: 2000 };
    const { journal, counter } = await reopen(options);
    let snapshots = 0;
    let largestJournal = 0;
    const snapshot = () => {
      snapshots += 1;
      return counter.state;
    };
    for (let index = 0; index < 400; index++) {
      await journal.record([counter.add(`item-${index}`)], snapshot);
      const snapshotSize = (await fs.stat(files.snapshotPath).catch(() => ({ size: 0 }))).size;
      const journalSize = (await fs.stat(files.journalPath).catch(() => ({ size: 0 }))).size;
      assert.ok(journalSize <= Math.max(2 * snapshotSize, 2000), `journal of ${journalSize} bytes beside a snapshot of ${snapshotSize}`);
      largestJournal = Math.max(largestJournal, journalSize);
    }
    // The allowance grows with the snapshot, so the snapshot is rewritten a few times, not at every change.
    assert.ok(snapshots >= 2 && snapshots <= 8, `${snapshots} snapshots`);
    assert.ok(largestJournal > 2000);
    const reopened = await reopen(options);
    assert.equal(reopened.counter.state.count, 400);
    assert.equal(reopened.counter.state.items[399], 'item-399');
  });

  it('writes nothing after remove, and leaves neither file', async function () {
    const { journal, counter } = await reopen();
    await journal.record([counter.add('a')], () => counter.state);
    await journal.compact(() => counter.state, true);
    const removed = journal.remove();
    await journal.record([counter.add('b')], () => counter.state);
    await removed;
    assert.deepEqual(await fs.readdir(directory), []);
  });
});
