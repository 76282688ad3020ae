/**
 * What a flow node shows of the device's update, written once for every node: a step under way,
 * what a step came to, or a status of no update at all; and what becomes of it when the update ends
 * or the next one starts. Plus the one way a node turns an update's failure or a wrong step into
 * its status and the end of its message.
 */
import { DownloadAbortedError } from '../../lib/resumable-download';
import { UpdateFailure } from '../../lib/update-failure';
import { UpdateAlreadyEndedError, UpdateStepError, type UpdateView } from '../../lib/update-session';
import type { DoneFunction, NodeRedRuntime, NodeStatus, RuntimeNode } from './node-red-runtime';
import { statusText } from './status-text';

export function failedStatus(resultCode: number): NodeStatus {
  return { fill: 'red', shape: 'ring', text: statusText('tencent-iot-device.status.failed', { code: resultCode }) };
}

/** How an update ended, as the nodes that took part in it show it afterwards. */
export function outcomeStatus(ended: UpdateView): NodeStatus {
  if (ended.state === 'done') return { fill: 'green', shape: 'dot', text: statusText('tencent-iot-device.status.done', { version: ended.version }) };
  return failedStatus(ended.failure?.resultCode ?? -1);
}

/**
 * The rule: a node shows its step of the current update only. A step under way gives way to how the
 * update ended when it ends (no node says "burning 1.0.0" after 1.0.0 is done); what a step came to
 * stays until the next update starts, which puts the device's connection status back. A status of
 * no update (the running version, a gateway's answer) is left to the node.
 */
export class UpdateStatusDisplay {
  private shown: { kind: 'step'; version: string } | { kind: 'result' } | undefined;

  constructor(
    readonly node: RuntimeNode,
    private readonly showConnection: () => void,
  ) {}

  /** A step of the update to `version` under way. */
  step(version: string, status: NodeStatus): void {
    this.shown = { kind: 'step', version };
    this.node.status(status);
  }

  /** What the node's step of the current update came to. */
  result(status: NodeStatus): void {
    this.shown = { kind: 'result' };
    this.node.status(status);
  }

  /** A status that belongs to no update. */
  other(status: NodeStatus): void {
    this.shown = undefined;
    this.node.status(status);
  }

  /** The session's 'started': a new update. */
  updateStarted(): void {
    if (!this.shown) return;
    this.shown = undefined;
    this.showConnection();
  }

  /** The session's 'ended'. */
  updateEnded(ended: UpdateView): void {
    if (this.shown?.kind === 'step' && this.shown.version === ended.version) this.result(outcomeStatus(ended));
  }
}

/**
 * Shows what went wrong and finishes the message: a failed update (the cloud has been told) and a
 * wrong step go to done(error), where a Catch node sees them with the whole reason; a second final
 * report for an ended update and a download stopped by the end of its update are warned of and
 * finish quietly. Every OTA node's catalog carries `<type>.update.failed-error`.
 */
export function finishWithError(RED: NodeRedRuntime, display: UpdateStatusDisplay, done: DoneFunction, error: unknown, version?: string): void {
  const node = display.node;
  if (error instanceof UpdateAlreadyEndedError) {
    display.result({ fill: 'grey', shape: 'ring', text: statusText('tencent-iot-device.status.already-ended', { version: error.ended.version }) });
    node.warn(error.message);
    done();
    return;
  }
  if (error instanceof DownloadAbortedError) {
    // The update ended (or the node closed) while this step was under way: once it has ended, the node shows how.
    const stopped = { fill: 'grey', shape: 'ring', text: statusText('tencent-iot-device.status.stopped', { version: version ?? '' }) } as const;
    if (version) display.step(version, stopped);
    else display.result(stopped);
    node.log(error.message);
    done();
    return;
  }
  if (error instanceof UpdateFailure) {
    display.result(failedStatus(error.resultCode));
    done(new Error(RED._(`${node.type}.update.failed-error`, { version: version ?? '', code: error.resultCode, reason: error.reason })));
    return;
  }
  const message = error instanceof Error ? error.message : String(error);
  const text = error instanceof UpdateStepError ? statusText('tencent-iot-device.status.wrong-step') : statusText('tencent-iot-device.status.error');
  display.result({ fill: 'red', shape: 'ring', text });
  done(new Error(message));
}
