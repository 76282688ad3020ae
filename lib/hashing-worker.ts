/**
 * The hashing thread (firmware-hasher.ts starts it): keeps running hashes by id and feeds them the
 * blocks the downloads hand over (transferred, and transferred back once hashed) or the bytes of a
 * file, one request at a time per id, so that MD5 and SHA-256 never hold up the main thread's sockets.
 */
import { parentPort } from 'worker_threads';
import { createRunningHashes, updateHashesFromFile, type RunningHashes } from './firmware-digest';
import type { HashingReply, HashingRequest } from './hashing-protocol';

interface HashState {
  hashes: RunningHashes;
  /** The requests of this id run one after another. */
  chain: Promise<unknown>;
  cancelled: boolean;
}

const states = new Map<number, HashState>();

function stateOf(id: number): HashState {
  const state = states.get(id);
  if (!state) throw new Error(`no running hashes ${id}`);
  return state;
}

function reply(message: HashingReply): void {
  if (message.ok && message.buffer) parentPort?.postMessage(message, [message.buffer]);
  else parentPort?.postMessage(message);
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
      if (request.buffer instanceof ArrayBuffer) {
        state.hashes.update(Buffer.from(request.buffer, request.offset, request.length));
        return { seq: request.seq, ok: true, bytes: request.length, buffer: request.buffer };
      }
      state.hashes.update(Buffer.from(request.buffer.buffer, request.buffer.byteOffset + request.offset, request.length));
      return { seq: request.seq, ok: true, bytes: request.length };
    }
    case 'file': {
      const bytes = await updateHashesFromFile(state.hashes, request.path, { upToBytes: request.upToBytes, cancelled: () => state.cancelled });
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
    states.set(request.id, { hashes: createRunningHashes(request.algorithms), chain: Promise.resolve(), cancelled: false });
    reply({ seq: request.seq, ok: true });
    return;
  }
  if (request.op === 'cancel') {
    // At once, not after the id's queue: it stops a file being hashed between two reads.
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
  state.chain = state.chain.then(() =>
    state.cancelled
      ? replyError(request.seq, Object.assign(new Error('hashing cancelled'), { name: 'AbortError' }))
      : handle(request).then(reply, (error: unknown) => replyError(request.seq, error)),
  );
});
