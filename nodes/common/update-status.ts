/**
 * The one way a flow node turns an update's failure or a wrong step into its status and the end
 * of its message: every OTA node's catalog carries `<type>.update.*` for these.
 */
import { DownloadAbortedError } from '../../lib/resumable-download';
import { UpdateFailure } from '../../lib/update-failure';
import { UpdateAlreadyEndedError, UpdateStepError } from '../../lib/update-session';
import type { DoneFunction, NodeRedRuntime, NodeStatus, RuntimeNode } from './node-red-runtime';

export function failedStatus(RED: NodeRedRuntime, node: RuntimeNode, resultCode: number, reason: string): NodeStatus {
  return { fill: 'red', shape: 'ring', text: RED._(`${node.type}.update.failed`, { code: resultCode, reason }) };
}

/**
 * Shows what went wrong and finishes the message: a failed update (the cloud has been told) and a
 * wrong step go to done(error), where a Catch node sees them; a second final report for an ended
 * update and a download stopped by the end of its update are warned of and finish quietly.
 */
export function finishWithError(RED: NodeRedRuntime, node: RuntimeNode, done: DoneFunction, error: unknown, version?: string): void {
  if (error instanceof UpdateAlreadyEndedError) {
    node.status({ fill: 'grey', shape: 'ring', text: RED._(`${node.type}.update.already-ended`, { version: error.ended.version }) });
    node.warn(error.message);
    done();
    return;
  }
  if (error instanceof DownloadAbortedError) {
    node.status({ fill: 'grey', shape: 'ring', text: RED._(`${node.type}.update.stopped`, { version: version ?? '' }) });
    node.log(error.message);
    done();
    return;
  }
  if (error instanceof UpdateFailure) {
    node.status(failedStatus(RED, node, error.resultCode, error.reason));
    done(new Error(RED._(`${node.type}.update.failed-error`, { version: version ?? '', code: error.resultCode, reason: error.reason })));
    return;
  }
  const message = error instanceof Error ? error.message : String(error);
  node.status({ fill: 'red', shape: 'ring', text: RED._(`${node.type}.update.${error instanceof UpdateStepError ? 'wrong-step' : 'error'}`) });
  done(new Error(message));
}
