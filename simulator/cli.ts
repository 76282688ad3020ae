#!/usr/bin/env node
/**
 * tencent-iot-hub-sim: starts the local IoT Hub stand-in, or talks to a running one through its
 * console API (devices, gateway bindings, firmware, updates, tasks).
 */
import { parseArgs } from 'util';
import { ConsoleApiError, ConsoleClient } from './console-client';
import { IotHubSimulator } from './iot-hub-simulator';
import type { FirmwareFaults } from './firmware-store';
import type { UpdateRequest } from './ota-service';

export const DEFAULT_CLI_PORTS = { mqtt: 1883, mqtts: 8883, wss: 8443, http: 8080, https: 8444 } as const;
const DEFAULT_API = `http://127.0.0.1:${DEFAULT_CLI_PORTS.http}`;

export const USAGE = `Usage: tencent-iot-hub-sim [options]                   start the local IoT Hub stand-in
       tencent-iot-hub-sim <command> [--api <url>]       talk to a running one

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

Commands (--api <url> is the console of a running stand-in, default ${DEFAULT_API}):
  device create <productId> <deviceName> [--cert] [--gateway]
                                                    create a device (--gateway: a gateway), print its
                                                    device_info.json
  device show <productId> <deviceName>              online state, version, OTA status and history
  device list [<productId>]
  gateway bind <gwProductId> <gwDeviceName> <subProductId> <subDeviceName>
                                                    bind a device to a gateway as its sub-device
  gateway unbind <gwProductId> <gwDeviceName> <subProductId> <subDeviceName>
  gateway unbind-all <gwProductId> <gwDeviceName>
  gateway list <gwProductId> <gwDeviceName>         the gateway's sub-devices and their online state
  firmware upload <productId> <version> <file>
  firmware show <productId> <version>               record with served statistics
  firmware delete <productId> <version>
  firmware faults <productId> <version> [--throttle <bytes/s>] [--close-after <bytes>]
                  [--close-responses <n>] [--stall-after <bytes>] [--ignore-range] [--clear]
  update start <productId> <version> [--source v1,v2] [--devices a,b] [--timeout <s>]
               [--http] [--url-ttl <s>]
  task show <taskId>

  -h, --help            this text
`;

class UsageError extends Error {}

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
} as const;

type ParsedOptions = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>['values'];

function integerOption(values: ParsedOptions, name: keyof ParsedOptions, fallback?: number): number | undefined {
  const text = values[name];
  if (text === undefined) return fallback;
  if (typeof text !== 'string' || !/^-?\d+$/.test(text)) throw new UsageError(`--${name} must be an integer`);
  return Number(text);
}

function portOption(values: ParsedOptions, name: keyof ParsedOptions, fallback: number): number {
  const port = integerOption(values, name, fallback) ?? fallback;
  if (port < 0 || port > 65535) throw new UsageError(`--${name} must be from 0 to 65535`);
  return port;
}

function listOption(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function print(value: unknown): void {
  process.stdout.write(typeof value === 'string' ? value : JSON.stringify(value, null, 2) + '\n');
}

async function serve(values: ParsedOptions): Promise<void> {
  const simulator = await IotHubSimulator.start({
    dataDir: values['data-dir'] ?? './.sim-data',
    host: values.host ?? '127.0.0.1',
    hostnames: values.hostname ?? [],
    mqttPort: portOption(values, 'mqtt-port', DEFAULT_CLI_PORTS.mqtt),
    mqttsPort: portOption(values, 'mqtts-port', DEFAULT_CLI_PORTS.mqtts),
    wssPort: portOption(values, 'wss-port', DEFAULT_CLI_PORTS.wss),
    httpPort: portOption(values, 'http-port', DEFAULT_CLI_PORTS.http),
    httpsPort: portOption(values, 'https-port', DEFAULT_CLI_PORTS.https),
  });
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
    const api = addresses.http;
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
        'Create a device and save its device_info.json:',
        `  tencent-iot-hub-sim device create MYPRODUCT1 device1 --api ${api} > device_info.json`,
        `  curl -X POST ${addresses.console}/devices -d '{"productId":"MYPRODUCT1","deviceName":"device1"}'`,
        'Then upload firmware and start an update:',
        `  tencent-iot-hub-sim firmware upload MYPRODUCT1 1.0.1 ./firmware.bin --api ${api}`,
        `  tencent-iot-hub-sim update start MYPRODUCT1 1.0.1 --devices device1 --api ${api}`,
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

function need(positionals: string[], count: number, usage: string): string[] {
  if (positionals.length !== count) throw new UsageError(`usage: tencent-iot-hub-sim ${usage}`);
  return positionals;
}

async function runCommand(command: string[], values: ParsedOptions): Promise<void> {
  const client = new ConsoleClient(values.api ?? DEFAULT_API);
  const [group, action, ...rest] = command;
  switch (`${group} ${action ?? ''}`) {
    case 'device create': {
      const [productId, deviceName] = need(rest, 2, 'device create <productId> <deviceName> [--cert] [--gateway]');
      return print(await client.createDevice(productId, deviceName, values.cert ? 'cert' : 'key', values.gateway ? 'gateway' : 'device'));
    }
    case 'device show': {
      const [productId, deviceName] = need(rest, 2, 'device show <productId> <deviceName>');
      return print(await client.getDevice(productId, deviceName));
    }
    case 'device list':
      if (rest.length > 1) throw new UsageError('usage: tencent-iot-hub-sim device list [<productId>]');
      return print(await client.listDevices(rest[0]));
    case 'gateway bind': {
      const [productId, deviceName, subProductId, subDeviceName] = need(rest, 4, 'gateway bind <gwProductId> <gwDeviceName> <subProductId> <subDeviceName>');
      return print(await client.bindSubDevice({ productId, deviceName }, { productId: subProductId, deviceName: subDeviceName }));
    }
    case 'gateway unbind': {
      const [productId, deviceName, subProductId, subDeviceName] = need(rest, 4, 'gateway unbind <gwProductId> <gwDeviceName> <subProductId> <subDeviceName>');
      return print(await client.unbindSubDevice({ productId, deviceName }, { productId: subProductId, deviceName: subDeviceName }));
    }
    case 'gateway unbind-all': {
      const [productId, deviceName] = need(rest, 2, 'gateway unbind-all <gwProductId> <gwDeviceName>');
      return print({ unbound: await client.unbindAllSubDevices({ productId, deviceName }) });
    }
    case 'gateway list': {
      const [productId, deviceName] = need(rest, 2, 'gateway list <gwProductId> <gwDeviceName>');
      return print(await client.listSubDevices({ productId, deviceName }));
    }
    case 'firmware upload': {
      const [productId, version, file] = need(rest, 3, 'firmware upload <productId> <version> <file>');
      return print(await client.uploadFirmwareFile(productId, version, file));
    }
    case 'firmware show': {
      const [productId, version] = need(rest, 2, 'firmware show <productId> <version>');
      return print(await client.getFirmware(productId, version));
    }
    case 'firmware delete': {
      const [productId, version] = need(rest, 2, 'firmware delete <productId> <version>');
      await client.deleteFirmware(productId, version);
      return print({ productId, version, deleted: true });
    }
    case 'firmware faults': {
      const [productId, version] = need(rest, 2, 'firmware faults <productId> <version> [knobs] | --clear');
      const faults: FirmwareFaults = {};
      if (!values.clear) {
        faults.throttleBytesPerSecond = integerOption(values, 'throttle');
        faults.closeAfterBytes = integerOption(values, 'close-after');
        faults.closeAfterResponses = integerOption(values, 'close-responses');
        faults.stallAfterBytes = integerOption(values, 'stall-after');
        if (values['ignore-range']) faults.ignoreRange = true;
        for (const key of Object.keys(faults) as (keyof FirmwareFaults)[]) if (faults[key] === undefined) delete faults[key];
        if (Object.keys(faults).length === 0) {
          throw new UsageError('give at least one of --throttle, --close-after, --stall-after, --ignore-range, or --clear');
        }
      }
      const record = await client.setFirmwareFaults(productId, version, faults);
      return print({ productId, version, faults: record.faults });
    }
    case 'update start': {
      const [productId, version] = need(rest, 2, 'update start <productId> <version> [--source v1,v2] [--devices a,b] [--timeout s]');
      const request: UpdateRequest = { productId, version };
      const sourceVersions = listOption(values.source);
      const deviceNames = listOption(values.devices);
      if (sourceVersions) request.sourceVersions = sourceVersions;
      if (deviceNames) request.deviceNames = deviceNames;
      const timeoutSeconds = integerOption(values, 'timeout');
      if (timeoutSeconds !== undefined) request.timeoutSeconds = timeoutSeconds;
      const urlTtlSeconds = integerOption(values, 'url-ttl');
      if (urlTtlSeconds !== undefined) request.urlTtlSeconds = urlTtlSeconds;
      if (values.http) request.urlScheme = 'http';
      return print(await client.startUpdate(request));
    }
    case 'task show': {
      const [taskId] = need(rest, 1, 'task show <taskId>');
      return print(await client.getTask(taskId));
    }
    default:
      throw new UsageError(`unknown command "${command.join(' ')}"; see --help`);
  }
}

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
    if (values.help) {
      print(USAGE);
      return 0;
    }
    if (positionals.length === 0) await serve(values);
    else await runCommand(positionals, values);
    return 0;
  } catch (error) {
    if (error instanceof UsageError || (error as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${(error as Error).message}\n(see tencent-iot-hub-sim --help)\n`);
      return 2;
    }
    if (error instanceof ConsoleApiError) {
      process.stderr.write(`error: ${error.message} (HTTP ${error.status})\n`);
      return 1;
    }
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED') {
      process.stderr.write(`error: no stand-in answers at ${argv.includes('--api') ? 'the --api address' : DEFAULT_API}\n`);
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
