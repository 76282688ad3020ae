/**
 * What a device config node (tencent-iot-device or tencent-iot-subdevice) does for the flow nodes
 * that use it: register and deregister them with its device, push its status to all of them, and
 * close its device when it closes. The config node only says what its status is.
 */
import type { RuntimeNode, NodeStatus, TencentIotDeviceNode } from './node-red-runtime';

export interface DeviceUsers {
  /** Shows the config node's current status on every flow node of the device. */
  pushAll(): void;
}

export function serveDeviceUsers(node: TencentIotDeviceNode, statusOf: () => NodeStatus): DeviceUsers {
  const users = new Map<string, RuntimeNode>();
  const pushAll = () => {
    const status = statusOf();
    for (const user of users.values()) user.status(status);
  };
  node.showStatus = (user) => user.status(statusOf());
  node.register = (user) => {
    users.set(user.id, user);
    user.status(statusOf());
    node.device?.register(user.id);
  };
  node.deregister = async (user) => {
    users.delete(user.id);
    await node.device?.deregister(user.id);
  };
  node.on('close', (_removed, done) => {
    users.clear();
    const device = node.device;
    if (!device) return done();
    device.close().then(done, done);
  });
  return { pushAll };
}
