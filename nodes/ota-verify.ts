/**
 * Flow node `ota-verify`: checks the downloaded firmware on disk against the command's md5sum (and
 * an optional SHA-256). A firmware that passes goes to the first output; one that fails is removed,
 * reported to the cloud as `fail`, and goes to the second output. The checking is
 * lib/firmware-verification.ts; this file wires it to Node-RED.
 */
import { describeInvalidExpectation, FirmwareVerifier, type FirmwareExpectation } from '../lib/firmware-verification';
import { attachToDevice } from './common/device-user';
import { messageField, nonBlankText, targetVersionOf } from './common/message-fields';
import type { NodeDefinition, NodeMessage, NodeRedRuntime, RuntimeNode } from './common/node-red-runtime';

interface OtaVerifyDefinition extends NodeDefinition {
  device?: string;
  /** Expected SHA-256 of every firmware this node checks; empty to take it from the message. */
  sha256?: string;
}

/** The firmware and what it must match, from the download node's message. */
function expectationFromMessage(message: NodeMessage, configuredSha256: string | undefined): Partial<FirmwareExpectation> {
  const expectation: Partial<FirmwareExpectation> = {
    version: targetVersionOf(message),
    filePath: nonBlankText(messageField(message.firmware, 'path')),
    md5sum: nonBlankText(messageField(message.payload, 'md5sum')),
  };
  const sha256 = configuredSha256 ?? nonBlankText(message.sha256) ?? nonBlankText(messageField(message.payload, 'sha256'));
  if (sha256) expectation.sha256 = sha256;
  const fileSize = messageField(message.payload, 'file_size');
  if (typeof fileSize === 'number') expectation.fileSize = fileSize;
  return expectation;
}

export = function registerOtaVerify(RED: NodeRedRuntime): void {
  function OtaVerify(this: RuntimeNode, definition: OtaVerifyDefinition): void {
    RED.nodes.createNode(this, definition);
    const node = this;
    const device = attachToDevice(RED, node, definition.device);
    if (!device) return;
    const verifier = new FirmwareVerifier(device);
    const configuredSha256 = nonBlankText(definition.sha256);

    node.on('input', (message: NodeMessage, send, done) => {
      const fields = expectationFromMessage(message, configuredSha256);
      const problem = describeInvalidExpectation(fields);
      if (problem) {
        node.status({ fill: 'red', shape: 'ring', text: RED._('ota-verify.status.invalid-input') });
        done(new Error(RED._('ota-verify.errors.invalid-input', { reason: problem })));
        return;
      }
      const expectation = fields as FirmwareExpectation;
      const version = expectation.version;
      node.status({ fill: 'blue', shape: 'ring', text: RED._('ota-verify.status.verifying', { version }) });
      verifier.verify(expectation).then(
        (result) => {
          if (result.ok) {
            node.status({ fill: 'green', shape: 'dot', text: RED._('ota-verify.status.verified', { version }) });
            message.verified = { md5: result.digest.md5, sha256: result.digest.sha256 };
            node.log(RED._('ota-verify.log.verified', { version, md5: result.digest.md5 }));
            send([message, null]);
            done();
            return;
          }
          node.status({ fill: 'red', shape: 'dot', text: RED._('ota-verify.status.failed', { version, code: result.resultCode }) });
          message.error = { resultCode: result.resultCode, reason: result.reason };
          send([null, message]);
          if (result.reportError) {
            done(new Error(RED._('ota-verify.errors.report-failed', { reason: result.reportError.message })));
          } else {
            done();
          }
        },
        (error: Error) => {
          node.status({ fill: 'red', shape: 'ring', text: RED._('ota-verify.status.error') });
          done(new Error(RED._('ota-verify.errors.verify-failed', { version, reason: error.message })));
        },
      );
    });
  }

  RED.nodes.registerType('ota-verify', OtaVerify);
};
