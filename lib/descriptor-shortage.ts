/**
 * Out of file descriptors (EMFILE for the process, ENFILE for the system): a temporary condition
 * on a gateway that serves many devices at once, not a reason to fail an update. Such an operation
 * is retried with backoff, and every retry is said (it used to pass silently).
 */
import { setTimeout as sleep } from 'timers/promises';

const SHORTAGE_CODES = new Set(['EMFILE', 'ENFILE']);

/** Retries before the shortage is taken as lasting (about 5 minutes of backoff in all). */
export const DESCRIPTOR_SHORTAGE_RETRIES = 12;
const FIRST_DELAY_MS = 500;
const LONGEST_DELAY_MS = 30_000;

/** The EMFILE or ENFILE of the error or of one of its causes, else undefined. */
export function descriptorShortageCode(error: unknown): string | undefined {
  for (let current = error, depth = 0; current && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && SHORTAGE_CODES.has(code)) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Thrown where an operation hit a descriptor shortage and the caller retries the whole step. */
export class DescriptorShortageError extends Error {
  constructor(
    readonly code: string,
    readonly during: string,
    options?: { cause?: unknown },
  ) {
    super(`out of file descriptors (${code}) ${during}`, options);
    this.name = 'DescriptorShortageError';
  }
}

/** The delay before retry `attempt` (1 first): backoff doubling from 0.5 s to 30 s, with equal jitter. */
export function shortageRetryDelayMs(attempt: number, random: () => number = Math.random): number {
  const backoff = Math.min(LONGEST_DELAY_MS, FIRST_DELAY_MS * 2 ** (attempt - 1));
  return Math.round(backoff / 2 + (backoff / 2) * random());
}

export interface ShortageRetryOptions {
  signal?: AbortSignal;
  random?: () => number;
  retries?: number;
  /** Told before each wait. */
  onRetry?: (retry: { attempt: number; code: string; delayMs: number }) => void;
}

/** Runs the operation, again after a wait whenever it fails for want of file descriptors; other errors pass at once. */
export async function retryDuringDescriptorShortage<T>(operation: () => Promise<T>, options: ShortageRetryOptions = {}): Promise<T> {
  const retries = options.retries ?? DESCRIPTOR_SHORTAGE_RETRIES;
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      const code = descriptorShortageCode(error);
      if (!code || attempt > retries) throw error;
      const delayMs = shortageRetryDelayMs(attempt, options.random);
      options.onRetry?.({ attempt, code, delayMs });
      await sleep(delayMs, undefined, { signal: options.signal });
    }
  }
}
