/**
 * Config node `tencent-iot-device`: one IoT Hub device's credentials and its one MQTT connection,
 * shared by every flow node that names it. Flow nodes register and deregister; the connection
 * opens with the first and closes with the last, and its status is pushed to all of them.
 */
import { OtaDevice } from '../lib/ota-device';
import type { ConnectionStatus } from '../lib/device-connection';
import { serveConnectionTest } from './common/connection-test';
import { connectionNodeStatus } from './common/connection-status';
import { serveDeviceUsers } from './common/device-users';
import { statusText } from './common/status-text';
import { logUnknownMessages } from './common/unknown-messages';
import { readDeviceConfig, type DeviceConfigProperties, type DeviceCredentials } from './common/device-config';
import type { NodeDefinition, NodeRedRuntime, TencentIotDeviceNode } from './common/node-red-runtime';

export = function registerTencentIotDevice(RED: NodeRedRuntime): void {
  function TencentIotDevice(this: TencentIotDeviceNode, definition: NodeDefinition): void {
    RED.nodes.createNode(this, definition);
    const node = this;
    let status: ConnectionStatus = { state: 'idle' };
    const users = serveDeviceUsers(node, () =>
      node.configurationError ? { fill: 'red', shape: 'ring', text: statusText('tencent-iot-device.status.invalid-config') } : connectionNodeStatus(status),
    );

    try {
      const options = readDeviceConfig(definition as DeviceConfigProperties, (node.credentials ?? {}) as DeviceCredentials, RED.settings.userDir);
      node.device = new OtaDevice(options);
      node.device.connection.on('status', (next) => {
        status = next;
        if (next.state === 'disconnected' && next.reason) node.log(RED._('tencent-iot-device.log.disconnected', { reason: next.reason }));
        if (next.state === 'connected') node.log(RED._('tencent-iot-device.log.connected', { url: node.device?.connection.endpoint.url ?? '' }));
        users.pushAll();
      });
      node.device.connection.on('warning', (text) => node.warn(text));
      node.device.session.on('warning', (text) => node.warn(text));
      logUnknownMessages(RED, node, node.device.channel);
    } catch (error) {
      node.configurationError = (error as Error).message;
      node.error(RED._('tencent-iot-device.errors.invalid-config', { reason: node.configurationError }));
    }
  }

  RED.nodes.registerType('tencent-iot-device', TencentIotDevice, {
    credentials: {
      deviceSecret: { type: 'password' },
      caCert: { type: 'text' },
      clientCert: { type: 'text' },
      clientKey: { type: 'password' },
    },
  });
  serveConnectionTest(RED);
};
