/**
 * Flow node `ota-gateway`: the gateway's operations for the devices behind it (bind, unbind,
 * online, offline, list), with the cloud's answer on its output, and what the cloud sends unasked
 * (`change`: bindings changed on the console, `unbind_all`) emitted as messages. The operations
 * are lib/gateway.ts; this file reads the message and shows the answer.
 */
import { describeInvalidDeviceName, describeInvalidProductId } from '../lib/device-info';
import { describeGatewayResult, isBoundResult, type GatewayCloudMessage } from '../lib/gateway-messages';
import { attachToDevice } from './common/device-user';
import type { NodeDefinition, NodeMessage, NodeRedRuntime, RuntimeNode } from './common/node-red-runtime';
import { statusText } from './common/status-text';
import { messageField, nonBlankText } from './common/update-message';

interface OtaGatewayDefinition extends NodeDefinition {
  gateway?: string;
}

const ACTIONS = ['bind', 'unbind', 'online', 'offline', 'list'] as const;
type GatewayAction = (typeof ACTIONS)[number];

/** What the node shows while it asks the cloud, once it answered yes, and when the asking failed: a text of its own per action, so that each language says it its way. */
const ACTION_STATUS: Record<GatewayAction, { asking: () => string; answered: () => string; failed: () => string }> = {
  bind: {
    asking: () => statusText('ota-gateway.status.binding'),
    answered: () => statusText('ota-gateway.status.bind-ok'),
    failed: () => statusText('ota-gateway.status.bind-failed'),
  },
  unbind: {
    asking: () => statusText('ota-gateway.status.unbinding'),
    answered: () => statusText('ota-gateway.status.unbind-ok'),
    failed: () => statusText('ota-gateway.status.unbind-failed'),
  },
  online: {
    asking: () => statusText('ota-gateway.status.going-online'),
    answered: () => statusText('ota-gateway.status.online-ok'),
    failed: () => statusText('ota-gateway.status.online-failed'),
  },
  offline: {
    asking: () => statusText('ota-gateway.status.going-offline'),
    answered: () => statusText('ota-gateway.status.offline-ok'),
    failed: () => statusText('ota-gateway.status.offline-failed'),
  },
  list: {
    asking: () => statusText('ota-gateway.status.listing'),
    answered: () => statusText('ota-gateway.status.list-ok'),
    failed: () => statusText('ota-gateway.status.list-failed'),
  },
};

export = function registerOtaGateway(RED: NodeRedRuntime): void {
  function OtaGateway(this: RuntimeNode, definition: OtaGatewayDefinition): void {
    RED.nodes.createNode(this, definition);
    const node = this;
    const attached = attachToDevice(RED, node, definition.gateway);
    if (!attached) return;
    // The gateway's answers belong to no update of the gateway's own: updates leave them shown.
    const { device, status } = attached;
    if (device.link) {
      status.other({ fill: 'red', shape: 'ring', text: statusText('ota-gateway.status.not-a-gateway') });
      node.error(RED._('ota-gateway.errors.not-a-gateway'));
      return;
    }
    const gateway = device.gateway;

    const onCloudMessage = (message: GatewayCloudMessage) => {
      if (message.type !== 'change' && message.type !== 'unbind_all') return;
      const payload =
        message.type === 'change'
          ? { type: 'change', status: message.status, devices: message.devices.map((entry) => ({ productId: entry.productId, deviceName: entry.deviceName })) }
          : { type: 'unbind_all' };
      const text =
        message.type === 'change'
          ? message.status === 1
            ? statusText('ota-gateway.status.bound')
            : statusText('ota-gateway.status.unbound')
          : statusText('ota-gateway.status.unbind-all');
      status.other({ fill: 'blue', shape: 'dot', text });
      const devices = message.type === 'change' ? message.devices.map((entry) => `${entry.productId}/${entry.deviceName}`).join(', ') : '';
      node.log(RED._(`ota-gateway.log.${message.type === 'change' ? (message.status === 1 ? 'bound' : 'unbound') : 'unbind-all'}`, { devices }));
      node.send({ topic: message.type, payload });
    };
    gateway.on('cloud-message', onCloudMessage);
    node.on('close', (_removed, done) => {
      gateway.off('cloud-message', onCloudMessage);
      done();
    });

    node.on('input', (message: NodeMessage, send, done) => {
      const payload = message.payload;
      const action = nonBlankText(messageField(payload, 'action')) as GatewayAction | undefined;
      if (!action || !(ACTIONS as readonly string[]).includes(action)) {
        status.other({ fill: 'red', shape: 'ring', text: statusText('ota-gateway.status.invalid') });
        done(new Error(RED._('ota-gateway.errors.invalid-action', { actions: ACTIONS.join(', ') })));
        return;
      }
      const run = async (): Promise<Record<string, unknown>> => {
        if (action === 'list') return { action, devices: await gateway.describeSubDevices() };
        const productId = nonBlankText(messageField(payload, 'productId')) ?? '';
        const deviceName = nonBlankText(messageField(payload, 'deviceName')) ?? '';
        const problem = describeInvalidProductId(productId) ?? describeInvalidDeviceName(deviceName);
        if (problem) throw new Error(problem);
        const subDevice = { productId, deviceName };
        let result: number;
        if (action === 'bind') {
          const secret = nonBlankText(messageField(payload, 'deviceSecret'));
          if (!secret) throw new Error(RED._('ota-gateway.errors.no-secret'));
          result = await gateway.bind(subDevice, secret);
        } else {
          result = (await gateway.operate(action, [subDevice]))[0]?.result ?? -2;
        }
        return { action, productId, deviceName, result, description: describeGatewayResult(result) };
      };
      status.other({ fill: 'blue', shape: 'ring', text: ACTION_STATUS[action].asking() });
      run().then(
        (answer) => {
          const result = typeof answer.result === 'number' ? answer.result : 0;
          const ok = result === 0 || (action === 'bind' && isBoundResult(result));
          const answered = ok ? ACTION_STATUS[action].answered() : statusText('ota-gateway.status.refused', { code: result });
          status.other({ fill: ok ? 'green' : 'red', shape: 'dot', text: answered });
          message.payload = answer;
          send(message);
          if (ok) done();
          else done(new Error(RED._('ota-gateway.errors.refused', { action, description: describeGatewayResult(result) })));
        },
        (error: Error) => {
          status.other({ fill: 'red', shape: 'ring', text: ACTION_STATUS[action].failed() });
          done(new Error(RED._('ota-gateway.errors.failed', { action, reason: error.message })));
        },
      );
    });
  }

  RED.nodes.registerType('ota-gateway', OtaGateway);
};
