/**
 * How many firmware downloads run at once over one connection: a gateway updating the devices
 * behind it downloads for at most `limit` of them side by side; the others wait their turn.
 */
export class DownloadSlots {
  private running = 0;
  private readonly waiting: { resolve: () => void; reject: (error: unknown) => void; signal?: AbortSignal; onAbort: () => void }[] = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new Error('the download limit must be a whole number of at least 1');
  }

  /** Whether a download asked for now would have to wait. */
  get full(): boolean {
    return this.running >= this.limit;
  }

  /** Resolves with the function that gives the slot back, once one is free; rejects when the signal aborts first. */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.running < this.limit) {
      this.running += 1;
      return this.releaser();
    }
    await new Promise<void>((resolve, reject) => {
      const entry = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const index = this.waiting.indexOf(entry);
          if (index >= 0) this.waiting.splice(index, 1);
          reject(signal?.reason);
        },
      };
      signal?.addEventListener('abort', entry.onAbort, { once: true });
      this.waiting.push(entry);
    });
    return this.releaser();
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) {
        // The slot passes straight to the next in line.
        next.signal?.removeEventListener('abort', next.onAbort);
        next.resolve();
      } else {
        this.running -= 1;
      }
    };
  }
}
