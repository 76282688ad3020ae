import type { OtaDevice } from '../../lib/ota-device';

/**
 * The part of Node-RED's runtime API that our nodes use, typed here so that the node files stay
 * strict without depending on Node-RED's own (untyped) packages.
 */
export interface NodeMessage {
  _msgid?: string;
  payload?: unknown;
  topic?: string;
  [key: string]: unknown;
}

export interface NodeStatus {
  fill?: 'red' | 'green' | 'yellow' | 'blue' | 'grey';
  shape?: 'ring' | 'dot';
  text?: string;
}

export type SendFunction = (message: NodeMessage | Array<NodeMessage | null> | null) => void;
export type DoneFunction = (error?: Error) => void;

export interface NodeDefinition {
  id: string;
  type: string;
  name?: string;
  z?: string;
  [key: string]: unknown;
}

export interface RuntimeNode {
  id: string;
  type: string;
  name?: string;
  credentials?: Record<string, string | undefined>;
  status(status: NodeStatus | Record<string, never>): void;
  send(message: NodeMessage | Array<NodeMessage | null> | null): void;
  log(message: string): void;
  warn(message: string | object): void;
  error(message: string | Error, message2?: NodeMessage): void;
  on(event: 'input', handler: (message: NodeMessage, send: SendFunction, done: DoneFunction) => void): void;
  on(event: 'close', handler: (removed: boolean, done: () => void) => void): void;
}

/** What our admin endpoints use of an Express request and response. */
export interface AdminRequest {
  body?: unknown;
}

export interface AdminResponse {
  status(code: number): AdminResponse;
  json(body: unknown): void;
}

export type AdminHandler = (request: AdminRequest, response: AdminResponse, next: () => void) => void;

export interface NodeRedRuntime {
  nodes: {
    createNode(node: object, definition: NodeDefinition): void;
    getNode(id: string): RuntimeNode | null;
    registerType<N extends RuntimeNode, D extends NodeDefinition>(
      type: string,
      constructor: (this: N, definition: D) => void,
      options?: { credentials?: Record<string, { type: 'text' | 'password' }> },
    ): void;
  };
  settings: { userDir?: string; [key: string]: unknown };
  /** The editor's HTTP API, behind adminAuth when that is set. */
  httpAdmin: { post(path: string, ...handlers: AdminHandler[]): void };
  auth: { needsPermission(permission: string): AdminHandler };
  _(key: string, substitutions?: Record<string, string | number>): string;
}

/** The tencent-iot-device config node as flow nodes see it. */
export interface TencentIotDeviceNode extends RuntimeNode {
  /** Undefined when the configuration is invalid; configurationError then says why. */
  device?: OtaDevice;
  configurationError?: string;
  register(user: RuntimeNode): void;
  /** Shows the connection's status on a node of the device again. */
  showStatus(user: RuntimeNode): void;
  deregister(user: RuntimeNode): Promise<void>;
}
