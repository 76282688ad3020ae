/** Reading the loosely typed properties of a flow message. */

/** `value[name]` when value is an object, else undefined. */
export function messageField(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[name] : undefined;
}

/** The trimmed string, or undefined for anything that is not a non-blank string. */
export function nonBlankText(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

/** The target version a message of an update names: msg.firmware.version, else msg.topic, else msg.payload.version. */
export function targetVersionOf(message: { topic?: unknown; payload?: unknown; firmware?: unknown }): string | undefined {
  return nonBlankText(messageField(message.firmware, 'version')) ?? nonBlankText(message.topic) ?? nonBlankText(messageField(message.payload, 'version'));
}
