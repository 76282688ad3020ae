/**
 * The hashing thread (firmware-hasher.ts starts it): keeps running hashes by id and feeds them the
 * bytes of a file (a download's, as its writes complete) or bytes sent along, one request at a time
 * per id, so that MD5 and SHA-256 never hold up the main thread's sockets.
 */
import { parentPort } from 'worker_threads';
import { createRunningHashes, HASH_READ_SIZE, updateHashesFromFile, type RunningHashes } from './firmware-digest';
import type { HashingReply, HashingRequest } from './hashing-protocol';

interface HashState {
  hashes: RunningHashes;
  cancelled: boolean;
}

const states = new Map<number, HashState>();
/** Requests run one at a time (the thread hashes one thing at a time anyway), so one read buffer serves them all. */
let queue: Promise<unknown> = Promise.resolve();
const readBuffer = Buffer.allocUnsafe(HASH_READ_SIZE);

function stateOf(id: number): HashState {
  const state = states.get(id);
  if (!state) throw new Error(`no running hashes ${id}`);
  return state;
}

function reply(message: HashingReply): void {
  parentPort?.postMessage(message);
}

function replyError(seq: number, error: unknown): void {
  const failure = error as { message?: unknown; code?: unknown; name?: unknown };
  reply({
    seq,
    ok: false,
    message: typeof failure?.message === 'string' ? failure.message : String(error),
    code: typeof failure?.code === 'string' ? failure.code : undefined,
    name: typeof failure?.name === 'string' ? failure.name : undefined,
  });
}

async function handle(request: HashingRequest): Promise<HashingReply> {
  const state = stateOf(request.id);
  switch (request.op) {
    case 'update': {
      state.hashes.update(Buffer.from(request.bytes.buffer, request.bytes.byteOffset, request.bytes.byteLength));
      return { seq: request.seq, ok: true, bytes: request.bytes.byteLength };
    }
    case 'file': {
      if (request.fromByte !== state.hashes.bytes) throw new Error(`hashing from byte ${request.fromByte}, but ${state.hashes.bytes} bytes are hashed`);
      const bytes = await updateHashesFromFile(state.hashes, request.path, {
        fromByte: request.fromByte,
        upToBytes: request.upToBytes,
        cancelled: () => state.cancelled,
        buffer: readBuffer,
      });
      return { seq: request.seq, ok: true, bytes };
    }
    case 'digest': {
      states.delete(request.id);
      return { seq: request.seq, ok: true, digests: state.hashes.digest() };
    }
    default:
      throw new Error('unknown request');
  }
}

parentPort?.on('message', (request: HashingRequest) => {
  if (request.op === 'open') {
    states.set(request.id, { hashes: createRunningHashes(request.algorithms), cancelled: false });
    reply({ seq: request.seq, ok: true });
    return;
  }
  if (request.op === 'cancel') {
    // At once, not after the queue: it stops a file being hashed between two reads.
    const state = states.get(request.id);
    states.delete(request.id);
    if (state) state.cancelled = true;
    reply({ seq: request.seq, ok: true });
    return;
  }
  const state = states.get(request.id);
  if (!state) {
    replyError(request.seq, new Error(`no running hashes ${request.id}`));
    return;
  }
  queue = queue.then(() =>
    state.cancelled
      ? replyError(request.seq, Object.assign(new Error('hashing cancelled'), { name: 'AbortError' }))
      : handle(request).then(reply, (error: unknown) => replyError(request.seq, error)),
  );
});
