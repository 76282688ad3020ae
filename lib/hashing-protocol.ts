/** The messages between firmware-hasher.ts and its hashing thread (hashing-worker.ts). */
import type { Digests, HashAlgorithm } from './firmware-digest';

export type HashingRequest =
  | { seq: number; id: number; op: 'open'; algorithms: HashAlgorithm[] }
  | { seq: number; id: number; op: 'update'; bytes: Uint8Array }
  /** The bytes of the file from fromByte (which must be where the hashes are) up to upToBytes, or its end. */
  | { seq: number; id: number; op: 'file'; path: string; fromByte: number; upToBytes?: number }
  | { seq: number; id: number; op: 'digest' }
  | { seq: number; id: number; op: 'cancel' };

export type HashingReply = { seq: number; ok: true; bytes?: number; digests?: Digests } | { seq: number; ok: false; message: string; code?: string; name?: string };
