/** The node status shown for a device connection's state (the reason of a disconnection goes to the log). */
import type { ConnectionStatus } from '../../lib/device-connection';
import type { NodeStatus } from './node-red-runtime';
import { statusText } from './status-text';

export function connectionNodeStatus(status: ConnectionStatus): NodeStatus {
  switch (status.state) {
    case 'connecting':
      return { fill: 'yellow', shape: 'ring', text: statusText('tencent-iot-device.status.connecting') };
    case 'connected':
      return { fill: 'green', shape: 'dot', text: statusText('tencent-iot-device.status.connected') };
    case 'disconnected':
      return { fill: 'red', shape: 'ring', text: statusText('tencent-iot-device.status.disconnected') };
    case 'idle':
      return {};
  }
}
