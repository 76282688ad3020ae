/**
 * Running firmware hashes that do their work on a hashing thread shared by every download of the
 * process (hashing-worker.ts), so that hashing a firmware costs the main thread, which holds every
 * socket of Node-RED, almost nothing. A block the caller owns whole is transferred there and back
 * (no copy); the bytes of a file are read by the thread itself. Where no thread can be started, the
 * hashes run inline.
 */
import * as path from 'path';
import { Worker } from 'worker_threads';
import { createRunningHashes, updateHashesFromFile, type Digests, type HashAlgorithm } from './firmware-digest';
import type { HashingReply, HashingRequest } from './hashing-protocol';

export interface FirmwareHasher {
  /** True when written bytes are best hashed from the file (updateFromFile), false when from memory (update). */
  readonly readsFiles: boolean;
  /** Hashes (a copy of) the bytes next; resolves once they are hashed. */
  update(bytes: Buffer): Promise<void>;
  /**
   * Hashes the file's bytes from where the hashes are (every byte asked for so far) to `upToBytes`
   * (its end when absent) next; resolves with the bytes read.
   */
  updateFromFile(filePath: string, options?: { upToBytes?: number; signal?: AbortSignal }): Promise<number>;
  /** Finishes the hashes; call once, after which the hasher is of no further use. */
  digest(): Promise<Digests>;
  /** Drops the running hashes (an abandoned download); calls still pending reject. */
  dispose(): void;
}

/** 'worker' (default): on the shared hashing thread; 'inline': on the calling thread. */
export type HashingMode = 'worker' | 'inline';

type RequestBody = HashingRequest extends infer R ? (R extends HashingRequest ? Omit<R, 'seq'> : never) : never;

class HashingThread {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { resolve: (reply: HashingReply & { ok: true }) => void; reject: (error: Error) => void }>();
  private nextSeq = 1;
  private nextId = 1;

  newId(): number {
    return this.nextId++;
  }

  request(body: RequestBody): Promise<HashingReply & { ok: true }> {
    const worker = this.start();
    const seq = this.nextSeq++;
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) worker.ref();
      this.pending.set(seq, { resolve, reject });
      worker.postMessage({ ...body, seq });
    });
  }

  /** Throws when the thread cannot be started. */
  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(path.join(__dirname, 'hashing-worker.js'));
    worker.unref();
    worker.on('message', (reply: HashingReply) => this.settle(reply));
    const stopped = (reason: string, cause?: Error) => {
      if (this.worker !== worker) return;
      // The next request starts a new thread.
      this.worker = undefined;
      const pending = [...this.pending.values()];
      this.pending.clear();
      for (const { reject } of pending) reject(new Error(`the hashing thread stopped: ${reason}`, { cause }));
    };
    worker.on('error', (error) => stopped(error.message, error));
    worker.on('exit', (code) => stopped(`exit code ${code}`));
    this.worker = worker;
    return worker;
  }

  private settle(reply: HashingReply): void {
    const waiting = this.pending.get(reply.seq);
    if (!waiting) return;
    this.pending.delete(reply.seq);
    if (this.pending.size === 0) this.worker?.unref();
    if (reply.ok) {
      waiting.resolve(reply);
      return;
    }
    const error = new Error(reply.message) as NodeJS.ErrnoException;
    if (reply.code) error.code = reply.code;
    if (reply.name) error.name = reply.name;
    waiting.reject(error);
  }
}

let thread: HashingThread | undefined;
let threadUnavailable = false;

function sharedThread(): HashingThread | undefined {
  if (threadUnavailable) return undefined;
  thread ??= new HashingThread();
  return thread;
}

/** Requests go out at once, in the order they are made; the thread answers them in that order. */
class ThreadHasher implements FirmwareHasher {
  readonly readsFiles = true;
  private readonly id: number;
  private disposed = false;
  /** Bytes asked for so far: where the next file request starts. */
  private requested = 0;

  constructor(
    private readonly thread: HashingThread,
    algorithms: HashAlgorithm[],
  ) {
    this.id = thread.newId();
    thread.request({ id: this.id, op: 'open', algorithms }).catch(() => undefined);
  }

  async update(bytes: Buffer): Promise<void> {
    if (bytes.length === 0) return;
    this.requested += bytes.length;
    await this.thread.request({ id: this.id, op: 'update', bytes: new Uint8Array(bytes) });
  }

  async updateFromFile(filePath: string, options: { upToBytes?: number; signal?: AbortSignal } = {}): Promise<number> {
    options.signal?.throwIfAborted();
    const fromByte = this.requested;
    if (options.upToBytes !== undefined) this.requested = options.upToBytes;
    const cancel = () => this.dispose();
    options.signal?.addEventListener('abort', cancel, { once: true });
    try {
      const reply = await this.thread.request({ id: this.id, op: 'file', path: filePath, fromByte, upToBytes: options.upToBytes });
      if (options.upToBytes === undefined) this.requested = fromByte + (reply.bytes ?? 0);
      return reply.bytes ?? 0;
    } catch (error) {
      options.signal?.throwIfAborted();
      throw error;
    } finally {
      options.signal?.removeEventListener('abort', cancel);
    }
  }

  async digest(): Promise<Digests> {
    const reply = await this.thread.request({ id: this.id, op: 'digest' });
    if (!reply.digests) throw new Error('the hashing thread sent no digest');
    return reply.digests;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.thread.request({ id: this.id, op: 'cancel' }).catch(() => undefined);
  }
}

/** Each call waits for the ones before it, so that bytes are hashed in the order they were asked for. */
class InlineHasher implements FirmwareHasher {
  readonly readsFiles = false;
  private readonly hashes;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(algorithms: HashAlgorithm[]) {
    this.hashes = createRunningHashes(algorithms);
  }

  update(bytes: Buffer): Promise<void> {
    return this.next(async () => this.hashes.update(bytes));
  }

  updateFromFile(filePath: string, options: { upToBytes?: number; signal?: AbortSignal } = {}): Promise<number> {
    return this.next(() => updateHashesFromFile(this.hashes, filePath, { ...options, fromByte: this.hashes.bytes }));
  }

  digest(): Promise<Digests> {
    return this.next(async () => this.hashes.digest());
  }

  dispose(): void {}

  private next<T>(step: () => Promise<T>): Promise<T> {
    const result = this.queue.then(step);
    this.queue = result.catch(() => undefined);
    return result;
  }
}

export function createFirmwareHasher(algorithms: HashAlgorithm[], mode: HashingMode = 'worker'): FirmwareHasher {
  const shared = mode === 'worker' ? sharedThread() : undefined;
  if (shared) {
    try {
      return new ThreadHasher(shared, algorithms);
    } catch {
      // No thread here (a resource limit, say): the hashes run inline from now on.
      threadUnavailable = true;
    }
  }
  return new InlineHasher(algorithms);
}

/** Hashes a file (or its first upToBytes) with the algorithms asked for, off the main thread. */
export async function hashFirmwareFile(
  filePath: string,
  options: { algorithms: HashAlgorithm[]; upToBytes?: number; signal?: AbortSignal; mode?: HashingMode },
): Promise<Digests> {
  const hasher = createFirmwareHasher(options.algorithms, options.mode);
  try {
    await hasher.updateFromFile(filePath, options);
    return await hasher.digest();
  } catch (error) {
    hasher.dispose();
    throw error;
  }
}
