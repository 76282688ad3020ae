/**
 * What one chaos run does, drawn from its seed: the firmware size and one or more faults, each
 * with the moment it strikes. The same seed always gives the same plan (timing on the machine
 * decides the rest, e.g. which progress report a "37 %" trigger meets first).
 */
import { SeededRandom } from './seeded-random';

const KiB = 1024;
const MiB = 1024 * KiB;

export const FAULT_KINDS = ['cut', 'kill', 'restart', 'readonly', 'slow'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * When a fault strikes during the first update of a run, as the stand-in sees it: `command` right
 * after it published update_firmware (plus a delay), `download` at the first downloading report of
 * at least `percent`, `burning` when the burning report arrives (the flow is in its burn delay).
 */
export type FaultStep = { at: 'command'; delayMs: number } | { at: 'download'; percent: number } | { at: 'burning' };

export type Fault =
  /** Firmware server: the socket is destroyed after closeAfterBytes body bytes, for closeAfterResponses responses. */
  | { kind: 'cut'; closeAfterBytes: number; closeAfterResponses: number }
  /** SIGKILL of the Node-RED child, started again with the same user dir and state folder after downMs. */
  | { kind: 'kill'; step: FaultStep; downMs: number }
  /** The stand-in stopped and started again on the same ports and data dir after downMs. */
  | { kind: 'restart'; step: FaultStep; downMs: number }
  /** The device's state folder made read-only for the Node-RED child until the faults are cleared. */
  | { kind: 'readonly'; step: FaultStep }
  /** Firmware server throttled below the download node's minimum rate for the whole first update. */
  | { kind: 'slow'; bytesPerSecond: number };

export interface RunPlan {
  seed: number;
  firmwareSize: number;
  faults: Fault[];
  /**
   * A throttle (well above the minimum rate) that makes the download last a few seconds, so that a
   * fault waiting for a download percent meets it mid-download; undefined when no fault needs it.
   */
  pacingBytesPerSecond?: number;
}

/** The download node's minimum-rate setting in the chaos flow (KiB/s over seconds). */
export const MIN_SPEED_KIB_PER_SECOND = 32;
export const MIN_SPEED_WINDOW_SECONDS = 3;

function drawStep(random: SeededRandom): FaultStep {
  const at = random.pick(['command', 'download', 'download', 'burning'] as const);
  if (at === 'command') return { at, delayMs: random.int(0, 300) };
  if (at === 'download') return { at, percent: random.int(1, 99) };
  return { at };
}

function drawFault(kind: FaultKind, random: SeededRandom, firmwareSize: number): Fault {
  switch (kind) {
    case 'cut': {
      // Now and then every attempt dies before its first byte: more than the retries allow, a real -1.
      if (random.chance(0.15)) return { kind, closeAfterBytes: 0, closeAfterResponses: random.int(1, 6) };
      return { kind, closeAfterBytes: random.int(1, firmwareSize - 1), closeAfterResponses: random.int(1, 3) };
    }
    case 'kill':
      return { kind, step: drawStep(random), downMs: random.int(0, 2000) };
    case 'restart':
      return { kind, step: drawStep(random), downMs: random.int(0, 1500) };
    case 'readonly':
      return { kind, step: drawStep(random) };
    case 'slow': {
      // Far below the minimum rate, and slow enough that the whole file would take minutes.
      const bytesPerSecond = Math.max(KiB, Math.min(16 * KiB, Math.floor(firmwareSize / 120)));
      return { kind, bytesPerSecond };
    }
  }
}

export function planRun(seed: number, kinds: readonly FaultKind[] = FAULT_KINDS): RunPlan {
  const random = new SeededRandom(seed);
  const firmwareSize = random.int(256 * KiB, 4 * MiB);
  const roll = random.next();
  const count = Math.min(kinds.length, roll < 0.6 ? 1 : roll < 0.9 ? 2 : 3);
  // In the order they are listed in FAULT_KINDS, so that a plan reads the same way every time.
  const chosen = random.sample(kinds, count).sort((a, b) => FAULT_KINDS.indexOf(a) - FAULT_KINDS.indexOf(b));
  const faults = chosen.map((kind) => drawFault(kind, random, firmwareSize));
  if (chosen.includes('slow')) {
    // A slow download takes minutes and never reaches burning within the wait: a fault waiting for
    // a percent waits for one of the first ten, and one waiting for burning strikes at 1-10 % instead.
    for (const fault of faults) {
      if (!('step' in fault)) continue;
      if (fault.step.at === 'download') fault.step.percent = 1 + (fault.step.percent % 10);
      else if (fault.step.at === 'burning') fault.step = { at: 'download', percent: random.int(1, 10) };
    }
  }
  const plan: RunPlan = { seed, firmwareSize, faults };
  const waitsForPercent = faults.some((fault) => 'step' in fault && fault.step.at === 'download');
  const seconds = random.int(3, 8);
  if (waitsForPercent && !faults.some((fault) => fault.kind === 'slow')) {
    plan.pacingBytesPerSecond = Math.max(4 * MIN_SPEED_KIB_PER_SECOND * KiB, Math.ceil(firmwareSize / seconds));
  }
  return plan;
}

/** The run's firmware: random bytes from another stream of the seed than the plan's. */
export function firmwareBytes(plan: RunPlan): Buffer {
  return new SeededRandom(plan.seed ^ 0x5eed5eed).bytes(plan.firmwareSize);
}

export function describeStep(step: FaultStep): string {
  if (step.at === 'command') return `command+${step.delayMs}ms`;
  if (step.at === 'download') return `download>=${step.percent}%`;
  return 'burning';
}

export function describeFault(fault: Fault): string {
  switch (fault.kind) {
    case 'cut':
      return `cut@byte${fault.closeAfterBytes}x${fault.closeAfterResponses}`;
    case 'kill':
      return `kill@${describeStep(fault.step)}(down ${fault.downMs}ms)`;
    case 'restart':
      return `restart@${describeStep(fault.step)}(down ${fault.downMs}ms)`;
    case 'readonly':
      return `readonly@${describeStep(fault.step)}`;
    case 'slow':
      return `slow ${(fault.bytesPerSecond / KiB).toFixed(1)}KiB/s`;
  }
}
