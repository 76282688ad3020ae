/**
 * Flow node `ota-download`: downloads the firmware of the update under way into the device's
 * downloads folder with checkpoint restart, reporting progress to the cloud and on its second
 * output. The update session runs the download (lib/update-session.ts, lib/resumable-download.ts);
 * this file forwards the step and shows how it goes.
 */
import { attachToDevice } from './common/device-user';
import type { NodeDefinition, NodeRedRuntime, RuntimeNode } from './common/node-red-runtime';
import { firmwareFields, nonBlankText, targetVersionOf, type UpdateFlowMessage } from './common/update-message';
import { statusText } from './common/status-text';
import { finishWithError } from './common/update-status';

interface OtaDownloadDefinition extends NodeDefinition {
  device?: string;
  /** 'subdevice' takes the sub-device config node instead of the device. */
  target?: string;
  subdevice?: string;
  maxRetries?: number | string;
  connectTimeout?: number | string;
  readTimeout?: number | string;
  /** KiB/s; 0 switches the check off. */
  minSpeed?: number | string;
  minSpeedWindow?: number | string;
}

function positiveNumber(value: unknown, fallback: number): number {
  const number = Number(value);
  return Number.isFinite(number) && number > 0 ? number : fallback;
}

function nonNegativeNumber(value: unknown, fallback: number): number {
  if (value === '' || value === undefined || value === null) return fallback;
  const number = Number(value);
  return Number.isFinite(number) && number >= 0 ? number : fallback;
}

export = function registerOtaDownload(RED: NodeRedRuntime): void {
  function OtaDownload(this: RuntimeNode, definition: OtaDownloadDefinition): void {
    RED.nodes.createNode(this, definition);
    const node = this;
    const attached = attachToDevice(RED, node, definition.target === 'subdevice' ? definition.subdevice : definition.device);
    if (!attached) return;
    const { status } = attached;
    const session = attached.device.session;
    const tuning = {
      maxRetries: Math.floor(nonNegativeNumber(definition.maxRetries, 5)),
      connectTimeoutMs: positiveNumber(definition.connectTimeout, 15) * 1000,
      readTimeoutMs: positiveNumber(definition.readTimeout, 30) * 1000,
      minBytesPerSecond: Math.round(nonNegativeNumber(definition.minSpeed, 1) * 1024),
      minSpeedWindowMs: positiveNumber(definition.minSpeedWindow, 60) * 1000,
    };

    node.on('input', (message: UpdateFlowMessage, send, done) => {
      if (message.cancel) {
        const reason = nonBlankText(message.cancel) ?? 'download cancelled on the device';
        session.cancel(reason).then((ended) => {
          if (ended) status.result({ fill: 'grey', shape: 'ring', text: statusText('ota-download.status.cancelled', { version: ended.version }) });
          done();
        }, done);
        return;
      }
      const version = targetVersionOf(message) ?? session.current?.version;
      if (!version) {
        finishWithError(RED, status, done, new Error(RED._('ota-download.errors.no-version')));
        return;
      }
      status.step(version, { fill: 'blue', shape: 'ring', text: statusText('ota-download.status.starting', { version }) });
      session
        .download(version, tuning, {
          progress: (progress) => {
            status.step(version, { fill: 'blue', shape: 'dot', text: statusText('ota-download.status.downloading', { percent: progress.percent }) });
            send([null, { topic: version, payload: { version, ...progress } }]);
          },
          retry: ({ attempt, fromByte, reason, descriptorShortage }) => {
            // The reason goes to the log: a status has room for the attempt only.
            status.step(version, { fill: 'yellow', shape: 'ring', text: statusText('ota-download.status.retrying', { attempt }) });
            // Out of file descriptors says something about the whole host: a warning, not an info line.
            if (descriptorShortage) node.warn(RED._('ota-download.log.descriptor-shortage', { version, attempt, reason }));
            else node.log(RED._('ota-download.log.retry', { attempt, bytes: fromByte, reason }));
          },
          resumed: (fromByte) => node.log(RED._('ota-download.log.resumed', { version, bytes: fromByte })),
          restartFromZero: (reason) => node.warn(RED._('ota-download.log.restart-from-zero', { reason })),
          queued: () => status.step(version, { fill: 'grey', shape: 'ring', text: statusText('ota-download.status.queued', { version }) }),
        })
        .then(
          (result) => {
            // Already being downloaded for an earlier message: this one ends here.
            if (!result) return done();
            status.result({ fill: 'green', shape: 'dot', text: statusText('ota-download.status.downloaded', { version }) });
            node.log(RED._('ota-download.log.downloaded', { version, bytes: result.size, fetched: result.bytesDownloaded }));
            message.firmware = firmwareFields(result);
            send([message, null]);
            done();
          },
          (error: unknown) => finishWithError(RED, status, done, error, version),
        );
    });

    node.on('close', (_removed, done) => {
      // The partial file and its checkpoint stay; the cloud's re-push after a restart resumes it.
      session.stopDownload(RED._('ota-download.errors.stopped')).then(
        () => done(),
        () => done(),
      );
    });
  }

  RED.nodes.registerType('ota-download', OtaDownload);
};
