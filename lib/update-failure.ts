/**
 * Why an update ends in `fail`: the result_code the cloud is told and a short, true reason for its
 * result_msg. Every step of an update throws this for a failure the cloud must hear of; the update
 * session is the one place that reports it.
 */
import { OtaResultCode } from './ota-messages';

export class UpdateFailure extends Error {
  constructor(
    readonly resultCode: number,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(reason, options);
    this.name = 'UpdateFailure';
  }
}

/** A file-system error as a short reason with no local path in it, e.g. "read-only file system (EROFS)". */
export function describeStorageError(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return `disk full (${code})`;
    case 'EROFS':
      return 'read-only file system (EROFS)';
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${code})`;
    case 'ENOENT':
      return 'no such file or folder (ENOENT)';
    case 'EISDIR':
      return 'a folder is in the way of the file (EISDIR)';
    case 'ENOTDIR':
      return 'a file is in the way of a folder (ENOTDIR)';
    case 'EIO':
      return 'input/output error (EIO)';
    default: {
      if (typeof code === 'string') return `file system error (${code})`;
      const message = error instanceof Error ? error.message : String(error);
      // Node's messages name the path (", open '/home/…'"): the cloud must not see local paths.
      return message.replace(/'[^']*'/g, "'…'").slice(0, 120);
    }
  }
}

/** A storage failure of the device itself (result code -5): the firmware could not be kept or recorded. */
export function storageFailure(what: string, error: unknown): UpdateFailure {
  return new UpdateFailure(OtaResultCode.upgradeFailed, `${what}: ${describeStorageError(error)}`, { cause: error });
}
