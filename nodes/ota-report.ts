/**
 * Flow node `ota-report`: reports an update's result (burning, done or fail) to the cloud with QoS 1
 * and passes the message on once the cloud has acknowledged it. After `done` the new version
 * becomes the device's running version. The update session sends the reports and ends the update
 * (lib/update-session.ts); this file reads the message and shows how it went.
 */
import { describeInvalidFirmwareVersion } from '../lib/firmware-version';
import { OtaResultCode } from '../lib/ota-messages';
import { attachToDevice } from './common/device-user';
import type { NodeDefinition, NodeRedRuntime, RuntimeNode } from './common/node-red-runtime';
import { messageField, nonBlankText, targetVersionOf, type UpdateFlowMessage } from './common/update-message';
import { statusText } from './common/status-text';
import { failedStatus, finishWithError } from './common/update-status';

interface OtaReportDefinition extends NodeDefinition {
  device?: string;
  /** 'subdevice' takes the sub-device config node instead of the device. */
  target?: string;
  subdevice?: string;
  /** '' takes the state from the message. */
  state?: string;
  keepFile?: boolean;
  reportVersion?: boolean;
}

type ResultState = 'burning' | 'done' | 'fail';
const RESULT_STATES: readonly ResultState[] = ['burning', 'done', 'fail'];
const DEFAULT_FAILURE_MESSAGE = 'upgrade failed';

interface ResultRequest {
  state: ResultState;
  version: string;
  resultCode: number;
  resultMessage: string;
  filePath?: string;
}

/** result_code as a number when it is one (or a string of one). */
function resultCodeOf(value: unknown): unknown {
  if (typeof value === 'string' && /^\s*-?\d+\s*$/.test(value)) return Number(value);
  return value;
}

/** The report a message asks for, or what is wrong with it. */
function requestOf(message: UpdateFlowMessage, configuredState: string | undefined, currentVersion: string | undefined): ResultRequest | string {
  const payload = message.payload;
  const state = configuredState ?? nonBlankText(messageField(payload, 'state')) ?? nonBlankText(payload);
  if (!state || !(RESULT_STATES as readonly string[]).includes(state)) {
    return `state must be one of ${RESULT_STATES.join(', ')}, got ${JSON.stringify(state ?? null)}`;
  }
  const version = targetVersionOf(message) ?? currentVersion;
  const versionProblem = describeInvalidFirmwareVersion(version);
  if (versionProblem || !version) return `target ${versionProblem ?? 'version missing'}`;
  const code = resultCodeOf(messageField(payload, 'result_code'));
  if (state === 'fail' && code !== undefined && (typeof code !== 'number' || !Number.isInteger(code) || code >= 0)) {
    return `result_code must be a negative integer, got ${JSON.stringify(code)}`;
  }
  return {
    state: state as ResultState,
    version,
    resultCode: typeof code === 'number' ? code : OtaResultCode.upgradeFailed,
    // A Catch node's msg.error.message makes a good reason too.
    resultMessage: nonBlankText(messageField(payload, 'result_msg')) ?? nonBlankText(messageField(message.error, 'message')) ?? DEFAULT_FAILURE_MESSAGE,
    filePath: nonBlankText(messageField(message.firmware, 'path')),
  };
}

export = function registerOtaReport(RED: NodeRedRuntime): void {
  function OtaReport(this: RuntimeNode, definition: OtaReportDefinition): void {
    RED.nodes.createNode(this, definition);
    const node = this;
    const attached = attachToDevice(RED, node, definition.target === 'subdevice' ? definition.subdevice : definition.device);
    if (!attached) return;
    const { status } = attached;
    const session = attached.device.session;
    const configuredState = nonBlankText(definition.state);
    const options = { keepFile: definition.keepFile === true, reportVersion: definition.reportVersion !== false };

    node.on('input', (message: UpdateFlowMessage, send, done) => {
      const request = requestOf(message, configuredState, session.current?.version);
      if (typeof request === 'string') {
        status.result({ fill: 'red', shape: 'ring', text: statusText('ota-report.status.invalid') });
        done(new Error(RED._('ota-report.errors.invalid', { reason: request })));
        return;
      }
      const { state, version } = request;
      const reporting = {
        burning: statusText('ota-report.status.reporting-burning'),
        done: statusText('ota-report.status.reporting-done'),
        fail: statusText('ota-report.status.reporting-fail'),
      };
      status.step(version, { fill: 'blue', shape: 'ring', text: reporting[state] });
      const acknowledged = () => {
        if (state === 'burning') {
          // The device burns now: a step under way until the update ends.
          status.step(version, { fill: 'green', shape: 'dot', text: statusText('ota-report.status.burning', { version }) });
        } else if (state === 'done') {
          status.result({ fill: 'green', shape: 'dot', text: statusText('tencent-iot-device.status.done', { version }) });
        } else {
          status.result(failedStatus(request.resultCode));
        }
        message.acknowledged = { state, version, at: new Date().toISOString() };
        node.log(RED._('ota-report.log.acknowledged', { state, version }));
        send(message);
      };
      const failed = (error: unknown) => finishWithError(RED, status, done, error, version);
      if (state === 'burning') {
        session.reportBurning(version).then(() => {
          acknowledged();
          done();
        }, failed);
        return;
      }
      if (state === 'fail') {
        session.reportFail(version, request.resultCode, request.resultMessage).then(() => {
          acknowledged();
          done();
        }, failed);
        return;
      }
      session.reportDone(version, { ...options, filePath: request.filePath }).then((acknowledgement) => {
        acknowledged();
        if (acknowledgement.versionReport) message.versionReport = acknowledgement.versionReport;
        if (acknowledgement.cleanupError) node.warn(RED._('ota-report.errors.cleanup-failed', { reason: acknowledgement.cleanupError.message }));
        if (acknowledgement.versionReportError) {
          done(new Error(RED._('ota-report.errors.version-report-failed', { version, reason: acknowledgement.versionReportError.message })));
        } else {
          done();
        }
      }, failed);
    });
  }

  RED.nodes.registerType('ota-report', OtaReport);
};
