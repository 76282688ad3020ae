/**
 * Flow node `ota-report`: reports an update's result (burning, done or fail) to the cloud with QoS 1
 * and passes the message on once the cloud has acknowledged it. After `done` the new version
 * becomes the device's running version. The reporting is lib/result-reporter.ts; this file wires
 * it to Node-RED.
 */
import { describeInvalidResultReport, ResultReporter, type ResultReport } from '../lib/result-reporter';
import type { OtaDevice } from '../lib/ota-device';
import { attachToDevice } from './common/device-user';
import { messageField, nonBlankText, targetVersionOf } from './common/message-fields';
import type { NodeDefinition, NodeMessage, NodeRedRuntime, RuntimeNode } from './common/node-red-runtime';

interface OtaReportDefinition extends NodeDefinition {
  device?: string;
  /** '' takes the state from the message. */
  state?: string;
  keepFile?: boolean;
  reportVersion?: boolean;
}

/** result_code as a number when it is one (or a string of one); anything else is left for the check to refuse. */
function resultCode(value: unknown): unknown {
  if (typeof value === 'string' && /^\s*-?\d+\s*$/.test(value)) return Number(value);
  return value;
}

/** The report a message asks for; its fields are checked by describeInvalidResultReport. */
function reportFromMessage(message: NodeMessage, configuredState: string | undefined, device: OtaDevice): Record<keyof ResultReport, unknown> {
  const payload = message.payload;
  return {
    state: configuredState ?? nonBlankText(messageField(payload, 'state')) ?? nonBlankText(payload),
    version: targetVersionOf(message) ?? device.activeUpdate?.command.version,
    resultCode: resultCode(messageField(payload, 'result_code')),
    // A Catch node's msg.error.message makes a good reason too.
    resultMessage: nonBlankText(messageField(payload, 'result_msg')) ?? nonBlankText(messageField(message.error, 'message')),
    filePath: nonBlankText(messageField(message.firmware, 'path')),
  };
}

export = function registerOtaReport(RED: NodeRedRuntime): void {
  function OtaReport(this: RuntimeNode, definition: OtaReportDefinition): void {
    RED.nodes.createNode(this, definition);
    const node = this;
    const device = attachToDevice(RED, node, definition.device);
    if (!device) return;
    const reporter = new ResultReporter(device);
    const configuredState = nonBlankText(definition.state);
    const options = { keepFile: definition.keepFile === true, reportVersion: definition.reportVersion !== false };

    node.on('input', (message: NodeMessage, send, done) => {
      const fields = reportFromMessage(message, configuredState, device);
      const problem = describeInvalidResultReport(fields);
      if (problem) {
        node.status({ fill: 'red', shape: 'ring', text: RED._('ota-report.status.invalid') });
        done(new Error(RED._('ota-report.errors.invalid', { reason: problem })));
        return;
      }
      const report = fields as ResultReport;
      const { state, version } = report;
      node.status({ fill: 'blue', shape: 'ring', text: RED._('ota-report.status.reporting', { state, version }) });
      reporter.report(report, options).then(
        (acknowledgement) => {
          node.status({ fill: state === 'fail' ? 'red' : 'green', shape: 'dot', text: RED._(`ota-report.status.${state}`, { version }) });
          message.acknowledged = { state, version, at: acknowledgement.at };
          node.log(RED._('ota-report.log.acknowledged', { state, version }));
          if (acknowledgement.versionReport) message.versionReport = acknowledgement.versionReport;
          if (acknowledgement.cleanupError) node.warn(RED._('ota-report.errors.cleanup-failed', { reason: acknowledgement.cleanupError.message }));
          send(message);
          if (acknowledgement.versionReportError) {
            done(new Error(RED._('ota-report.errors.version-report-failed', { version, reason: acknowledgement.versionReportError.message })));
          } else {
            done();
          }
        },
        (error: Error) => {
          node.status({ fill: 'red', shape: 'ring', text: RED._('ota-report.status.failed') });
          done(new Error(RED._('ota-report.errors.report-failed', { state, version, reason: error.message })));
        },
      );
    });
  }

  RED.nodes.registerType('ota-report', OtaReport);
};
