/**
 * Flow node `ota-verify`: checks the downloaded firmware on disk against the update's md5sum (and
 * an optional SHA-256), and its signature when the device has firmware keys, requires one, or one
 * comes (in user_defined, or msg.signature). A firmware that passes goes to the first output; one that fails is removed,
 * the update ends with `fail` (the update session reports it), and it goes to the second output.
 */
import { describeInvalidExpectation } from '../lib/firmware-verification';
import { attachToDevice } from './common/device-user';
import type { NodeDefinition, NodeRedRuntime, RuntimeNode } from './common/node-red-runtime';
import { messageField, nonBlankText, targetVersionOf, type UpdateFlowMessage } from './common/update-message';
import { statusText } from './common/status-text';
import { finishWithError } from './common/update-status';

interface OtaVerifyDefinition extends NodeDefinition {
  device?: string;
  /** 'subdevice' takes the sub-device config node instead of the device. */
  target?: string;
  subdevice?: string;
  /** Expected SHA-256 of every firmware this node checks; empty to take it from the message. */
  sha256?: string;
  /** Hash the whole file again rather than trust the digests its download computed. */
  reread?: boolean;
}

export = function registerOtaVerify(RED: NodeRedRuntime): void {
  function OtaVerify(this: RuntimeNode, definition: OtaVerifyDefinition): void {
    RED.nodes.createNode(this, definition);
    const node = this;
    const attached = attachToDevice(RED, node, definition.target === 'subdevice' ? definition.subdevice : definition.device);
    if (!attached) return;
    const { status } = attached;
    const session = attached.device.session;
    const configuredSha256 = nonBlankText(definition.sha256);
    const reread = definition.reread === true;
    // A SHA-256 known now is computed by the downloads as the bytes arrive.
    if (configuredSha256) node.on('close', session.expectSha256Checks());

    node.on('input', (message: UpdateFlowMessage, send, done) => {
      const version = targetVersionOf(message) ?? session.current?.version;
      const filePath = nonBlankText(messageField(message.firmware, 'path'));
      const sha256 = configuredSha256 ?? nonBlankText(message.sha256) ?? nonBlankText(messageField(message.payload, 'sha256'));
      // The md5sum is the update's own; the message's is used only for a version the device is not updating.
      const md5sum = session.current?.version === version ? session.current?.command.md5sum : nonBlankText(messageField(message.payload, 'md5sum'));
      const problem = describeInvalidExpectation({ version, filePath, md5sum, sha256 });
      if (problem || !version || !filePath) {
        status.result({ fill: 'red', shape: 'ring', text: statusText('ota-verify.status.invalid-input') });
        done(new Error(RED._('ota-verify.errors.invalid-input', { reason: problem ?? 'no firmware file' })));
        return;
      }
      const fileSize = messageField(message.payload, 'file_size');
      status.step(version, { fill: 'blue', shape: 'ring', text: statusText('ota-verify.status.verifying', { version }) });
      const verifying = { filePath, md5sum, sha256, reread, fileSize: typeof fileSize === 'number' ? fileSize : undefined, signature: message.signature };
      session.verify(version, verifying).then(
        (result) => {
          if (result.ok) {
            status.result({ fill: 'green', shape: 'dot', text: statusText('ota-verify.status.verified', { version }) });
            message.verified = { md5: result.digest.md5 };
            if (result.digest.sha256 !== undefined) message.verified.sha256 = result.digest.sha256;
            if (result.signature) message.verified.signature = result.signature;
            const signature = result.signature;
            node.log(
              signature
                ? RED._('ota-verify.log.verified-signed', { version, md5: result.digest.md5, keyId: signature.keyId, alg: signature.alg })
                : RED._('ota-verify.log.verified', { version, md5: result.digest.md5 }),
            );
            send([message, null]);
            done();
            return;
          }
          status.result({ fill: 'red', shape: 'dot', text: statusText('ota-verify.status.failed', { code: result.resultCode }) });
          message.error = { resultCode: result.resultCode, reason: result.reason };
          // The status says only the code: the reason goes to the log, where a person looks for it.
          node.warn(RED._('ota-verify.log.check-failed', { version, code: result.resultCode, reason: result.reason }));
          send([null, message]);
          done();
        },
        (error: unknown) => finishWithError(RED, status, done, error, version),
      );
    });
  }

  RED.nodes.registerType('ota-verify', OtaVerify);
};
