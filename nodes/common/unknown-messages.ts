/** Logs the messages on a device's update topic that are no OTA message, at most once per interval. */
import type { OtaChannel } from '../../lib/ota-channel';
import { printable } from '../../lib/printable-text';
import type { NodeRedRuntime, RuntimeNode } from './node-red-runtime';

const UNKNOWN_MESSAGE_LOG_INTERVAL_MS = 10_000;

export function logUnknownMessages(RED: NodeRedRuntime, node: RuntimeNode, channel: OtaChannel): void {
  let lastLogAt = 0;
  let sinceLog = 0;
  channel.on('unknown-message', (payload, reason) => {
    sinceLog += 1;
    const now = Date.now();
    if (now - lastLogAt < UNKNOWN_MESSAGE_LOG_INTERVAL_MS) return;
    // Each device catalog carries log.unknown-message.
    node.warn(RED._(`${node.type}.log.unknown-message`, { reason, payload: printable(payload.toString('utf8'), 120), count: sinceLog }));
    lastLogAt = now;
    sinceLog = 0;
  });
}
