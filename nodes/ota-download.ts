/**
 * Flow node `ota-download`: downloads the firmware of an update command into the device's state
 * folder with checkpoint restart, reporting progress to the cloud and on its second output.
 * The downloading itself is lib/resumable-download.ts; this file wires it to Node-RED.
 */
import { FileCheckpointStore } from '../lib/checkpoint-store';
import { parseUpdateFirmwareCommand, type UpdateFirmwareCommand } from '../lib/ota-messages';
import { DownloadAbortedError, DownloadError, ResumableDownload, type DownloadResult } from '../lib/resumable-download';
import { attachToDevice } from './common/device-user';
import type { DoneFunction, NodeDefinition, NodeMessage, NodeRedRuntime, RuntimeNode, SendFunction } from './common/node-red-runtime';

interface OtaDownloadDefinition extends NodeDefinition {
  device?: string;
  maxRetries?: number | string;
  connectTimeout?: number | string;
  readTimeout?: number | string;
  maxFileSize?: number | string;
}

interface RunningDownload {
  command: UpdateFirmwareCommand;
  download: ResumableDownload;
  done: DoneFunction;
}

function positiveNumber(value: unknown, fallback: number): number {
  const number = Number(value);
  return Number.isFinite(number) && number > 0 ? number : fallback;
}

export = function registerOtaDownload(RED: NodeRedRuntime): void {
  function OtaDownload(this: RuntimeNode, definition: OtaDownloadDefinition): void {
    RED.nodes.createNode(this, definition);
    const node = this;
    const device = attachToDevice(RED, node, definition.device);
    if (!device) return;
    const checkpointStore = new FileCheckpointStore(device.downloadsDir);
    const maxRetries = Math.floor(positiveNumber(definition.maxRetries, 5));
    const connectTimeoutMs = positiveNumber(definition.connectTimeout, 15) * 1000;
    const readTimeoutMs = positiveNumber(definition.readTimeout, 30) * 1000;
    const maxFileSize = definition.maxFileSize ? positiveNumber(definition.maxFileSize, 0) || undefined : undefined;
    let running: RunningDownload | undefined;

    const reportFailure = (command: UpdateFirmwareCommand, resultCode: number, reason: string) => {
      device.channel
        .reportProgress(command.version, { state: 'fail', resultCode, resultMessage: reason }, { timeoutMs: 0 })
        .catch((error: Error) => node.warn(RED._('ota-download.errors.report-failed', { reason: error.message })));
    };

    const stopRunning = async (reason: string, discard: boolean) => {
      const current = running;
      if (!current) return;
      running = undefined;
      // Resolves once the partial file is closed and its checkpoint saved.
      await current.download.abort(reason);
      if (discard) await current.download.discard().catch(() => undefined);
    };

    const startDownload = (command: UpdateFirmwareCommand, message: NodeMessage, send: SendFunction, done: DoneFunction) => {
      const download = new ResumableDownload({
        url: command.url,
        version: command.version,
        md5sum: command.md5sum,
        fileSize: command.file_size,
        directory: device.downloadsDir,
        checkpointStore,
        ca: device.customCaPem,
        connectTimeoutMs,
        readTimeoutMs,
        maxRetries,
      });
      const current: RunningDownload = { command, download, done };
      running = current;
      const isCurrent = () => running === current;

      download.on('progress', (progress) => {
        if (!isCurrent()) return;
        node.status({ fill: 'blue', shape: 'dot', text: RED._('ota-download.status.downloading', { version: command.version, percent: progress.percent }) });
        device.channel.reportProgress(command.version, { state: 'downloading', percent: progress.percent }).catch(() => undefined);
        send([null, { topic: command.version, payload: { version: command.version, ...progress } }]);
      });
      download.on('resumed', ({ fromByte }) => {
        node.log(RED._('ota-download.log.resumed', { version: command.version, bytes: fromByte }));
      });
      download.on('retry', ({ attempt, fromByte, reason }) => {
        if (!isCurrent()) return;
        node.status({ fill: 'yellow', shape: 'ring', text: RED._('ota-download.status.retrying', { attempt, reason }) });
        node.log(RED._('ota-download.log.retry', { attempt, bytes: fromByte, reason }));
      });
      download.on('restart-from-zero', ({ reason }) => {
        node.warn(RED._('ota-download.log.restart-from-zero', { reason }));
      });

      node.status({ fill: 'blue', shape: 'ring', text: RED._('ota-download.status.starting', { version: command.version }) });
      download.start().then(
        (result: DownloadResult) => {
          // Finished just as it was cancelled or superseded: the message ends, nothing is passed on.
          if (!isCurrent()) {
            done();
            return;
          }
          running = undefined;
          node.status({ fill: 'green', shape: 'dot', text: RED._('ota-download.status.downloaded', { version: command.version }) });
          message.firmware = { path: result.path, version: result.version, size: result.size, md5: result.md5, sha256: result.sha256 };
          node.log(RED._('ota-download.log.downloaded', { version: result.version, bytes: result.size, fetched: result.bytesDownloaded }));
          send([message, null]);
          done();
        },
        (error: Error) => {
          if (error instanceof DownloadAbortedError) {
            done(new Error(RED._('ota-download.errors.aborted', { version: command.version, reason: error.message })));
            return;
          }
          if (isCurrent()) running = undefined;
          const resultCode = error instanceof DownloadError ? error.resultCode : -1;
          const reason = error instanceof DownloadError ? error.reason : error.message;
          reportFailure(command, resultCode, reason);
          device.endUpdate(command.version);
          node.status({ fill: 'red', shape: 'ring', text: RED._('ota-download.status.failed', { code: resultCode, reason }) });
          done(new Error(RED._('ota-download.errors.failed', { version: command.version, code: resultCode, reason })));
        },
      );
    };

    node.on('input', (message: NodeMessage, send, done) => {
      if (message.cancel) {
        const current = running;
        if (!current) {
          done();
          return;
        }
        const reason = RED._('ota-download.status.cancelled', { version: current.command.version });
        stopRunning(reason, true).then(() => {
          reportFailure(current.command, -5, 'download cancelled on the device');
          device.endUpdate(current.command.version);
          node.status({ fill: 'grey', shape: 'ring', text: reason });
          done();
        }, done);
        return;
      }
      const parsed = parseUpdateFirmwareCommand({ type: 'update_firmware', ...(message.payload as object) }, { maxFileSize });
      if (!parsed.ok) {
        node.status({ fill: 'red', shape: 'ring', text: RED._('ota-download.status.invalid-command', { field: parsed.field }) });
        done(new Error(RED._('ota-download.errors.invalid-command', { reason: parsed.error })));
        return;
      }
      const command = parsed.value;
      const current = running;
      if (current && current.command.version === command.version && current.command.md5sum === command.md5sum) {
        // Already downloading exactly this; the running download carries on.
        done();
        return;
      }
      const superseded = current ? stopRunning(RED._('ota-download.errors.superseded', { version: command.version }), true) : Promise.resolve();
      superseded.then(() => startDownload(command, message, send, done), done);
    });

    node.on('close', (_removed, done) => {
      // The partial file and its checkpoint stay, so that the download resumes after a restart.
      stopRunning(RED._('ota-download.errors.stopped'), false).then(() => done(), () => done());
    });
  }

  RED.nodes.registerType('ota-download', OtaDownload);
};
