/**
 * The real Node-RED runtime through node-red-node-test-helper, typed for our tests, with our
 * compiled nodes loaded from dist/nodes.
 */
import { EventEmitter } from 'events';
import * as os from 'os';
import * as path from 'path';
import { promises as fs } from 'fs';
import type { NodeMessage, NodeStatus } from '../../nodes/common/node-red-runtime';

export interface TestNode extends EventEmitter {
  id: string;
  type: string;
  receive(message: NodeMessage): void;
  status: ((status: NodeStatus) => void) & { lastCall?: { args: [NodeStatus] } };
  [key: string]: unknown;
}

interface TestHelper {
  init(runtimePath: string, userSettings?: Record<string, unknown>): void;
  settings(settings: Record<string, unknown>): Record<string, unknown>;
  load(nodes: unknown[], flow: object[], credentials?: Record<string, Record<string, string>>): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): TestNode | null;
  startServer(done: () => void): void;
  stopServer(done: () => void): void;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const helper = require('node-red-node-test-helper') as TestHelper;
helper.init(require.resolve('node-red'));

export const nodeModules = {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  tencentIotDevice: require('../../nodes/tencent-iot-device') as unknown,
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  otaVersion: require('../../nodes/ota-version') as unknown,
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  otaDownload: require('../../nodes/ota-download') as unknown,
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  otaUpdateIn: require('../../nodes/ota-update-in') as unknown,
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  otaVerify: require('../../nodes/ota-verify') as unknown,
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  otaReport: require('../../nodes/ota-report') as unknown,
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  tencentIotSubdevice: require('../../nodes/tencent-iot-subdevice') as unknown,
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  otaGateway: require('../../nodes/ota-gateway') as unknown,
};

/** Starts flows in the real runtime; userDir is a fresh temp folder. */
export async function loadFlow(nodes: unknown[], flow: object[], credentials: Record<string, Record<string, string>> = {}): Promise<{ userDir: string }> {
  const userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'nr-user-'));
  helper.settings({ userDir });
  await new Promise<void>((resolve) => helper.startServer(resolve));
  loaded = true;
  await helper.load(nodes, flow, credentials);
  return { userDir };
}

let loaded = false;

/** Stops the flows and the server; safe to call when nothing is loaded. */
export async function unloadFlow(): Promise<void> {
  if (!loaded) return;
  loaded = false;
  await helper.unload();
  await new Promise<void>((resolve) => helper.stopServer(resolve));
}

export function getNode(id: string): TestNode {
  const node = helper.getNode(id);
  if (!node) throw new Error(`node ${id} is not in the flow`);
  return node;
}

/** Resolves with the next message a node sends. */
export function nextMessage(node: TestNode, timeoutMs = 30_000): Promise<NodeMessage> {
  return waitForEvent<NodeMessage>(node, 'input', timeoutMs);
}

/** Resolves with the next status whose text or fill satisfies the predicate. */
export function statusMatching(node: TestNode, predicate: (status: NodeStatus) => boolean, timeoutMs = 30_000): Promise<NodeStatus> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      node.removeListener('call:status', onStatus);
      reject(new Error(`no matching status on ${node.type} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onStatus = (call: { args: [NodeStatus] }) => {
      if (!predicate(call.args[0])) return;
      clearTimeout(timer);
      node.removeListener('call:status', onStatus);
      resolve(call.args[0]);
    };
    node.on('call:status', onStatus);
  });
}

/** Resolves with the argument of the next call of a node method (error, warn, ...). */
export function nextCall<T>(node: TestNode, method: 'error' | 'warn' | 'log' | 'send', timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${method} call on ${node.type} within ${timeoutMs} ms`)), timeoutMs);
    node.once(`call:${method}`, (call: { args: T[] }) => {
      clearTimeout(timer);
      resolve(call.args[0]);
    });
  });
}

export function waitForEvent<T>(emitter: EventEmitter, event: string, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.removeListener(event, onEvent);
      reject(new Error(`no ${event} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onEvent = (value: T) => {
      clearTimeout(timer);
      resolve(value);
    };
    emitter.once(event, onEvent);
  });
}
