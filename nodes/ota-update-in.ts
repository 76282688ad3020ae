/**
 * Flow node `ota-update-in`: emits each valid update_firmware the cloud pushes to the device, once.
 * Malformed commands, the version already running and (optionally) downgrades are answered to the
 * cloud instead. The decisions are lib/update-command-listener.ts; this file wires them to Node-RED.
 */
import { DEFAULT_MAX_FIRMWARE_SIZE } from '../lib/ota-messages';
import { UpdateCommandListener, updateCommandFields, type UpdateCommandOutcome } from '../lib/update-command-listener';
import { attachToDevice } from './common/device-user';
import type { NodeDefinition, NodeRedRuntime, RuntimeNode } from './common/node-red-runtime';
import { statusText } from './common/status-text';

interface OtaUpdateInDefinition extends NodeDefinition {
  device?: string;
  /** 'subdevice' takes the sub-device config node instead of the device. */
  target?: string;
  subdevice?: string;
  ignoreSameVersion?: boolean;
  refuseDowngrade?: boolean;
  /** Largest firmware accepted, in MiB. */
  maxFileSize?: number | string;
}

const MIB = 1024 * 1024;

export = function registerOtaUpdateIn(RED: NodeRedRuntime): void {
  function OtaUpdateIn(this: RuntimeNode, definition: OtaUpdateInDefinition): void {
    RED.nodes.createNode(this, definition);
    const node = this;
    const attached = attachToDevice(RED, node, definition.target === 'subdevice' ? definition.subdevice : definition.device);
    if (!attached) return;
    const { device, status } = attached;
    const maxMiB = Number(definition.maxFileSize);
    const listener = new UpdateCommandListener(device, {
      maxFileSize: Number.isFinite(maxMiB) && maxMiB > 0 ? Math.floor(maxMiB * MIB) : DEFAULT_MAX_FIRMWARE_SIZE,
      ignoreSameVersion: definition.ignoreSameVersion !== false,
      refuseDowngrade: definition.refuseDowngrade === true,
    });

    const show = (outcome: UpdateCommandOutcome, payload: Buffer) => {
      switch (outcome.kind) {
        case 'accepted':
          status.step(outcome.command.version, { fill: 'green', shape: 'dot', text: statusText('ota-update-in.status.update', { version: outcome.command.version }) });
          node.log(RED._('ota-update-in.log.accepted', { version: outcome.command.version, bytes: outcome.command.file_size }));
          node.send({ topic: outcome.command.version, payload: updateCommandFields(outcome.command) });
          return;
        case 'duplicate':
          // The command of the update under way: its step, until that update ends.
          status.step(outcome.command.version, { fill: 'grey', shape: 'ring', text: statusText('ota-update-in.status.duplicate', { version: outcome.command.version }) });
          node.log(RED._('ota-update-in.log.duplicate', { version: outcome.command.version }));
          return;
        case 'same-version':
          status.other({ fill: 'grey', shape: 'dot', text: statusText('ota-update-in.status.same-version', { version: outcome.command.version }) });
          node.log(RED._('ota-update-in.log.same-version', { version: outcome.command.version }));
          return;
        case 'downgrade':
          status.other({ fill: 'yellow', shape: 'dot', text: statusText('ota-update-in.status.downgrade') });
          node.warn(RED._('ota-update-in.errors.downgrade', { reason: outcome.reason }));
          return;
        case 'invalid':
          status.other({ fill: 'red', shape: 'ring', text: statusText('ota-update-in.status.invalid', { field: outcome.field }) });
          // With the command as received, so that a Catch node can see what came.
          node.error(RED._('ota-update-in.errors.invalid', { field: outcome.field, reason: outcome.reason }), {
            topic: outcome.version ?? '',
            payload: payload.toString('utf8'),
            field: outcome.field,
            reason: outcome.reason,
          });
          return;
        case 'no-running-version':
          status.other({ fill: 'red', shape: 'ring', text: statusText('ota-update-in.status.no-running-version') });
          node.error(RED._('ota-update-in.errors.no-running-version', { version: outcome.command.version, reason: outcome.reason }));
          return;
      }
    };

    const onCommand = (payload: Buffer) => {
      listener.handle(payload).then(
        (outcome) => {
          show(outcome, payload);
          if (outcome.answerError) node.error(RED._('ota-update-in.errors.answer-failed', { reason: outcome.answerError.message }));
        },
        (error: Error) => node.error(RED._('ota-update-in.errors.answer-failed', { reason: error.message })),
      );
    };
    device.channel.on('update-command', onCommand);
    node.on('close', (_removed, done) => {
      device.channel.off('update-command', onCommand);
      done();
    });
  }

  RED.nodes.registerType('ota-update-in', OtaUpdateIn);
};
