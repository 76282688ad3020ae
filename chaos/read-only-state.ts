/**
 * The "state folder read-only" fault, made real.
 *
 * The harness runs as root here, and root ignores permission bits (CAP_DAC_OVERRIDE): a chmod of
 * the state folder changes nothing for a Node-RED that runs as root too. So when the harness is
 * root, the Node-RED child runs as an unprivileged user (nobody, 65534:65534) that owns its user
 * dir and the device's state folder, and the fault takes the write bits off the state folder tree
 * (directories 0555, files 0444). Checked on this machine, for that user, after the chmod:
 *
 *  - creating a file in the folder fails with EACCES, so writeFileAtomic's temp file, and with it
 *    every checkpoint (downloads/FW_<v>.json) and running-version.json, cannot be written;
 *  - rename and unlink in the folder fail with EACCES (removing the firmware after done, say);
 *  - opening an existing file for writing fails with EACCES (a resumed FW_<v>.bin);
 *  - mkdir of a new folder fails with EACCES (downloads/ before the first download); a recursive
 *    mkdir of a folder that exists still succeeds;
 *  - a file descriptor opened before the chmod keeps writing and fsyncing: a download under way
 *    goes on writing its data until it next saves its checkpoint;
 *  - reading works.
 *
 * When the harness is not root, the child runs as the harness's own user and the chmod alone is enough.
 */
import { promises as fs } from 'fs';
import * as path from 'path';

export interface ChildIdentity {
  uid: number;
  gid: number;
}

const NOBODY: ChildIdentity = { uid: 65534, gid: 65534 };

/** Who the Node-RED child runs as: nobody when the harness is root, else undefined (the harness's own user). */
export function nodeRedIdentity(): ChildIdentity | undefined {
  return process.getuid?.() === 0 ? NOBODY : undefined;
}

type EntryKind = 'directory' | 'file' | 'link';

/** Hands a folder tree to the child's user (nothing to do when it runs as the harness's user). */
export async function giveTree(directory: string, identity: ChildIdentity | undefined): Promise<void> {
  if (!identity) return;
  // lchown: a symbolic link (the package link in the user dir) changes, never what it points to.
  await walk(directory, (entry) => fs.lchown(entry, identity.uid, identity.gid));
}

/** Takes the write bits off the tree: directories 0555, files 0444 (links are left alone). */
export async function makeReadOnly(directory: string): Promise<void> {
  await walk(directory, async (entry, kind) => {
    if (kind !== 'link') await fs.chmod(entry, kind === 'directory' ? 0o555 : 0o444);
  });
}

/** Gives the write bits back: directories 0755, files 0644. */
export async function makeWritable(directory: string): Promise<void> {
  await walk(directory, async (entry, kind) => {
    if (kind !== 'link') await fs.chmod(entry, kind === 'directory' ? 0o755 : 0o644);
  });
}

/** Visits the folder and everything under it, parents first, never following a symbolic link. */
async function walk(entry: string, visit: (entry: string, kind: EntryKind) => Promise<void>): Promise<void> {
  const stat = await fs.lstat(entry).catch(() => undefined);
  if (!stat) return;
  if (stat.isSymbolicLink() || !stat.isDirectory()) {
    // A file may go away between readdir and here (the download's temp files): that is fine.
    await visit(entry, stat.isSymbolicLink() ? 'link' : 'file').catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
    return;
  }
  await visit(entry, 'directory');
  const names = await fs.readdir(entry).catch(() => [] as string[]);
  for (const name of names) await walk(path.join(entry, name), visit);
}
