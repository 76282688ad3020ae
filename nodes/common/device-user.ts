/** How a flow node attaches to its tencent-iot-device config node, and lets go of it on close. */
import type { OtaDevice } from '../../lib/ota-device';
import type { NodeRedRuntime, RuntimeNode, TencentIotDeviceNode } from './node-red-runtime';

/**
 * Registers the node with its device's shared connection. Returns the device, or undefined (with a
 * red status and an error logged) when no valid device is configured.
 */
export function attachToDevice(RED: NodeRedRuntime, node: RuntimeNode, configNodeId: unknown): OtaDevice | undefined {
  const configNode = typeof configNodeId === 'string' ? (RED.nodes.getNode(configNodeId) as TencentIotDeviceNode | null) : null;
  if (!configNode) {
    // Every flow node's message catalog carries <type>.errors.no-device.
    const text = RED._(`${node.type}.errors.no-device`);
    node.status({ fill: 'red', shape: 'ring', text });
    node.error(text);
    return undefined;
  }
  configNode.register(node);
  // A new update: whatever the node showed of the previous one no longer applies.
  const clearStatus = () => configNode.showStatus(node);
  configNode.device?.session.on('started', clearStatus);
  node.on('close', (_removed, done) => {
    configNode.device?.session.off('started', clearStatus);
    configNode.deregister(node).then(done, done);
  });
  if (!configNode.device) return undefined;
  return configNode.device;
}
