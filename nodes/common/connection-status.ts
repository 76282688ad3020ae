/** The node status shown for a device connection's state, in the user's language. */
import type { ConnectionStatus } from '../../lib/device-connection';
import type { NodeRedRuntime, NodeStatus } from './node-red-runtime';

export function connectionNodeStatus(RED: NodeRedRuntime, status: ConnectionStatus): NodeStatus {
  switch (status.state) {
    case 'connecting':
      return { fill: 'yellow', shape: 'ring', text: RED._('tencent-iot-device.status.connecting') };
    case 'connected':
      return { fill: 'green', shape: 'dot', text: RED._('tencent-iot-device.status.connected') };
    case 'disconnected':
      return {
        fill: 'red',
        shape: 'ring',
        text: status.reason ? RED._('tencent-iot-device.status.disconnected-because', { reason: status.reason }) : RED._('tencent-iot-device.status.disconnected'),
      };
    case 'idle':
      return {};
  }
}
