/**
 * Config node `tencent-iot-subdevice`: a device behind a gateway (the MCU, PLC or sensor a Raspberry
 * Pi speaks for). It has its own identity, update session and state folder, and uses the gateway's
 * one connection: the gateway brings it online when its first flow node starts and offline when the
 * last one stops. Every OTA flow node takes it where it takes a device.
 */
import * as path from 'path';
import { describeInvalidDeviceName, describeInvalidProductId } from '../lib/device-info';
import { OtaDevice } from '../lib/ota-device';
import { connectionNodeStatus } from './common/connection-status';
import { readSignatureConfig, text } from './common/device-config';
import type { NodeDefinition, NodeRedRuntime, NodeStatus, TencentIotDeviceNode } from './common/node-red-runtime';
import { serveDeviceUsers } from './common/device-users';
import { statusText } from './common/status-text';
import { logUnknownMessages } from './common/unknown-messages';

interface SubdeviceDefinition extends NodeDefinition {
  productId?: string;
  deviceName?: string;
  gateway?: string;
  stateDir?: string;
  runningVersion?: string;
  updateTimeout?: number | string;
  firmwareKeys?: unknown;
  requireSignedFirmware?: unknown;
}

/** The sub-device's state folder when none is set: beside its gateway's. */
function defaultSubdeviceStateDir(gatewayStateDir: string, productId: string, deviceName: string): string {
  return path.join(path.dirname(gatewayStateDir), `${productId}-${deviceName}`);
}

export = function registerTencentIotSubdevice(RED: NodeRedRuntime): void {
  function TencentIotSubdevice(this: TencentIotDeviceNode, definition: SubdeviceDefinition): void {
    RED.nodes.createNode(this, definition);
    const node = this;

    const statusOf = (): NodeStatus => {
      const device = node.device;
      if (node.configurationError || !device?.link) {
        return { fill: 'red', shape: 'ring', text: statusText('tencent-iot-subdevice.status.invalid-config') };
      }
      if (!device.connection.connected) return connectionNodeStatus(device.connection.status);
      const link = device.link.status;
      switch (link.state) {
        case 'online':
          return { fill: 'green', shape: 'dot', text: statusText('tencent-iot-subdevice.status.online') };
        case 'going-online':
          return { fill: 'yellow', shape: 'ring', text: statusText('tencent-iot-subdevice.status.going-online') };
        case 'refused':
          return { fill: 'red', shape: 'ring', text: statusText('tencent-iot-subdevice.status.refused') };
        case 'offline':
          return link.reason
            ? { fill: 'red', shape: 'ring', text: statusText('tencent-iot-subdevice.status.offline') }
            : { fill: 'yellow', shape: 'ring', text: statusText('tencent-iot-subdevice.status.offline') };
      }
    };
    const { pushAll } = serveDeviceUsers(node, statusOf);

    try {
      const gatewayNode = typeof definition.gateway === 'string' ? (RED.nodes.getNode(definition.gateway) as TencentIotDeviceNode | null) : null;
      if (!gatewayNode) throw new Error(RED._('tencent-iot-subdevice.errors.no-gateway'));
      if (!gatewayNode.device) throw new Error(RED._('tencent-iot-subdevice.errors.gateway-invalid', { reason: gatewayNode.configurationError ?? '' }));
      if (gatewayNode.device.link) throw new Error(RED._('tencent-iot-subdevice.errors.gateway-is-subdevice'));
      const productId = text(definition.productId);
      const deviceName = text(definition.deviceName);
      const problem = describeInvalidProductId(productId) ?? describeInvalidDeviceName(deviceName);
      if (problem) throw new Error(problem);
      const updateTimeoutText = text(definition.updateTimeout);
      const updateTimeoutMinutes = updateTimeoutText ? Number(updateTimeoutText) : 30;
      if (!Number.isFinite(updateTimeoutMinutes) || updateTimeoutMinutes < 0) throw new Error('update time limit must be a number of minutes, 0 for none');
      const gateway = gatewayNode.device;
      node.device = new OtaDevice({
        gateway,
        productId,
        deviceName,
        stateDir: path.resolve(text(definition.stateDir) || defaultSubdeviceStateDir(gateway.stateDir, productId, deviceName)),
        runningVersion: text(definition.runningVersion) || undefined,
        updateDeadlineMs: Math.round(updateTimeoutMinutes * 60_000),
        deviceSecret: node.credentials?.deviceSecret?.trim() || undefined,
        ...readSignatureConfig(definition),
      });
      const link = node.device.link;
      node.device.connection.on('status', pushAll);
      // The gateway's connection outlives a redeploy of this node alone.
      const connection = node.device.connection;
      node.on('close', (_removed, done) => {
        connection.off('status', pushAll);
        done();
      });
      link?.on('status', (status) => {
        if (status.state === 'refused') node.warn(RED._('tencent-iot-subdevice.log.refused', { reason: status.reason ?? '' }));
        if (status.state === 'offline' && status.reason) node.warn(RED._('tencent-iot-subdevice.log.offline', { reason: status.reason }));
        if (status.state === 'online') node.log(RED._('tencent-iot-subdevice.log.online'));
        pushAll();
      });
      node.device.session.on('warning', (warning) => node.warn(warning));
      logUnknownMessages(RED, node, node.device.channel);
    } catch (error) {
      node.configurationError = (error as Error).message;
      node.error(RED._('tencent-iot-subdevice.errors.invalid-config', { reason: node.configurationError }));
    }
  }

  RED.nodes.registerType('tencent-iot-subdevice', TencentIotSubdevice, {
    credentials: { deviceSecret: { type: 'password' } },
  });
};
