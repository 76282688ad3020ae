import { printable } from './printable-text';

/** A firmware version as IoT Hub accepts it: 1-32 characters of `[A-Za-z0-9._-]`. */
export const FIRMWARE_VERSION_PATTERN = /^[A-Za-z0-9._-]{1,32}$/;

/** A string known to be a valid firmware version: checked once, where it came in, and trusted after. */
export type FirmwareVersion = string & { readonly __brand: 'FirmwareVersion' };

export function isValidFirmwareVersion(value: unknown): value is FirmwareVersion {
  return typeof value === 'string' && FIRMWARE_VERSION_PATTERN.test(value);
}

/** Says why `value` is not a valid version, or returns undefined when it is. */
export function describeInvalidFirmwareVersion(value: unknown): string | undefined {
  if (typeof value !== 'string') return `version must be a string, got ${typeof value}`;
  if (value.length === 0) return 'version is empty';
  if (value.length > 32) return `version "${printable(value, 40)}" is longer than 32 characters`;
  if (!FIRMWARE_VERSION_PATTERN.test(value)) {
    return `version "${printable(value, 40)}" has characters outside [A-Za-z0-9._-]`;
  }
  return undefined;
}

/**
 * Orders two versions by their dotted numeric parts ("1.10.0" > "1.9.3"); parts that are not
 * numbers compare as text. Returns a negative number, zero or a positive number.
 */
export function compareFirmwareVersions(a: string, b: string): number {
  const left = a.split(/[.\-_]/);
  const right = b.split(/[.\-_]/);
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const x = left[i] ?? '0';
    const y = right[i] ?? '0';
    const xNumber = /^\d+$/.test(x) ? Number(x) : NaN;
    const yNumber = /^\d+$/.test(y) ? Number(y) : NaN;
    if (!Number.isNaN(xNumber) && !Number.isNaN(yNumber)) {
      if (xNumber !== yNumber) return xNumber - yNumber;
    } else if (x !== y) {
      return x < y ? -1 : 1;
    }
  }
  return 0;
}
