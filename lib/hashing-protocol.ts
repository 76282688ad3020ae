/** The messages between firmware-hasher.ts and its hashing thread (hashing-worker.ts). */
import type { Digests, HashAlgorithm } from './firmware-digest';

export type HashingRequest =
  | { seq: number; id: number; op: 'open'; algorithms: HashAlgorithm[] }
  /** A transferred ArrayBuffer is hashed in place and transferred back in the reply; a Uint8Array arrives as a copy. */
  | { seq: number; id: number; op: 'update'; buffer: ArrayBuffer | Uint8Array; offset: number; length: number }
  | { seq: number; id: number; op: 'file'; path: string; upToBytes?: number }
  | { seq: number; id: number; op: 'digest' }
  | { seq: number; id: number; op: 'cancel' };

export type HashingReply =
  { seq: number; ok: true; bytes?: number; digests?: Digests; buffer?: ArrayBuffer } | { seq: number; ok: false; message: string; code?: string; name?: string };
