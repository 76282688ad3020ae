/**
 * Config node `tencent-iot-device`: one IoT Hub device's credentials and its one MQTT connection,
 * shared by every flow node that names it. Flow nodes register and deregister; the connection
 * opens with the first and closes with the last, and its status is pushed to all of them.
 */
import { OtaDevice } from '../lib/ota-device';
import type { ConnectionStatus } from '../lib/device-connection';
import { connectionNodeStatus } from './common/connection-status';
import { logUnknownMessages } from './common/unknown-messages';
import { readDeviceConfig, type DeviceConfigProperties, type DeviceCredentials } from './common/device-config';
import type { NodeDefinition, NodeRedRuntime, RuntimeNode, TencentIotDeviceNode } from './common/node-red-runtime';

export = function registerTencentIotDevice(RED: NodeRedRuntime): void {
  function TencentIotDevice(this: TencentIotDeviceNode, definition: NodeDefinition): void {
    RED.nodes.createNode(this, definition);
    const node = this;
    const users = new Map<string, RuntimeNode>();
    let status: ConnectionStatus = { state: 'idle' };

    const pushStatus = (user: RuntimeNode) => {
      if (node.configurationError) {
        user.status({ fill: 'red', shape: 'ring', text: RED._('tencent-iot-device.status.invalid-config', { reason: node.configurationError }) });
      } else {
        user.status(connectionNodeStatus(RED, status));
      }
    };

    try {
      const options = readDeviceConfig(definition as DeviceConfigProperties, (node.credentials ?? {}) as DeviceCredentials, RED.settings.userDir);
      node.device = new OtaDevice(options);
      node.device.connection.on('status', (next) => {
        status = next;
        if (next.state === 'disconnected' && next.reason) node.log(RED._('tencent-iot-device.log.disconnected', { reason: next.reason }));
        if (next.state === 'connected') node.log(RED._('tencent-iot-device.log.connected', { url: node.device?.connection.endpoint.url ?? '' }));
        for (const user of users.values()) pushStatus(user);
      });
      node.device.connection.on('warning', (text) => node.warn(text));
      node.device.session.on('warning', (text) => node.warn(text));
      logUnknownMessages(RED, node, node.device.channel);
    } catch (error) {
      node.configurationError = (error as Error).message;
      node.error(RED._('tencent-iot-device.errors.invalid-config', { reason: node.configurationError }));
    }

    node.showStatus = pushStatus;

    node.register = (user) => {
      users.set(user.id, user);
      pushStatus(user);
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
  }

  RED.nodes.registerType('tencent-iot-device', TencentIotDevice, {
    credentials: {
      deviceSecret: { type: 'password' },
      caCert: { type: 'text' },
      clientCert: { type: 'text' },
      clientKey: { type: 'password' },
    },
  });
};
