/** How a flow node attaches to its device (or sub-device) config node, and lets go of it on close. */
import type { OtaDevice } from '../../lib/ota-device';
import type { UpdateView } from '../../lib/update-session';
import type { NodeRedRuntime, RuntimeNode, TencentIotDeviceNode } from './node-red-runtime';
import { statusText } from './status-text';
import { UpdateStatusDisplay } from './update-status';

export interface AttachedDevice {
  device: OtaDevice;
  /** What the node shows of the device's update: every status of the node goes through it. */
  status: UpdateStatusDisplay;
}

/**
 * Registers the node with its device's shared connection and has its status follow the device's
 * updates. Returns undefined (with a red status and an error logged) when no valid device is configured.
 */
export function attachToDevice(RED: NodeRedRuntime, node: RuntimeNode, configNodeId: unknown): AttachedDevice | undefined {
  const configNode = typeof configNodeId === 'string' ? (RED.nodes.getNode(configNodeId) as TencentIotDeviceNode | null) : null;
  if (!configNode) {
    node.status({ fill: 'red', shape: 'ring', text: statusText('tencent-iot-device.status.no-device') });
    // Every flow node's message catalog carries <type>.errors.no-device.
    node.error(RED._(`${node.type}.errors.no-device`));
    return undefined;
  }
  configNode.register(node);
  const device = configNode.device;
  if (!device) {
    node.on('close', (_removed, done) => void configNode.deregister(node).then(done, done));
    return undefined;
  }
  const status = new UpdateStatusDisplay(node, () => configNode.showStatus(node));
  const started = () => status.updateStarted();
  const ended = (view: UpdateView) => status.updateEnded(view);
  device.session.on('started', started);
  device.session.on('ended', ended);
  node.on('close', (_removed, done) => {
    device.session.off('started', started);
    device.session.off('ended', ended);
    configNode.deregister(node).then(done, done);
  });
  return { device, status };
}
