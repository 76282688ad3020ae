/**
 * A small deterministic random source (SplitMix32 to spread the seed, Mulberry32 after it), so that
 * a chaos run's plan and firmware bytes follow from its seed alone.
 */
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    // SplitMix32 of the seed: neighbouring seeds (5, 6, 7) give unrelated streams.
    let z = (seed + 0x9e3779b9) >>> 0;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    this.state = (z ^ (z >>> 16)) >>> 0;
  }

  /** The next 32 random bits as an unsigned integer. */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A number in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** An integer from min to max, both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(probability: number): boolean {
    return this.next() < probability;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }

  /** `count` different items, in random order. */
  sample<T>(items: readonly T[], count: number): T[] {
    const pool = [...items];
    for (let i = pool.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [pool[i], pool[j]] = [pool[j], pool[i]];
    }
    return pool.slice(0, Math.min(count, pool.length));
  }

  bytes(length: number): Buffer {
    const buffer = Buffer.alloc(length);
    let offset = 0;
    for (; offset + 4 <= length; offset += 4) buffer.writeUInt32LE(this.nextUint32(), offset);
    if (offset < length) {
      const last = this.nextUint32();
      for (let i = 0; offset < length; offset++, i++) buffer[offset] = (last >>> (8 * i)) & 0xff;
    }
    return buffer;
  }
}
