/**
 * A real Node-RED runtime in a child process, with this package installed in its user directory
 * the way `npm install` in ~/.node-red would. The demo runs on it, and so do the tests that kill
 * and restart Node-RED.
 */
import { spawn, type ChildProcess } from 'child_process';
import { EventEmitter } from 'events';
import { promises as fs } from 'fs';
import * as net from 'net';
import * as path from 'path';

export const PACKAGE_DIR = path.resolve(__dirname, '..', '..');
export const PACKAGE_NAME = 'node-red-contrib-tencent-iot-ota';
/**
 * The copy of the package the runtime loads: this checkout, or one installed from its `npm pack`
 * tarball (TENCENT_IOT_OTA_INSTALLED, set by `npm run compat`), to run the nodes as users get them.
 */
export const INSTALLED_PACKAGE_DIR = process.env.TENCENT_IOT_OTA_INSTALLED ? path.resolve(process.env.TENCENT_IOT_OTA_INSTALLED) : PACKAGE_DIR;

export interface NodeRedProcessOptions {
  userDir: string;
  /** 0 picks a free port. */
  port?: number;
  host?: string;
  flows: object[];
  credentials?: Record<string, Record<string, string>>;
  /** Extra environment for the runtime (NODE_EXTRA_CA_CERTS, say). */
  env?: NodeJS.ProcessEnv;
  /** The console log's level (default info); written to settings.js on every start. */
  logLevel?: NodeRedLogLevel;
  /** Node-RED's adminAuth setting (users and their bcrypt password hashes); none: the editor is open. */
  adminAuth?: object;
  startTimeoutMs?: number;
  /**
   * The Node-RED to run (its red.js). Default: NODE_RED_JS from the environment, else the
   * node-red this package was installed with; another one checks compatibility with that release.
   */
  redJs?: string;
  /**
   * Run the runtime as this user and group (spawn's uid/gid; needs root). The user directory and
   * the device's state folder must then be writable by that user.
   */
  uid?: number;
  gid?: number;
}

export type NodeRedLogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address() as net.AddressInfo;
      server.close(() => resolve(address.port));
    });
  });
}

/** True when nothing listens on the port yet. */
export async function portIsFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** The settings' logging: the console at `level`, and the "Started flows" line (which start() waits for) printed whatever the level. */
function loggingSettings(level: NodeRedLogLevel): string[] {
  const consoleLogger = `console: { level: '${level}', metrics: false, audit: false }`;
  if (['info', 'debug', 'trace'].includes(level)) return [`  logging: { ${consoleLogger} },`];
  return [
    '  logging: {',
    `    ${consoleLogger},`,
    "    started: { level: 'info', metrics: false, audit: false, handler: () => (msg) => { if (/^Started flows/.test(String(msg.msg))) console.log(`[info] ${msg.msg}`); } },",
    '  },',
  ];
}

/** Lays out a Node-RED user directory with this package installed and the given flows. */
export async function prepareUserDir(
  userDir: string,
  flows: object[],
  credentials: Record<string, Record<string, string>> = {},
  logLevel: NodeRedLogLevel = 'info',
  adminAuth?: object,
): Promise<void> {
  await fs.mkdir(path.join(userDir, 'node_modules'), { recursive: true });
  const link = path.join(userDir, 'node_modules', PACKAGE_NAME);
  await fs.rm(link, { recursive: true, force: true });
  await fs.symlink(INSTALLED_PACKAGE_DIR, link, 'dir');
  await fs.writeFile(
    path.join(userDir, 'package.json'),
    JSON.stringify({ name: 'node-red-project', private: true, dependencies: { [PACKAGE_NAME]: `file:${INSTALLED_PACKAGE_DIR}` } }, null, 2),
  );
  await fs.writeFile(
    path.join(userDir, 'settings.js'),
    [
      'module.exports = {',
      "  flowFile: 'flows.json',",
      '  credentialSecret: false,',
      '  flowFilePretty: true,',
      ...loggingSettings(logLevel),
      ...(adminAuth ? [`  adminAuth: ${JSON.stringify(adminAuth)},`] : []),
      '  editorTheme: { tours: false, projects: { enabled: false } },',
      '  diagnostics: { enabled: false },',
      '  telemetry: { enabled: false },',
      '};',
      '',
    ].join('\n'),
  );
  const flowsFile = path.join(userDir, 'flows.json');
  const existing = await fs.stat(flowsFile).catch(() => undefined);
  if (!existing) {
    await fs.writeFile(flowsFile, JSON.stringify(flows, null, 2));
    await fs.writeFile(path.join(userDir, 'flows_cred.json'), JSON.stringify(credentials, null, 2));
  }
}

export interface NodeRedProcessEvents {
  line: [string];
  exit: [number | null, NodeJS.Signals | null];
}

export class NodeRedProcess extends EventEmitter<NodeRedProcessEvents> {
  readonly url: string;
  readonly userDir: string;
  private readonly child: ChildProcess;
  private exited: Promise<void>;
  private outputLines: string[] = [];

  private constructor(child: ChildProcess, url: string, userDir: string) {
    super();
    this.child = child;
    this.url = url;
    this.userDir = userDir;
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.emit('exit', code, signal);
        resolve();
      }),
    );
    let pending = '';
    const onData = (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        this.outputLines.push(line);
        if (this.outputLines.length > 2000) this.outputLines.shift();
        this.emit('line', line);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
  }

  /** The runtime's recent log lines, for a failing test to show. */
  get output(): string {
    return this.outputLines.join('\n');
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * Starts Node-RED with the user directory (prepared first if it has no flows yet) and resolves
   * once the flows are running.
   */
  static async start(options: NodeRedProcessOptions): Promise<NodeRedProcess> {
    await prepareUserDir(options.userDir, options.flows, options.credentials, options.logLevel, options.adminAuth);
    const host = options.host ?? '127.0.0.1';
    const port = options.port && options.port > 0 ? options.port : await freePort(host);
    const redJs = options.redJs ?? process.env.NODE_RED_JS ?? require.resolve('node-red/red.js');
    const child = spawn(process.execPath, [redJs, '--userDir', options.userDir, '--port', String(port)], {
      env: { ...process.env, ...options.env, NODE_RED_HOST: host },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.uid !== undefined ? { uid: options.uid } : {}),
      ...(options.gid !== undefined ? { gid: options.gid } : {}),
    });
    const runtime = new NodeRedProcess(child, `http://${host}:${port}`, options.userDir);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => fail(new Error(`Node-RED did not start within ${options.startTimeoutMs ?? 60_000} ms:\n${runtime.output}`)),
        options.startTimeoutMs ?? 60_000,
      );
      const onLine = (line: string) => {
        if (/Started flows/.test(line)) finish();
      };
      const onExit = (code: number | null) => fail(new Error(`Node-RED exited with ${code} before starting:\n${runtime.output}`));
      function finish() {
        clearTimeout(timer);
        runtime.off('line', onLine);
        runtime.off('exit', onExit);
        resolve();
      }
      function fail(error: Error) {
        clearTimeout(timer);
        runtime.off('line', onLine);
        runtime.off('exit', onExit);
        reject(error);
      }
      runtime.on('line', onLine);
      runtime.once('exit', onExit);
    }).catch(async (error) => {
      await runtime.kill();
      throw error;
    });
    return runtime;
  }

  /** Ends the process at once (SIGKILL by default: no chance to save anything). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    await this.exited;
  }

  /** Stops Node-RED the normal way (SIGINT), falling back to SIGKILL. */
  async stop(timeoutMs = 15_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGINT');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }
}
