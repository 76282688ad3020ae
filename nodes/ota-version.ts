/**
 * Flow node `ota-version`: reports the device's running version (report_version, QoS 1) and
 * outputs the cloud's report_version_rsp. Optionally reports by itself after every (re)connect.
 */
import { describeInvalidFirmwareVersion } from '../lib/firmware-version';
import type { ConnectReport } from '../lib/ota-device';
import type { ReportVersionResponse } from '../lib/ota-messages';
import { attachToDevice } from './common/device-user';
import type { NodeDefinition, NodeMessage, NodeRedRuntime, RuntimeNode } from './common/node-red-runtime';
import { statusText } from './common/status-text';

interface OtaVersionDefinition extends NodeDefinition {
  device?: string;
  /** 'subdevice' takes the sub-device config node instead of the device. */
  target?: string;
  subdevice?: string;
  autoReport?: boolean;
  replyTimeout?: number | string;
}

/** The version to report: msg.payload when it is a string (which must then be valid), else the device's own. */
function versionFromPayload(payload: unknown): { version?: string; error?: string } {
  if (typeof payload !== 'string') return {};
  const problem = describeInvalidFirmwareVersion(payload);
  return problem ? { error: problem } : { version: payload };
}

export = function registerOtaVersion(RED: NodeRedRuntime): void {
  function OtaVersion(this: RuntimeNode, definition: OtaVersionDefinition): void {
    RED.nodes.createNode(this, definition);
    const node = this;
    const attached = attachToDevice(RED, node, definition.target === 'subdevice' ? definition.subdevice : definition.device);
    if (!attached) return;
    // The running version belongs to no update: a new one starting leaves it shown.
    const { device, status } = attached;
    const replyTimeoutSeconds = Number(definition.replyTimeout) > 0 ? Number(definition.replyTimeout) : 30;

    const showResponse = (response: ReportVersionResponse, version: string) => {
      if (response.result_code === 0) {
        status.other({ fill: 'green', shape: 'dot', text: statusText('ota-version.status.reported', { version }) });
      } else {
        status.other({ fill: 'red', shape: 'dot', text: statusText('ota-version.status.refused', { code: response.result_code }) });
      }
    };

    // After done, the version now running is what the device is.
    const showRunning = (version: string) => status.other({ fill: 'green', shape: 'dot', text: statusText('ota-version.status.running', { version }) });
    device.session.on('running', showRunning);
    node.on('close', (_removed, done) => {
      device.session.off('running', showRunning);
      done();
    });

    if (definition.autoReport !== false) {
      const stop = device.onConnectReport((report: ConnectReport) => {
        if (report.response) {
          showResponse(report.response, report.version);
          node.send({ topic: report.version, payload: report.response, trigger: 'connect' });
        } else if (report.error) {
          status.other({ fill: 'red', shape: 'ring', text: statusText('ota-version.status.failed') });
          node.error(RED._('ota-version.errors.report-failed', { reason: report.error.message }), { payload: report.version });
        }
      });
      node.on('close', (_removed, done) => {
        stop();
        done();
      });
    }

    node.on('input', (message: NodeMessage, send, done) => {
      const requested = versionFromPayload(message.payload);
      if (requested.error) {
        status.other({ fill: 'red', shape: 'ring', text: statusText('ota-version.status.invalid-version') });
        done(new Error(RED._('ota-version.errors.invalid-version', { reason: requested.error })));
        return;
      }
      const report = async () => {
        const version = requested.version ?? (await device.currentVersion());
        status.other({ fill: 'blue', shape: 'ring', text: statusText('ota-version.status.reporting', { version }) });
        const response = await device.channel.reportVersion(version, replyTimeoutSeconds * 1000);
        showResponse(response, version);
        message.topic = version;
        message.payload = response;
        send(message);
        if (response.result_code !== 0) {
          done(new Error(RED._('ota-version.errors.refused', { code: response.result_code, reason: response.result_msg })));
        } else {
          done();
        }
      };
      report().catch((error: Error) => {
        status.other({ fill: 'red', shape: 'ring', text: statusText('ota-version.status.failed') });
        done(new Error(RED._('ota-version.errors.report-failed', { reason: error.message })));
      });
    });
  }

  RED.nodes.registerType('ota-version', OtaVersion);
};
