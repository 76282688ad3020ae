/**
 * The console's firmware library: `<dataDir>/firmware/<productId>/<version>.bin` beside a JSON
 * record (md5, size, ETag, fault knobs, served statistics). Uploads stream to disk and are hashed
 * while they are written, so a firmware of any size never sits in memory. What changes with every
 * request (statistics, one-shot faults) is appended to `<version>.journal.jsonl` (see StateJournal),
 * folded into the record when the store opens and flushes.
 */
import { createHash, randomBytes } from 'crypto';
import { EventEmitter } from 'events';
import { createWriteStream, promises as fs } from 'fs';
import * as path from 'path';
import { Readable } from 'stream';
import { pipeline } from 'stream/promises';
import { Transform, type TransformCallback } from 'stream';
import { describeInvalidProductId } from '../lib/device-info';
import { describeInvalidFirmwareVersion } from '../lib/firmware-version';
import { signFirmwareManifest, type FirmwareManifest, type FirmwareSignature, type SignatureAlgorithm } from '../lib/firmware-signature';
import { DEFAULT_MAX_FIRMWARE_SIZE } from '../lib/ota-messages';
import { StateJournal, type StateJournalOptions, type StoredState } from './state-journal';

/** Misbehaviour the firmware server puts on the responses for one firmware (for tests). */
export interface FirmwareFaults {
  /** Limits the body rate of every response. */
  throttleBytesPerSecond?: number;
  /** Destroys the socket after this many body bytes of a response. */
  closeAfterBytes?: number;
  /** How many more responses closeAfterBytes applies to (default 1); it clears after that. */
  closeAfterResponses?: number;
  /** Stops sending after this many body bytes but keeps the socket open; applies to one response. */
  stallAfterBytes?: number;
  /** Answers 200 with the whole file whatever Range asks for. */
  ignoreRange?: boolean;
}

/** One request the firmware server answered for this firmware. */
export interface ServedRequest {
  time: string;
  scheme: 'http' | 'https';
  method: string;
  range?: string;
  ifRange?: string;
  status: number;
  /** Body bytes written for this response. */
  bytes: number;
  /** The fault that cut this response short, if any. */
  fault?: 'closed' | 'stalled';
}

export interface ServedStatistics {
  /** Body bytes served over all responses. */
  totalBytes: number;
  requestCount: number;
  /** The most recent requests, oldest first (at most MAX_RECORDED_REQUESTS). */
  requests: ServedRequest[];
}

export interface FirmwareRecord {
  productId: string;
  version: string;
  md5sum: string;
  file_size: number;
  /** Lowercase hex; absent in records of uploads stored before it was kept. */
  sha256?: string;
  /** What update commands carry as user_defined (a JSON-encoded string), with the signature when the upload was signed. */
  user_defined?: string;
  /** Quoted strong ETag; it changes with every upload stored, even of the same bytes (an unchanged re-upload keeps it). */
  etag: string;
  uploadedAt: string;
  faults: FirmwareFaults;
  served: ServedStatistics;
}

/** The faults one response must apply, already taken off the firmware's one-shot knobs. */
export interface ResponseFaults {
  throttleBytesPerSecond?: number;
  closeAfterBytes?: number;
  stallAfterBytes?: number;
}

export const MAX_RECORDED_REQUESTS = 1000;

/** An upload or a fault setting the console must refuse (HTTP 400). */
export class InvalidFirmwareError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidFirmwareError';
  }
}

/** An upload of a version that exists with other content, without asking to replace it (HTTP 409). */
export class FirmwareVersionExistsError extends Error {
  constructor(readonly existing: FirmwareRecord) {
    super(`firmware ${existing.version} of product ${existing.productId} already exists with other content (md5 ${existing.md5sum}, ${existing.file_size} bytes)`);
    this.name = 'FirmwareVersionExistsError';
  }
}

/** What an upload did: stored a new version, replaced an earlier upload, or found the same content stored already. */
export type FirmwareUploadOutcome = 'created' | 'replaced' | 'unchanged';

export interface FirmwareUploadOptions {
  /** Replace an existing upload of the version, whatever its content. Without it, other content is refused. */
  replace?: boolean;
  /** The size the uploader announced (Content-Length): when it differs from the stored one, refused before the body is read. */
  declaredSize?: number;
  /** user_defined text for the update commands (IoT Explorer's custom information): a signature is added into it when it is a JSON object. */
  userDefined?: string;
  /** Sign the firmware's manifest with this private key (PEM): the signature goes into user_defined. */
  signing?: { privateKeyPem: string; keyId: string; alg?: SignatureAlgorithm };
  /** A signature made elsewhere, put into user_defined as it is. */
  signature?: FirmwareSignature;
}

/** user_defined is a JSON-encoded string of up to 1536 bytes. */
export const MAX_USER_DEFINED_BYTES = 1536;

export interface StoredFirmware {
  record: FirmwareRecord;
  outcome: FirmwareUploadOutcome;
}

export class FirmwareTooLargeError extends InvalidFirmwareError {
  constructor(maxFileSize: number) {
    super(`firmware is larger than the maximum of ${maxFileSize} bytes`);
    this.name = 'FirmwareTooLargeError';
  }
}

export interface FirmwareStoreOptions {
  /** Largest accepted upload in bytes (default 1024 MB, the console's limit). */
  maxFileSize?: number;
  /** Delay that gathers served statistics into one append to the journal; they change with every request. */
  statisticsWriteDelayMs?: number;
}

/** The served statistics of one firmware after a request was added to them. */
export interface ServedEvent {
  productId: string;
  version: string;
  request: ServedRequest;
  totalBytes: number;
  requestCount: number;
}

export interface FirmwareStoreEvents {
  /** A firmware was uploaded, or its fault knobs changed (set on the console or used up by a response). */
  change: [FirmwareRecord];
  removed: [{ productId: string; version: string }];
  /** The firmware server answered a request for the firmware. */
  served: [ServedEvent];
}

/** One line of a firmware's journal: a request served, or the fault knobs as they now are. */
type FirmwareRecordChange = { served: ServedRequest } | { faults: FirmwareFaults };

const FAULT_FIELDS = ['throttleBytesPerSecond', 'closeAfterBytes', 'closeAfterResponses', 'stallAfterBytes', 'ignoreRange'] as const;

/** Reads the fault knobs of a console request; throws InvalidFirmwareError naming the bad field. */
export function parseFirmwareFaults(value: unknown): FirmwareFaults {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidFirmwareError('faults must be a JSON object');
  }
  const fields = value as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!(FAULT_FIELDS as readonly string[]).includes(key)) {
      throw new InvalidFirmwareError(`unknown fault "${key}" (known: ${FAULT_FIELDS.join(', ')})`);
    }
  }
  const faults: FirmwareFaults = {};
  const count = (key: 'throttleBytesPerSecond' | 'closeAfterBytes' | 'closeAfterResponses' | 'stallAfterBytes', minimum: number) => {
    const field = fields[key];
    if (field === undefined || field === null) return;
    if (typeof field !== 'number' || !Number.isInteger(field) || field < minimum) {
      throw new InvalidFirmwareError(`${key} must be an integer of at least ${minimum}`);
    }
    faults[key] = field;
  };
  count('throttleBytesPerSecond', 1);
  count('closeAfterBytes', 0);
  count('closeAfterResponses', 1);
  count('stallAfterBytes', 0);
  if (fields.ignoreRange !== undefined && fields.ignoreRange !== null) {
    if (typeof fields.ignoreRange !== 'boolean') throw new InvalidFirmwareError('ignoreRange must be true or false');
    if (fields.ignoreRange) faults.ignoreRange = true;
  }
  if (faults.closeAfterResponses !== undefined && faults.closeAfterBytes === undefined) {
    throw new InvalidFirmwareError('closeAfterResponses needs closeAfterBytes');
  }
  return faults;
}

function checkIdentity(productId: string, version: string): void {
  const productProblem = describeInvalidProductId(productId);
  if (productProblem) throw new InvalidFirmwareError(productProblem);
  const versionProblem = describeInvalidFirmwareVersion(version);
  if (versionProblem) throw new InvalidFirmwareError(versionProblem);
}

/** Counts and hashes the bytes flowing through, refusing more than the limit. */
class MeasuringStream extends Transform {
  readonly hash = createHash('md5');
  readonly sha256 = createHash('sha256');
  size = 0;

  constructor(private readonly maxFileSize: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.size += chunk.length;
    if (this.size > this.maxFileSize) {
      callback(new FirmwareTooLargeError(this.maxFileSize));
      return;
    }
    this.hash.update(chunk);
    this.sha256.update(chunk);
    callback(null, chunk);
  }
}

/** The user_defined text of an upload: the given text, with the signature (given or made here) added into it. */
function userDefinedOf(manifest: FirmwareManifest, options: FirmwareUploadOptions): string | undefined {
  let signature = options.signature;
  if (!signature && options.signing) {
    try {
      signature = signFirmwareManifest(manifest, options.signing.privateKeyPem, options.signing.keyId, options.signing.alg);
    } catch (error) {
      throw new InvalidFirmwareError(`cannot sign the firmware: ${(error as Error).message}`);
    }
  }
  let text = options.userDefined;
  if (signature) {
    let fields: unknown = {};
    if (text !== undefined && text.trim() !== '') {
      try {
        fields = JSON.parse(text);
      } catch {
        fields = undefined;
      }
      if (typeof fields !== 'object' || fields === null || Array.isArray(fields))
        throw new InvalidFirmwareError('user_defined must be a JSON object to carry a signature');
    }
    text = JSON.stringify({ ...(fields as object), signature });
  }
  if (text !== undefined && Buffer.byteLength(text) > MAX_USER_DEFINED_BYTES) {
    throw new InvalidFirmwareError(`user_defined is ${Buffer.byteLength(text)} bytes, more than the ${MAX_USER_DEFINED_BYTES} allowed`);
  }
  return text;
}

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function addServed(served: ServedStatistics, request: ServedRequest): void {
  served.totalBytes += request.bytes;
  served.requestCount += 1;
  served.requests.push(request);
  if (served.requests.length > MAX_RECORDED_REQUESTS) served.requests.splice(0, served.requests.length - MAX_RECORDED_REQUESTS);
}

/** Replays one journal line over the record; a line of an unknown shape is skipped. */
function applyChange(record: FirmwareRecord, change: unknown): void {
  if (typeof change !== 'object' || change === null) return;
  const fields = change as Record<string, unknown>;
  if (typeof fields.served === 'object' && fields.served !== null && typeof (fields.served as ServedRequest).bytes === 'number') {
    addServed(record.served, fields.served as ServedRequest);
  } else if (typeof fields.faults === 'object' && fields.faults !== null) {
    record.faults = fields.faults as FirmwareFaults;
  }
}

export class FirmwareStore extends EventEmitter<FirmwareStoreEvents> {
  readonly directory: string;
  readonly maxFileSize: number;
  private readonly statisticsWriteDelayMs: number;
  private readonly records = new Map<string, FirmwareRecord>();
  /** Per firmware, its record on disk: the snapshot and the journal of changes since. */
  private readonly journals = new Map<string, StateJournal>();
  /** Per firmware, the tail of its serialized work (uploads, removals). */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Per firmware, the changes not yet appended to its journal and the timer that appends them. */
  private readonly pendingChanges = new Map<string, FirmwareRecordChange[]>();
  private readonly pendingWrites = new Map<string, NodeJS.Timeout>();

  private constructor(dataDir: string, options: FirmwareStoreOptions) {
    super();
    this.directory = path.join(dataDir, 'firmware');
    this.maxFileSize = options.maxFileSize ?? DEFAULT_MAX_FIRMWARE_SIZE;
    this.statisticsWriteDelayMs = options.statisticsWriteDelayMs ?? 250;
  }

  static async open(dataDir: string, options: FirmwareStoreOptions = {}): Promise<FirmwareStore> {
    const store = new FirmwareStore(dataDir, options);
    await fs.mkdir(store.directory, { recursive: true });
    await store.load();
    return store;
  }

  private async load(): Promise<void> {
    for (const product of await fs.readdir(this.directory, { withFileTypes: true })) {
      if (!product.isDirectory()) continue;
      const productDir = path.join(this.directory, product.name);
      for (const name of await fs.readdir(productDir)) {
        // Leftovers of an upload or a record write interrupted by a crash.
        if (name.startsWith('.') && name.endsWith('.tmp')) {
          await fs.rm(path.join(productDir, name), { force: true });
          continue;
        }
        if (!name.endsWith('.json')) continue;
        const version = name.slice(0, -'.json'.length);
        if (describeInvalidFirmwareVersion(version)) continue;
        const stored = await this.openJournal(product.name, version);
        const record = stored.snapshot;
        if (!record || record.productId !== product.name || record.version !== version) continue;
        try {
          await fs.access(this.filePath(record.productId, record.version));
        } catch {
          continue;
        }
        record.faults = record.faults ?? {};
        record.served = record.served ?? { totalBytes: 0, requestCount: 0, requests: [] };
        for (const change of stored.changes) applyChange(record, change);
        await stored.journal.compact(() => record);
        this.records.set(this.key(record.productId, record.version), record);
        this.journals.set(this.key(record.productId, record.version), stored.journal);
      }
    }
  }

  private key(productId: string, version: string): string {
    return `${productId}/${version}`;
  }

  /** Where the firmware's bytes are on disk (whether or not it exists). */
  filePath(productId: string, version: string): string {
    checkIdentity(productId, version);
    return path.join(this.directory, productId, `${version}.bin`);
  }

  private recordPaths(productId: string, version: string): StateJournalOptions {
    return {
      snapshotPath: path.join(this.directory, productId, `${version}.json`),
      journalPath: path.join(this.directory, productId, `${version}.journal.jsonl`),
    };
  }

  private openJournal(productId: string, version: string): Promise<StoredState<FirmwareRecord>> {
    return StateJournal.open<FirmwareRecord>(this.recordPaths(productId, version));
  }

  private serialize<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    const tail = next.catch(() => undefined);
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return next;
  }

  /**
   * Stores a firmware from a stream (or bytes). A version uploaded before is the console's: other
   * content under it is refused (FirmwareVersionExistsError) unless `replace` is asked for, and the same
   * content again leaves the stored upload as it is. A replacement gets a new ETag; its fault knobs and
   * served statistics are kept.
   */
  async upload(productId: string, version: string, source: Readable | Buffer, options: FirmwareUploadOptions = {}): Promise<StoredFirmware> {
    checkIdentity(productId, version);
    const key = this.key(productId, version);
    const stored = this.records.get(key);
    if (stored && !options.replace && options.declaredSize !== undefined && options.declaredSize !== stored.file_size) {
      throw new FirmwareVersionExistsError(clone(stored));
    }
    const productDir = path.join(this.directory, productId);
    await fs.mkdir(productDir, { recursive: true });
    const temporary = path.join(productDir, `.${version}.bin.${randomBytes(4).toString('hex')}.tmp`);
    const measuring = new MeasuringStream(this.maxFileSize);
    const input = Buffer.isBuffer(source) ? Readable.from([source]) : source;
    try {
      const output = createWriteStream(temporary);
      await pipeline(input, measuring, output);
      if (measuring.size === 0) throw new InvalidFirmwareError('firmware is empty');
      const handle = await fs.open(temporary, 'r+');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      await fs.rm(temporary, { force: true });
      throw error;
    }
    const md5sum = measuring.hash.digest('hex');
    const sha256 = measuring.sha256.digest('hex');
    let userDefined: string | undefined;
    try {
      userDefined = userDefinedOf({ productId, version, size: measuring.size, sha256 }, options);
    } catch (error) {
      await fs.rm(temporary, { force: true });
      throw error;
    }
    return this.serialize(key, async () => {
      const previous = this.records.get(key);
      if (previous && !options.replace) {
        await fs.rm(temporary, { force: true });
        if (previous.md5sum === md5sum && previous.file_size === measuring.size && previous.user_defined === userDefined) {
          return { record: clone(previous), outcome: 'unchanged' };
        }
        throw new FirmwareVersionExistsError(clone(previous));
      }
      await fs.rename(temporary, this.filePath(productId, version));
      const uploadedAt = new Date();
      const record: FirmwareRecord = {
        productId,
        version,
        md5sum,
        file_size: measuring.size,
        sha256,
        ...(userDefined !== undefined ? { user_defined: userDefined } : {}),
        etag: `"${md5sum}-${uploadedAt.getTime().toString(36)}${randomBytes(2).toString('hex')}"`,
        uploadedAt: uploadedAt.toISOString(),
        faults: previous?.faults ?? {},
        served: previous?.served ?? { totalBytes: 0, requestCount: 0, requests: [] },
      };
      this.records.set(key, record);
      // The new record holds every change so far, so none is appended after it.
      this.cancelPendingChanges(key);
      let journal = this.journals.get(key);
      if (!journal) {
        journal = (await this.openJournal(productId, version)).journal;
        this.journals.set(key, journal);
      }
      await journal.compact(() => record, true);
      this.emit('change', clone(record));
      return { record: clone(record), outcome: previous ? 'replaced' : 'created' };
    });
  }

  /** A copy of the record, or undefined when the firmware is unknown or removed. */
  get(productId: string, version: string): FirmwareRecord | undefined {
    const record = this.records.get(this.key(productId, version));
    return record ? clone(record) : undefined;
  }

  list(productId?: string): FirmwareRecord[] {
    return [...this.records.values()].filter((record) => productId === undefined || record.productId === productId).map((record) => clone(record));
  }

  /** Deletes the firmware; false when there was none. Its URLs answer 404 from then on. */
  async remove(productId: string, version: string): Promise<boolean> {
    checkIdentity(productId, version);
    const key = this.key(productId, version);
    return this.serialize(key, async () => {
      const existed = this.records.delete(key);
      this.cancelPendingChanges(key);
      const journal = this.journals.get(key);
      this.journals.delete(key);
      if (journal) await journal.remove();
      else for (const file of Object.values(this.recordPaths(productId, version))) await fs.rm(file, { force: true });
      await fs.rm(this.filePath(productId, version), { force: true });
      if (existed) this.emit('removed', { productId, version });
      return existed;
    });
  }

  /** Replaces the fault knobs (`{}` clears them); undefined when the firmware is unknown. */
  async setFaults(productId: string, version: string, faults: FirmwareFaults): Promise<FirmwareRecord | undefined> {
    const checked = parseFirmwareFaults(faults);
    const key = this.key(productId, version);
    const record = this.records.get(key);
    if (!record) return undefined;
    record.faults = checked;
    if (checked.closeAfterBytes !== undefined) record.faults.closeAfterResponses = checked.closeAfterResponses ?? 1;
    this.addChange(key, { faults: clone(record.faults) });
    await this.writeChanges(key);
    this.emit('change', clone(record));
    return clone(record);
  }

  /**
   * The faults the next response with a body must apply, consuming the one-shot knobs
   * (closeAfterBytes counts down closeAfterResponses; stallAfterBytes applies once).
   */
  takeResponseFaults(productId: string, version: string): ResponseFaults {
    const record = this.records.get(this.key(productId, version));
    if (!record) return {};
    const faults = record.faults;
    const taken: ResponseFaults = {};
    if (faults.throttleBytesPerSecond !== undefined) taken.throttleBytesPerSecond = faults.throttleBytesPerSecond;
    let changed = false;
    if (faults.closeAfterBytes !== undefined) {
      taken.closeAfterBytes = faults.closeAfterBytes;
      const remaining = (faults.closeAfterResponses ?? 1) - 1;
      if (remaining > 0) {
        faults.closeAfterResponses = remaining;
      } else {
        delete faults.closeAfterBytes;
        delete faults.closeAfterResponses;
      }
      changed = true;
    }
    if (faults.stallAfterBytes !== undefined) {
      taken.stallAfterBytes = faults.stallAfterBytes;
      delete faults.stallAfterBytes;
      changed = true;
    }
    if (changed) {
      this.addChange(this.key(productId, version), { faults: clone(faults) });
      this.scheduleChangesWrite(this.key(productId, version), 0);
      this.emit('change', clone(record));
    }
    return taken;
  }

  /** Adds one answered request to the firmware's served statistics. */
  recordServed(productId: string, version: string, request: ServedRequest): void {
    const key = this.key(productId, version);
    const record = this.records.get(key);
    if (!record) return;
    addServed(record.served, request);
    this.addChange(key, { served: request });
    this.scheduleChangesWrite(key, this.statisticsWriteDelayMs);
    this.emit('served', { productId, version, request: { ...request }, totalBytes: record.served.totalBytes, requestCount: record.served.requestCount });
  }

  private addChange(key: string, change: FirmwareRecordChange): void {
    const changes = this.pendingChanges.get(key);
    if (changes) changes.push(change);
    else this.pendingChanges.set(key, [change]);
  }

  private cancelPendingChanges(key: string): void {
    clearTimeout(this.pendingWrites.get(key));
    this.pendingWrites.delete(key);
    this.pendingChanges.delete(key);
  }

  private scheduleChangesWrite(key: string, delayMs: number): void {
    if (this.pendingWrites.has(key) && delayMs > 0) return;
    clearTimeout(this.pendingWrites.get(key));
    const timer = setTimeout(() => void this.writeChanges(key).catch(() => undefined), delayMs);
    timer.unref();
    this.pendingWrites.set(key, timer);
  }

  /** Appends the firmware's pending changes to its journal, resolving once they are on disk. */
  private writeChanges(key: string): Promise<void> {
    clearTimeout(this.pendingWrites.get(key));
    this.pendingWrites.delete(key);
    const changes = this.pendingChanges.get(key) ?? [];
    this.pendingChanges.delete(key);
    const record = this.records.get(key);
    const journal = this.journals.get(key);
    if (!record || !journal) return Promise.resolve();
    return journal.record(changes, () => record);
  }

  /** Folds every firmware's changes into its record file; call before the process or the simulator stops. */
  async flush(): Promise<void> {
    await Promise.all([...this.queues.values()]);
    for (const [key, journal] of this.journals) {
      const record = this.records.get(key);
      if (!record) continue;
      const unrecorded = this.pendingChanges.has(key);
      this.cancelPendingChanges(key);
      await journal.compact(() => record, unrecorded);
    }
  }

  async close(): Promise<void> {
    await this.flush();
  }
}
