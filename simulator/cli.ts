#!/usr/bin/env node
/**
 * tencent-iot-hub-sim: starts the local IoT Hub stand-in, or talks to a running one through its
 * console API (devices, gateway bindings, firmware, updates, tasks).
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { parseArgs } from 'util';
import { SIGNATURE_ALGORITHMS, type SignatureAlgorithm } from '../lib/firmware-signature';
import { ConsoleApiError, ConsoleClient, type FirmwareUploadRequest } from './console-client';
import { IotHubSimulator } from './iot-hub-simulator';
import type { FirmwareFaults } from './firmware-store';
import type { UpdateRequest } from './ota-service';

export const DEFAULT_CLI_PORTS = { mqtt: 1883, mqtts: 8883, wss: 8443, http: 8080, https: 8444 } as const;
const DEFAULT_API = `http://127.0.0.1:${DEFAULT_CLI_PORTS.http}`;
/** Sets the console address when --api is not given. */
export const API_ENVIRONMENT_VARIABLE = 'TENCENT_IOT_HUB_SIM_API';
/** How the command runs from any folder: its name is not the package's, so npx needs the package named. */
export const NPX_COMMAND = 'npx -p node-red-contrib-tencent-iot-ota tencent-iot-hub-sim';

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  'data-dir': { type: 'string' },
  host: { type: 'string' },
  hostname: { type: 'string', multiple: true },
  'mqtt-port': { type: 'string' },
  'mqtts-port': { type: 'string' },
  'wss-port': { type: 'string' },
  'http-port': { type: 'string' },
  'https-port': { type: 'string' },
  api: { type: 'string' },
  cert: { type: 'boolean' },
  gateway: { type: 'boolean' },
  'for-stand-in': { type: 'boolean' },
  replace: { type: 'boolean' },
  throttle: { type: 'string' },
  'close-after': { type: 'string' },
  'close-responses': { type: 'string' },
  'stall-after': { type: 'string' },
  'ignore-range': { type: 'boolean' },
  clear: { type: 'boolean' },
  source: { type: 'string' },
  devices: { type: 'string' },
  timeout: { type: 'string' },
  http: { type: 'boolean' },
  'url-ttl': { type: 'string' },
  'sign-key': { type: 'string' },
  'key-id': { type: 'string' },
  alg: { type: 'string' },
  signature: { type: 'string' },
  'user-defined': { type: 'string' },
} as const;

type ParsedOptions = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>['values'];
type OptionName = keyof typeof OPTIONS;

/** A mistake in what was typed: printed as one line naming the argument, then the command's usage once. */
class ArgumentError extends Error {
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
  }
}

const SERVE_PORT_OPTIONS = [
  ['mqtt-port', 'mqtt'],
  ['mqtts-port', 'mqtts'],
  ['wss-port', 'wss'],
  ['http-port', 'http'],
  ['https-port', 'https'],
] as const;
const SERVE_OPTIONS: readonly OptionName[] = ['json', 'data-dir', 'host', 'hostname', ...SERVE_PORT_OPTIONS.map(([option]) => option)];
const SERVE_USAGE =
  'tencent-iot-hub-sim [--data-dir <dir>] [--host <address>] [--mqtt-port <n>] [--mqtts-port <n>] [--wss-port <n>] [--http-port <n>] [--https-port <n>] [--json]';
const GENERAL_USAGE = 'tencent-iot-hub-sim [options] | tencent-iot-hub-sim <command> [--api <url>]   (--help lists them)';

interface CommandContext {
  client: ConsoleClient;
  /** The positional arguments after the command's name, their number checked. */
  args: string[];
  values: ParsedOptions;
  usage: string;
}

interface Command {
  /** Two words: the group and the action. */
  name: string;
  /** Placeholders of the positional arguments, e.g. `<productId>`; an optional last one is `[<productId>]`. */
  args: string[];
  /** The options besides --api it takes, as the usage shows them. */
  options?: string;
  optionNames?: OptionName[];
  /** What it does, for --help. */
  summary?: string;
  /** Console fields named in the console's refusals, and the options that set them. */
  fieldOptions?: Record<string, string>;
  run(context: CommandContext): Promise<void>;
}

/**
 * A path as the person typed it, from the folder they typed it in: `npm run sim -- …` runs in the
 * package's folder, and npm says in INIT_CWD where it was called from.
 */
function fromCallersFolder(file: string): string {
  const callersFolder = process.env.npm_lifecycle_event ? process.env.INIT_CWD : undefined;
  return path.resolve(callersFolder ?? process.cwd(), file);
}

function print(value: unknown): void {
  process.stdout.write(typeof value === 'string' ? value : JSON.stringify(value, null, 2) + '\n');
}

function usageOf(command: Command): string {
  return ['tencent-iot-hub-sim', command.name, ...command.args, command.options ?? ''].filter((part) => part !== '').join(' ');
}

function integerOption(values: ParsedOptions, name: OptionName, usage: string): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  if (typeof text !== 'string' || !/^-?\d+$/.test(text)) throw new ArgumentError(`--${name} "${String(text)}" is not a whole number`, usage);
  return Number(text);
}

function listOption(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/** Checks the firmware file before anything is sent, so that its problem is said in its own words. */
/** The user_defined and signature options of an upload. */
async function uploadSigningOf(values: ParsedOptions, usage: string): Promise<Omit<FirmwareUploadRequest, 'contentLength' | 'replace'>> {
  const options: Omit<FirmwareUploadRequest, 'contentLength' | 'replace'> = {};
  if (values['user-defined'] !== undefined) options.userDefined = values['user-defined'];
  const signKey = values['sign-key'];
  const signature = values.signature;
  if (signKey === undefined && signature === undefined) {
    if (values['key-id'] !== undefined || values.alg !== undefined) throw new ArgumentError('--key-id and --alg go with --sign-key or --signature', usage);
    return options;
  }
  if (signKey !== undefined && signature !== undefined) throw new ArgumentError('give --sign-key or --signature, not both', usage);
  const keyId = values['key-id'];
  if (!keyId) throw new ArgumentError('--key-id is missing: a signature names its key', usage);
  const alg = values.alg ?? 'ed25519';
  if (!(SIGNATURE_ALGORITHMS as readonly string[]).includes(alg)) throw new ArgumentError(`--alg must be one of ${SIGNATURE_ALGORITHMS.join(', ')}`, usage);
  if (signature !== undefined) {
    options.signature = { alg: alg as SignatureAlgorithm, sig: signature, keyId };
    return options;
  }
  let privateKeyPem: string;
  try {
    privateKeyPem = await fs.readFile(fromCallersFolder(signKey as string), 'utf8');
  } catch (error) {
    throw new ArgumentError(`--sign-key ${signKey}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, usage);
  }
  options.signing = { privateKeyPem, keyId, alg: alg as SignatureAlgorithm };
  return options;
}

async function checkFirmwareFile(file: string, usage: string): Promise<void> {
  const named = `firmware file ${file}`;
  let size: number;
  try {
    const stat = await fs.stat(fromCallersFolder(file));
    if (!stat.isFile()) throw new ArgumentError(`${named} is not a file`, usage);
    size = stat.size;
    const handle = await fs.open(fromCallersFolder(file), 'r');
    await handle.close();
  } catch (error) {
    if (error instanceof ArgumentError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ArgumentError(`${named} does not exist`, usage);
    throw new ArgumentError(`${named} cannot be read (${code === 'EACCES' ? 'permission denied' : (code ?? (error as Error).message)})`, usage);
  }
  if (size === 0) throw new ArgumentError(`${named} is empty`, usage);
}

const COMMANDS: Command[] = [
  {
    name: 'device create',
    args: ['<productId>', '<deviceName>'],
    options: '[--cert] [--gateway] [--for-stand-in]',
    optionNames: ['cert', 'gateway', 'for-stand-in'],
    summary:
      "create a device (--cert: certificate authentication, --gateway: a gateway) and print its device_info.json; --for-stand-in adds this stand-in's host, port and CA, for one paste into a tencent-iot-device node",
    async run({ client, args: [productId, deviceName], values }) {
      // Asked first, so that a failure leaves no device created without its device_info.json printed.
      const endpoint = values['for-stand-in'] ? await client.deviceEndpoint() : undefined;
      const info = await client.createDevice(productId, deviceName, values.cert ? 'cert' : 'key', values.gateway ? 'gateway' : 'device');
      print(endpoint ? { ...info, stand_in: endpoint } : info);
    },
  },
  {
    name: 'device show',
    args: ['<productId>', '<deviceName>'],
    summary: 'online state, version, OTA status and history',
    run: async ({ client, args: [productId, deviceName] }) => print(await client.getDevice(productId, deviceName)),
  },
  {
    name: 'device list',
    args: ['[<productId>]'],
    summary: 'every device (of one product) with its online state and version',
    run: async ({ client, args: [productId] }) => print(await client.listDevices(productId)),
  },
  {
    name: 'device delete',
    args: ['<productId>', '<deviceName>'],
    summary: 'delete a device; it is disconnected (a sub-device on its gateway) and its bindings go',
    run: async ({ client, args: [productId, deviceName] }) => print(await client.deleteDevice(productId, deviceName)),
  },
  {
    name: 'gateway bind',
    args: ['<gwProductId>', '<gwDeviceName>', '<subProductId>', '<subDeviceName>'],
    summary: 'bind a device to a gateway as its sub-device',
    run: async ({ client, args: [productId, deviceName, subProductId, subDeviceName] }) =>
      print(await client.bindSubDevice({ productId, deviceName }, { productId: subProductId, deviceName: subDeviceName })),
  },
  {
    name: 'gateway unbind',
    args: ['<gwProductId>', '<gwDeviceName>', '<subProductId>', '<subDeviceName>'],
    run: async ({ client, args: [productId, deviceName, subProductId, subDeviceName] }) =>
      print(await client.unbindSubDevice({ productId, deviceName }, { productId: subProductId, deviceName: subDeviceName })),
  },
  {
    name: 'gateway unbind-all',
    args: ['<gwProductId>', '<gwDeviceName>'],
    run: async ({ client, args: [productId, deviceName] }) => print({ unbound: await client.unbindAllSubDevices({ productId, deviceName }) }),
  },
  {
    name: 'gateway list',
    args: ['<gwProductId>', '<gwDeviceName>'],
    summary: "the gateway's sub-devices and their online state",
    run: async ({ client, args: [productId, deviceName] }) => print(await client.listSubDevices({ productId, deviceName })),
  },
  {
    name: 'firmware upload',
    args: ['<productId>', '<version>', '<file>'],
    options: '[--replace] [--user-defined <json>] [--sign-key <private.pem> --key-id <id> [--alg <alg>]] [--signature <base64> --key-id <id> [--alg <alg>]]',
    optionNames: ['replace', 'user-defined', 'sign-key', 'key-id', 'alg', 'signature'],
    summary:
      "upload a firmware file; other content under an uploaded version needs --replace; --sign-key or --signature puts a signature into the update commands' user_defined",
    async run({ client, args: [productId, version, file], values, usage }) {
      await checkFirmwareFile(file, usage);
      const signing = await uploadSigningOf(values, usage);
      try {
        print(await client.uploadFirmwareFile(productId, version, fromCallersFolder(file), { replace: values.replace === true, ...signing }));
      } catch (error) {
        if (error instanceof ConsoleApiError && error.status === 409) throw new ConsoleApiError(409, `${error.message}; give --replace to replace it`);
        throw error;
      }
    },
  },
  {
    name: 'firmware list',
    args: ['[<productId>]'],
    summary: 'the uploaded firmware (of one product): version, md5, size, requests served',
    async run({ client, args: [productId] }) {
      const records = await client.listFirmware(productId);
      print(
        records.map((record) => ({
          productId: record.productId,
          version: record.version,
          md5sum: record.md5sum,
          file_size: record.file_size,
          uploadedAt: record.uploadedAt,
          requestsServed: record.served.requestCount,
        })),
      );
    },
  },
  {
    name: 'firmware show',
    args: ['<productId>', '<version>'],
    summary: 'record with served statistics',
    run: async ({ client, args: [productId, version] }) => print(await client.getFirmware(productId, version)),
  },
  {
    name: 'firmware delete',
    args: ['<productId>', '<version>'],
    async run({ client, args: [productId, version] }) {
      await client.deleteFirmware(productId, version);
      print({ productId, version, deleted: true });
    },
  },
  {
    name: 'firmware faults',
    args: ['<productId>', '<version>'],
    options: '[--throttle <bytes/s>] [--close-after <bytes>] [--close-responses <n>] [--stall-after <bytes>] [--ignore-range] [--clear]',
    optionNames: ['throttle', 'close-after', 'close-responses', 'stall-after', 'ignore-range', 'clear'],
    fieldOptions: { throttleBytesPerSecond: '--throttle', closeAfterBytes: '--close-after', closeAfterResponses: '--close-responses', stallAfterBytes: '--stall-after' },
    async run({ client, args: [productId, version], values, usage }) {
      const faults: FirmwareFaults = {};
      if (!values.clear) {
        faults.throttleBytesPerSecond = integerOption(values, 'throttle', usage);
        faults.closeAfterBytes = integerOption(values, 'close-after', usage);
        faults.closeAfterResponses = integerOption(values, 'close-responses', usage);
        faults.stallAfterBytes = integerOption(values, 'stall-after', usage);
        if (values['ignore-range']) faults.ignoreRange = true;
        for (const key of Object.keys(faults) as (keyof FirmwareFaults)[]) if (faults[key] === undefined) delete faults[key];
        if (Object.keys(faults).length === 0) throw new ArgumentError('give at least one of --throttle, --close-after, --stall-after, --ignore-range, or --clear', usage);
      }
      const record = await client.setFirmwareFaults(productId, version, faults);
      print({ productId, version, faults: record.faults });
    },
  },
  {
    name: 'update start',
    args: ['<productId>', '<version>'],
    options: '[--source v1,v2] [--devices a,b] [--timeout <s>] [--http] [--url-ttl <s>]',
    optionNames: ['source', 'devices', 'timeout', 'http', 'url-ttl'],
    fieldOptions: { timeoutSeconds: '--timeout', urlTtlSeconds: '--url-ttl', sourceVersions: '--source', deviceNames: '--devices' },
    async run({ client, args: [productId, version], values, usage }) {
      const request: UpdateRequest = { productId, version };
      const sourceVersions = listOption(values.source);
      const deviceNames = listOption(values.devices);
      if (sourceVersions) request.sourceVersions = sourceVersions;
      if (deviceNames) request.deviceNames = deviceNames;
      const timeoutSeconds = integerOption(values, 'timeout', usage);
      if (timeoutSeconds !== undefined) request.timeoutSeconds = timeoutSeconds;
      const urlTtlSeconds = integerOption(values, 'url-ttl', usage);
      if (urlTtlSeconds !== undefined) request.urlTtlSeconds = urlTtlSeconds;
      if (values.http) request.urlScheme = 'http';
      print(await client.startUpdate(request));
    },
  },
  {
    name: 'task show',
    args: ['<taskId>'],
    run: async ({ client, args: [taskId] }) => print(await client.getTask(taskId)),
  },
];

/** Words laid into lines of at most `width` characters, every line after the first indented by `indent`. */
function wrap(text: string, width: number, indent: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = ' '.repeat(indent) + word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

const HELP_WIDTH = 110;
const SUMMARY_COLUMN = 52;

function commandLines(): string {
  const lines: string[] = [];
  for (const command of COMMANDS) {
    const usage = wrap(usageOf(command).slice('tencent-iot-hub-sim '.length), HELP_WIDTH - 2, 2 + command.name.length).map((text) => `  ${text}`);
    if (command.summary) {
      const last = usage[usage.length - 1];
      const summary = wrap(command.summary, HELP_WIDTH - SUMMARY_COLUMN, 0).map((text) => ' '.repeat(SUMMARY_COLUMN) + text);
      if (last.length < SUMMARY_COLUMN - 1) summary[0] = last.padEnd(SUMMARY_COLUMN) + summary[0].trimStart();
      lines.push(...(last.length < SUMMARY_COLUMN - 1 ? usage.slice(0, -1) : usage), ...summary);
    } else {
      lines.push(...usage);
    }
  }
  return lines.join('\n');
}

export const USAGE = `Usage: tencent-iot-hub-sim [options]                   start the local IoT Hub stand-in
       tencent-iot-hub-sim <command> [--api <url>]       talk to a running one

From any folder: ${NPX_COMMAND} [options | <command>]

Start options:
  --data-dir <dir>      where devices, certificates, firmware and OTA state live (default ./.sim-data)
  --host <address>      address to bind (default 127.0.0.1)
  --hostname <name>     extra name for the TLS certificate (repeatable)
  --mqtt-port <n>       plain MQTT (default ${DEFAULT_CLI_PORTS.mqtt}; 0 = any free port)
  --mqtts-port <n>      MQTT over TLS (default ${DEFAULT_CLI_PORTS.mqtts})
  --wss-port <n>        MQTT over WebSocket/TLS, path /mqtt (default ${DEFAULT_CLI_PORTS.wss})
  --http-port <n>       console API and plain HTTP firmware downloads (default ${DEFAULT_CLI_PORTS.http})
  --https-port <n>      HTTPS firmware downloads (default ${DEFAULT_CLI_PORTS.https})
  --json                print one line of JSON with every address once listening

Commands (--api <url> is the console of a running stand-in: default $${API_ENVIRONMENT_VARIABLE}, else ${DEFAULT_API}):
${commandLines()}

  -h, --help            this text

Exit codes: 0 done, 1 the stand-in refused or could not be reached, 2 an argument is wrong.
`;

/** The console address: --api, else $TENCENT_IOT_HUB_SIM_API, else the default; refused unless it is an http:// URL. */
function consoleAddress(values: ParsedOptions, usage: string): { url: string; from: string } {
  const fromEnvironment = process.env[API_ENVIRONMENT_VARIABLE];
  const [url, from] =
    values.api !== undefined ? [values.api, '--api'] : fromEnvironment ? [fromEnvironment, API_ENVIRONMENT_VARIABLE] : [DEFAULT_API, 'the default console address'];
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (!parsed || parsed.protocol !== 'http:' || !parsed.hostname || !['/', '/api', '/api/'].includes(parsed.pathname) || parsed.search || parsed.hash) {
    throw new ArgumentError(`${from} "${url}" is not the http:// address of a stand-in's console, such as ${DEFAULT_API}`, usage);
  }
  return { url, from };
}

function refusedOptions(values: ParsedOptions, allowed: readonly OptionName[], what: string, usage: string): void {
  for (const [name, value] of Object.entries(values)) {
    if (value === undefined || name === 'help' || allowed.includes(name as OptionName)) continue;
    throw new ArgumentError(`--${name} does not apply to ${what}`, usage);
  }
}

function portOption(values: ParsedOptions, name: OptionName, fallback: number): number {
  const text = values[name];
  if (text === undefined) return fallback;
  if (typeof text !== 'string' || !/^\d+$/.test(text) || Number(text) > 65535)
    throw new ArgumentError(`--${name} "${String(text)}" is not a port number (0 to 65535)`, SERVE_USAGE);
  return Number(text);
}

/** The one line that says which start option a failure to listen is about. */
function describeListenError(error: NodeJS.ErrnoException & { port?: number; address?: string }, ports: Record<string, number>, host: string): string | undefined {
  const option = Object.entries(ports).find(([, port]) => port === error.port)?.[0];
  if (error.code === 'EADDRINUSE' && option) return `--${option} ${error.port} is already in use; choose another with --${option} <n> (0: any free port)`;
  if (error.code === 'EACCES' && option) return `--${option} ${error.port} needs privileges this user does not have (ports below 1024); choose another`;
  if (error.code === 'EADDRNOTAVAIL' || error.code === 'EAFNOSUPPORT') return `--host ${host} is not an address of this machine`;
  return undefined;
}

async function serve(values: ParsedOptions): Promise<void> {
  refusedOptions(values, SERVE_OPTIONS, 'starting the stand-in (commands take it)', SERVE_USAGE);
  const ports: Record<string, number> = {};
  for (const [option, transport] of SERVE_PORT_OPTIONS) {
    const port = portOption(values, option, DEFAULT_CLI_PORTS[transport]);
    const taken = Object.entries(ports).find(([, other]) => other === port && port !== 0);
    if (taken) throw new ArgumentError(`--${option} ${port} is also --${taken[0]}; each needs its own port`, SERVE_USAGE);
    ports[option] = port;
  }
  const host = values.host ?? '127.0.0.1';
  const dataDir = fromCallersFolder(values['data-dir'] ?? './.sim-data');
  let simulator: IotHubSimulator;
  try {
    simulator = await IotHubSimulator.start({
      dataDir,
      host,
      hostnames: values.hostname ?? [],
      mqttPort: ports['mqtt-port'],
      mqttsPort: ports['mqtts-port'],
      wssPort: ports['wss-port'],
      httpPort: ports['http-port'],
      httpsPort: ports['https-port'],
    });
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { port?: number };
    const listening = describeListenError(failure, ports, host);
    if (listening) throw new ArgumentError(listening, SERVE_USAGE);
    if (failure.path !== undefined && ['EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EEXIST'].includes(failure.code ?? '')) {
      throw new ArgumentError(`--data-dir ${dataDir} cannot be used: ${failure.code} on ${failure.path}`, SERVE_USAGE);
    }
    throw error;
  }
  // Listening for the signals before the addresses are printed: whoever reads them may stop us at once.
  const stopRequested = new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  const addresses = simulator.addresses;
  if (values.json) {
    process.stdout.write(JSON.stringify(addresses) + '\n');
  } else {
    print(
      [
        'Tencent Cloud IoT Hub stand-in is running.',
        '',
        `  MQTT           ${addresses.mqtt}`,
        `  MQTT over TLS  ${addresses.mqtts}`,
        `  WebSocket/TLS  ${addresses.wss}`,
        `  Web console    ${addresses.consolePage}`,
        `  HTTP           ${addresses.http}   (console API under /api, firmware downloads)`,
        `  HTTPS          ${addresses.https}   (firmware downloads)`,
        `  CA certificate ${addresses.caCertPath}   (trust it for MQTT over TLS, WebSocket and HTTPS)`,
        `  Data directory ${addresses.dataDir}`,
        '',
        "In another terminal, create a device and save its device_info.json with this stand-in's address and CA,",
        "then paste it into a tencent-iot-device node's device_info box and click Fill in:",
        `  export ${API_ENVIRONMENT_VARIABLE}=${addresses.http}`,
        `  ${NPX_COMMAND} device create MYPRODUCT1 device1 --for-stand-in > device_info.json`,
        `  (or: curl -X POST ${addresses.console}/devices -d '{"productId":"MYPRODUCT1","deviceName":"device1"}')`,
        'Then upload firmware and start an update:',
        `  ${NPX_COMMAND} firmware upload MYPRODUCT1 1.0.1 ./firmware.bin`,
        `  ${NPX_COMMAND} update start MYPRODUCT1 1.0.1 --devices device1`,
        '',
        'Press Ctrl+C to stop.',
        '',
      ].join('\n'),
    );
  }
  await stopRequested;
  await simulator.close();
  if (!values.json) process.stderr.write('stopped\n');
}

function findCommand(positionals: string[]): Command {
  const [group, action] = positionals;
  const command = COMMANDS.find((candidate) => candidate.name === `${group} ${action ?? ''}`);
  if (command) return command;
  const inGroup = COMMANDS.filter((candidate) => candidate.name.startsWith(`${group} `)).map((candidate) => candidate.name.split(' ')[1]);
  if (inGroup.length > 0) {
    const what = action === undefined ? `"${group}" needs an action` : `unknown command "${group} ${action}"`;
    throw new ArgumentError(`${what}: ${inGroup.join(', ')}`, `tencent-iot-hub-sim ${group} <${inGroup.join('|')}> ...`);
  }
  throw new ArgumentError(`unknown command "${positionals.join(' ')}"`, GENERAL_USAGE);
}

async function runCommand(positionals: string[], values: ParsedOptions): Promise<void> {
  const command = findCommand(positionals);
  const usage = usageOf(command);
  const args = positionals.slice(2);
  const required = command.args.filter((arg) => !arg.startsWith('['));
  if (args.length < required.length) throw new ArgumentError(`${command.name}: ${required[args.length]} is missing`, usage);
  if (args.length > command.args.length) throw new ArgumentError(`${command.name}: unexpected argument "${args[command.args.length]}"`, usage);
  refusedOptions(values, ['api', ...(command.optionNames ?? [])], command.name, usage);
  const { url, from } = consoleAddress(values, usage);
  try {
    await command.run({ client: new ConsoleClient(url), args, values, usage });
  } catch (error) {
    if (error instanceof ConsoleApiError && error.status === 400 && command.fieldOptions) {
      // The console names its fields; the person typed options.
      let message = error.message;
      for (const [field, option] of Object.entries(command.fieldOptions)) message = message.split(field).join(option);
      if (message !== error.message) throw new ArgumentError(message, usage);
    }
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED') throw new Error(`no stand-in answers at ${url} (${from}); start one with "${NPX_COMMAND}" or point --api at it`, { cause: error });
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') throw new Error(`${from} ${url}: host ${new URL(url).hostname} not found`, { cause: error });
    throw error;
  }
}

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    let parsed: { values: ParsedOptions; positionals: string[] };
    try {
      parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
    } catch (error) {
      throw new ArgumentError((error as Error).message, GENERAL_USAGE);
    }
    const { values, positionals } = parsed;
    if (values.help) {
      print(USAGE);
      return 0;
    }
    if (positionals.length === 0) await serve(values);
    else await runCommand(positionals, values);
    return 0;
  } catch (error) {
    if (error instanceof ArgumentError) {
      process.stderr.write(`error: ${error.message}\nusage: ${error.usage}\n`);
      return 2;
    }
    if (error instanceof ConsoleApiError) {
      process.stderr.write(`error: ${error.message} (HTTP ${error.status})\n`);
      return 1;
    }
    process.stderr.write(`error: ${(error as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((exitCode) => {
    process.exitCode = exitCode;
  });
}
