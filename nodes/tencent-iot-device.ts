/**
 * Config node `tencent-iot-device`: one IoT Hub device's credentials and its one MQTT connection,
 * shared by every flow node that names it. Flow nodes register and deregister; the connection
 * opens with the first and closes with the last, and its status is pushed to all of them.
 */
import { OtaDevice } from '../lib/ota-device';
import type { ConnectionStatus } from '../lib/device-connection';
import { printable } from '../lib/printable-text';
import { connectionNodeStatus } from './common/connection-status';
import { readDeviceConfig, type DeviceConfigProperties, type DeviceCredentials } from './common/device-config';
import type { NodeDefinition, NodeRedRuntime, RuntimeNode, TencentIotDeviceNode } from './common/node-red-runtime';

const UNKNOWN_MESSAGE_LOG_INTERVAL_MS = 10_000;

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
      // A message on the update topic that is no OTA message is logged, at most once per interval.
      let lastUnknownLogAt = 0;
      let unknownSinceLog = 0;
      node.device.channel.on('unknown-message', (payload, reason) => {
        unknownSinceLog += 1;
        const now = Date.now();
        if (now - lastUnknownLogAt < UNKNOWN_MESSAGE_LOG_INTERVAL_MS) return;
        node.warn(RED._('tencent-iot-device.log.unknown-message', { reason, payload: printable(payload.toString('utf8'), 120), count: unknownSinceLog }));
        lastUnknownLogAt = now;
        unknownSinceLog = 0;
      });
    } catch (error) {
      node.configurationError = (error as Error).message;
      node.error(RED._('tencent-iot-device.errors.invalid-config', { reason: node.configurationError }));
    }

    node.showStatus = pushStatus;

    node.register = (user) => {
      users.set(user.id, user);
      pushStatus(user);
      node.device?.connection.register(user.id);
    };

    node.deregister = async (user) => {
      users.delete(user.id);
      await node.device?.connection.deregister(user.id);
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
