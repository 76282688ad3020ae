/**
 * State kept as a JSON snapshot plus a journal of the changes made since (JSON lines beside it), so
 * that a change costs one appended line, not a rewrite of everything kept.
 *
 * Every line carries a sequence number and the snapshot says the last one it includes: a crash
 * between writing a new snapshot and emptying the journal leaves lines that are skipped, not applied
 * twice. A torn or garbled line (a crash in the middle of an append) is skipped too. The owner folds
 * the journal into a new snapshot once it has loaded it; record() folds it when it outgrows a
 * multiple of the snapshot, so the rewrites cost a bounded share of the appends.
 *
 * Snapshots and lines are serialized when record() or compact() is called, and written in that
 * order: a snapshot holds exactly the changes recorded before it.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { readFileIfPresent, syncDirectory, writeFileAtomic } from '../lib/atomic-file';

export interface StateJournalOptions {
  /** A JSON object; one written by an earlier version, without a journal, loads as a snapshot. */
  snapshotPath: string;
  journalPath: string;
  /** The journal is folded into a new snapshot once it is larger than this many times the snapshot... */
  compactionRatio?: number;
  /** ...and than this many bytes, so that a small state is not rewritten every few changes. */
  minimumCompactionBytes?: number;
}

export interface StoredState<Snapshot> {
  journal: StateJournal;
  /** The snapshot's fields; undefined when there is none or it is not a JSON object. */
  snapshot?: Snapshot;
  /** The changes journaled after the snapshot, oldest first, as they were recorded. */
  changes: unknown[];
}

export const DEFAULT_COMPACTION_RATIO = 4;
export const DEFAULT_MINIMUM_COMPACTION_BYTES = 1024 * 1024;

/** The snapshot's field that names the last journal line it includes. */
const SEQUENCE_FIELD = 'journalSequence';

function isSequence(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function parseSnapshot(text: string | undefined): { fields?: Record<string, unknown>; sequence: number } {
  if (text === undefined) return { sequence: 0 };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { sequence: 0 };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { sequence: 0 };
  const { [SEQUENCE_FIELD]: sequence, ...fields } = parsed as Record<string, unknown>;
  return { fields, sequence: isSequence(sequence) ? sequence : 0 };
}

function parseLine(line: string): { seq: number; change: unknown } | undefined {
  if (line.trim() === '') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { seq, change } = parsed as Record<string, unknown>;
  return isSequence(seq) && change !== undefined ? { seq, change } : undefined;
}

async function emptyFile(filePath: string): Promise<void> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(filePath, 'r+');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  try {
    await handle.truncate(0);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

export class StateJournal {
  private readonly snapshotPath: string;
  private readonly journalPath: string;
  private readonly compactionRatio: number;
  private readonly minimumCompactionBytes: number;
  /** The number of the last line recorded (or included in the snapshot). */
  private sequence: number;
  /** Bytes of the journal once the writes queued so far are done. */
  private journalBytes: number;
  private snapshotBytes: number;
  /** The next write must be a snapshot: the journal holds lines of an earlier run, or a write failed. */
  private mustCompact: boolean;
  /** A write failed, so the journal may end in a torn line: appends wait for the next snapshot. */
  private damaged = false;
  private journalEntryDurable: boolean;
  private writing: Promise<void> = Promise.resolve();
  private removed = false;

  private constructor(options: StateJournalOptions, sequence: number, journalBytes: number, snapshotBytes: number, journalExists: boolean) {
    this.snapshotPath = options.snapshotPath;
    this.journalPath = options.journalPath;
    this.compactionRatio = options.compactionRatio ?? DEFAULT_COMPACTION_RATIO;
    this.minimumCompactionBytes = options.minimumCompactionBytes ?? DEFAULT_MINIMUM_COMPACTION_BYTES;
    this.sequence = sequence;
    this.journalBytes = journalBytes;
    this.snapshotBytes = snapshotBytes;
    this.mustCompact = journalBytes > 0;
    this.journalEntryDurable = journalExists;
  }

  /** Reads the snapshot and the changes journaled after it; call compact() once they are applied. */
  static async open<Snapshot extends object>(options: StateJournalOptions): Promise<StoredState<Snapshot>> {
    const snapshotText = await readFileIfPresent(options.snapshotPath);
    const journalText = await readFileIfPresent(options.journalPath);
    const snapshot = parseSnapshot(snapshotText);
    const changes: unknown[] = [];
    let sequence = snapshot.sequence;
    for (const line of (journalText ?? '').split('\n')) {
      const entry = parseLine(line);
      if (!entry || entry.seq <= snapshot.sequence) continue;
      changes.push(entry.change);
      sequence = Math.max(sequence, entry.seq);
    }
    const journal = new StateJournal(options, sequence, Buffer.byteLength(journalText ?? ''), Buffer.byteLength(snapshotText ?? ''), journalText !== undefined);
    const stored: StoredState<Snapshot> = { journal, changes };
    if (snapshot.fields) stored.snapshot = snapshot.fields as Snapshot;
    return stored;
  }

  /**
   * Appends one line per change and resolves once they are on disk. When the journal would outgrow
   * its bound, it writes `snapshot()` (which must already hold the changes) instead.
   */
  record(changes: readonly object[], snapshot: () => object): Promise<void> {
    if (this.removed) return this.settled();
    if (this.mustCompact) return this.compact(snapshot);
    if (changes.length === 0) return this.settled();
    const first = this.sequence + 1;
    const text = changes.map((change, index) => `${JSON.stringify({ seq: first + index, change })}\n`).join('');
    const bytes = Buffer.byteLength(text);
    if (this.journalBytes + bytes > Math.max(this.compactionRatio * this.snapshotBytes, this.minimumCompactionBytes)) return this.compact(snapshot, true);
    this.sequence += changes.length;
    this.journalBytes += bytes;
    return this.enqueue(() => (this.damaged ? Promise.resolve() : this.append(text)));
  }

  /**
   * Writes `snapshot()` as the new snapshot and empties the journal, if the journal holds anything
   * (or always, with `force`: the owner has changes it did not record).
   */
  compact(snapshot: () => object, force = false): Promise<void> {
    if (this.removed || (!force && !this.mustCompact && this.journalBytes === 0)) return this.settled();
    const text = `${JSON.stringify({ ...snapshot(), [SEQUENCE_FIELD]: this.sequence })}\n`;
    this.snapshotBytes = Buffer.byteLength(text);
    this.journalBytes = 0;
    this.mustCompact = false;
    return this.enqueue(async () => {
      await writeFileAtomic(this.snapshotPath, text);
      await emptyFile(this.journalPath);
      this.damaged = false;
    });
  }

  /** Waits for the writes under way; their failures were reported to the callers of record() and compact(). */
  settled(): Promise<void> {
    return this.writing.catch(() => undefined);
  }

  /** Deletes the journal and the snapshot once the writes under way are done; nothing is written after. */
  async remove(): Promise<void> {
    this.removed = true;
    await this.settled();
    await fs.rm(this.journalPath, { force: true });
    await fs.rm(this.snapshotPath, { force: true });
  }

  private enqueue(write: () => Promise<void>): Promise<void> {
    const next = this.settled().then(async () => {
      if (this.removed) return;
      try {
        await write();
      } catch (error) {
        this.damaged = true;
        this.mustCompact = true;
        throw error;
      }
    });
    this.writing = next;
    return next;
  }

  private async append(text: string): Promise<void> {
    if (!this.journalEntryDurable) await fs.mkdir(path.dirname(this.journalPath), { recursive: true });
    const handle = await fs.open(this.journalPath, 'a');
    try {
      await handle.write(text);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    if (!this.journalEntryDurable) {
      await syncDirectory(path.dirname(this.journalPath));
      this.journalEntryDurable = true;
    }
  }
}
