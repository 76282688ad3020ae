/**
 * Decides which download percentages are worth reporting (PROTOCOL.md §4 step 2): 0 first, then
 * the floor percent at most about once per interval and only when it changed, and 100 at the end.
 */
export interface ProgressThrottleOptions {
  /** Least time between two reports after the first (default 1000 ms). */
  intervalMs?: number;
  /** Clock in milliseconds (default Date.now); tests pass their own. */
  now?: () => number;
}

export const DEFAULT_PROGRESS_INTERVAL_MS = 1000;

/** The floor of done/total as an integer percent from 0 to 100. */
export function percentOf(done: number, total: number): number {
  if (total <= 0) return done > 0 ? 100 : 0;
  return Math.max(0, Math.min(100, Math.floor((done * 100) / total)));
}

export class ProgressThrottle {
  private readonly intervalMs: number;
  private readonly now: () => number;
  private lastPercent: number | undefined;
  private lastReportedAt = 0;

  constructor(options: ProgressThrottleOptions = {}) {
    this.intervalMs = options.intervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
    this.now = options.now ?? Date.now;
  }

  /** The percent last returned, if any. */
  get reported(): number | undefined {
    return this.lastPercent;
  }

  /**
   * The percent to report now for `done` of `total` bytes, or undefined when it is too soon or
   * unchanged. The first call always answers 0, whatever the bytes, as the cloud expects.
   */
  next(done: number, total: number): number | undefined {
    const now = this.now();
    if (this.lastPercent === undefined) return this.report(0, now);
    const percent = percentOf(done, total);
    if (percent === this.lastPercent || now - this.lastReportedAt < this.intervalMs) return undefined;
    return this.report(percent, now);
  }

  /** 100, unless it was the last percent reported already. */
  finish(): number | undefined {
    if (this.lastPercent === 100) return undefined;
    return this.report(100, this.now());
  }

  private report(percent: number, now: number): number {
    this.lastPercent = percent;
    this.lastReportedAt = now;
    return percent;
  }
}
