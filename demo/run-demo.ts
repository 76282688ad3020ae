/**
 * `npm run demo`: a whole over-the-air update on one machine. It starts the IoT Hub stand-in,
 * creates a device, runs the real Node-RED with the basic example flow bound to that device,
 * uploads firmware 1.0.0, starts an update and tells the story as the cloud sees it, restarting
 * Node-RED mid-download to show the checkpoint restart.
 *
 *   --once            exit 0 when the device reports 1.0.0 (exit 1 on failure or after --timeout)
 *   --gateway         the gateway story instead: a gateway updates the two devices behind it at once
 *                     over its one connection, one of them interrupted (SIGKILL) and resumed
 *   --signed          signed firmware: the device has a vendor key and requires signed firmware, the
 *                     stand-in signs the firmware at upload and sends the signature in user_defined
 *   --port N          the Node-RED editor's port (default 1880, or a free one if 1880 is taken)
 *   --size-mib N      firmware size (default 8)
 *   --rate-kib N      firmware server rate limit in KiB/s, so the download lasts a while (default 1024)
 *   --timeout S       give up after S seconds (default 300)
 */
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { generateFirmwareKeyPair } from '../lib/firmware-signature';
import { IotHubSimulator } from '../simulator/iot-hub-simulator';
import { describeReport, editorPort, mebibytes, pagesToOpen, say } from './demo-story';
import { loadExampleFlow } from './example-flow';
import { runGatewayDemo } from './gateway-demo';
import { NodeRedProcess } from './node-red-process';

const PRODUCT_ID = 'DEMOPRODUCT';
const DEVICE_NAME = 'gateway01';
const VENDOR_KEY_ID = 'vendor-2026';
const RUNNING_VERSION = '0.1.0';
const TARGET_VERSION = '1.0.0';
const RESTART_AT_PERCENT = 35;

export interface DemoOptions {
  once: boolean;
  /** The gateway story: two sub-devices updated at once through one connection. */
  gateway: boolean;
  /** The signed-firmware story: the stand-in signs at upload, the device checks with its vendor key. */
  signed: boolean;
  port?: number;
  sizeMiB: number;
  rateKiB: number;
  timeoutSeconds: number;
}

function parseArguments(argv: string[]): DemoOptions {
  const options: DemoOptions = { once: false, gateway: false, signed: false, sizeMiB: 8, rateKiB: 1024, timeoutSeconds: 300 };
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i];
    const value = () => {
      const next = Number(argv[++i]);
      if (!Number.isFinite(next) || next <= 0) throw new Error(`${argument} needs a positive number`);
      return next;
    };
    if (argument === '--once') options.once = true;
    else if (argument === '--gateway') options.gateway = true;
    else if (argument === '--signed') options.signed = true;
    else if (argument === '--port') options.port = value();
    else if (argument === '--size-mib') options.sizeMiB = value();
    else if (argument === '--rate-kib') options.rateKiB = value();
    else if (argument === '--timeout') options.timeoutSeconds = value();
    else if (argument === '--help' || argument === '-h') {
      console.log('usage: npm run demo -- [--once] [--gateway] [--signed] [--port N] [--size-mib N] [--rate-kib N] [--timeout S]');
      process.exit(0);
    } else throw new Error(`unknown option ${argument}`);
  }
  return options;
}

async function main(): Promise<number> {
  let options: DemoOptions;
  try {
    options = parseArguments(process.argv.slice(2));
  } catch (error) {
    console.error(`demo: ${(error as Error).message} (see --help)`);
    return 2;
  }
  if (options.gateway) return runGatewayDemo(options);
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'tencent-iot-ota-demo-'));
  const sim = await IotHubSimulator.start({ dataDir: path.join(workDir, 'stand-in') });
  say('stand-in', `IoT Hub stand-in up: ${sim.addresses.mqtts}, console API ${sim.addresses.console}`);
  let nodeRed: NodeRedProcess | undefined;
  let finished: (code: number) => void = () => undefined;
  const outcome = new Promise<number>((resolve) => (finished = resolve));

  const shutdown = async () => {
    await nodeRed?.stop().catch(() => undefined);
    await sim.close().catch(() => undefined);
    if (options.once) await fs.rm(workDir, { recursive: true, force: true }).catch(() => undefined);
  };
  process.once('SIGINT', () => finished(130));
  process.once('SIGTERM', () => finished(143));

  try {
    const deviceInfo = (await sim.console.createDevice(PRODUCT_ID, DEVICE_NAME)) as { key_deviceinfo: { deviceSecret: string } };
    say('console', `device ${PRODUCT_ID}/${DEVICE_NAME} created (key authentication)`);

    const firmware = randomBytes(Math.round(options.sizeMiB * 1024 * 1024));
    const vendorKeys = options.signed ? generateFirmwareKeyPair('ed25519') : undefined;
    const signing = vendorKeys ? { signing: { privateKeyPem: vendorKeys.privateKeyPem, keyId: VENDOR_KEY_ID } } : {};
    const uploaded = await sim.console.uploadFirmware(PRODUCT_ID, TARGET_VERSION, firmware, signing);
    say('console', `firmware ${TARGET_VERSION} uploaded: ${mebibytes(uploaded.file_size)}, md5 ${uploaded.md5sum}`);
    if (vendorKeys) say('console', `firmware signed with key ${VENDOR_KEY_ID} (ed25519); update commands carry user_defined ${uploaded.user_defined ?? ''}`);
    await sim.console.setFirmwareFaults(PRODUCT_ID, TARGET_VERSION, { throttleBytesPerSecond: options.rateKiB * 1024 });
    say('console', `firmware server limited to ${options.rateKiB} KiB/s so that the download can be interrupted`);

    const stateDir = path.join(workDir, 'device-state');
    const userDir = path.join(workDir, 'node-red');
    const port = await editorPort(options.port);
    const example = vendorKeys ? 'signed-firmware' : 'basic-ota-pipeline';
    const { flows, credentials } = await loadExampleFlow(example, {
      name: `${PRODUCT_ID}/${DEVICE_NAME} (stand-in)`,
      productId: PRODUCT_ID,
      deviceName: DEVICE_NAME,
      deviceSecret: deviceInfo.key_deviceinfo.deviceSecret,
      transport: 'mqtts',
      host: '127.0.0.1',
      port: sim.addresses.ports.mqtts,
      caCertPem: sim.certificateAuthority.caCertPem,
      stateDir,
      runningVersion: RUNNING_VERSION,
    });
    if (vendorKeys) {
      for (const node of flows) if (node.type === 'tencent-iot-device') node.firmwareKeys = [{ id: VENDOR_KEY_ID, pem: vendorKeys.publicKeyPem }];
      say('node-red', `device configured with firmware verification key ${VENDOR_KEY_ID}; signed firmware required`);
    }
    let doneAcknowledged = false;
    let versionReported = false;
    const startNodeRed = async () => {
      const runtime = await NodeRedProcess.start({ userDir, port, flows, credentials });
      runtime.on('line', (line) => {
        if (/\[(ota-[a-z-]+|tencent-iot-device)[:\]]/.test(line) || /\[(error|warn)\]/.test(line)) say('node-red', line.replace(/^.*? - /, ''));
        if (line.includes(`done for ${TARGET_VERSION} acknowledged`)) {
          doneAcknowledged = true;
          if (versionReported) finished(0);
        }
      });
      return runtime;
    };
    nodeRed = await startNodeRed();
    say(
      'node-red',
      `Node-RED started with the "${vendorKeys ? 'Signed firmware OTA pipeline' : 'Basic OTA pipeline'}" example: ${pagesToOpen(nodeRed.url, sim.addresses.consolePage)}`,
    );

    let updateStarted = false;
    let restarted = false;
    let firstDownloadAt: number | undefined;
    let lastDownloadAt: number | undefined;

    sim.broker.on('device-connect', (info) => {
      if (info.deviceName === DEVICE_NAME) say('cloud', `${DEVICE_NAME} connected over ${info.transport}`);
    });
    sim.broker.on('device-disconnect', (info) => {
      if (info.deviceName === DEVICE_NAME) say('cloud', `${DEVICE_NAME} disconnected`);
    });
    sim.otaService.on('command', ({ command }) => {
      say('cloud', `→ update_firmware ${command.version} (${mebibytes(command.file_size)}, md5 ${command.md5sum})`);
    });
    sim.otaService.on('report', ({ deviceName, entry }) => {
      if (deviceName !== DEVICE_NAME) return;
      say('cloud', describeReport(entry));
      if (entry.type === 'report_version' && entry.version === RUNNING_VERSION && !updateStarted) {
        updateStarted = true;
        sim.console
          .startUpdate({ productId: PRODUCT_ID, version: TARGET_VERSION, deviceNames: [DEVICE_NAME], timeoutSeconds: 900 })
          .then((task) => say('console', `update task ${task.taskId} started: ${DEVICE_NAME} ${RUNNING_VERSION} → ${TARGET_VERSION}`))
          .catch((error: Error) => {
            say('console', `could not start the update: ${error.message}`);
            finished(1);
          });
      }
      if (entry.state === 'downloading') {
        firstDownloadAt ??= Date.now();
        if (entry.percent === 100) lastDownloadAt = Date.now();
        if (!restarted && (entry.percent ?? 0) >= RESTART_AT_PERCENT) {
          restarted = true;
          void (async () => {
            say('demo', `killing Node-RED (SIGKILL) at ${entry.percent}% to show the checkpoint restart`);
            await nodeRed?.kill('SIGKILL');
            say('demo', 'Node-RED is gone; starting it again with the same user directory');
            nodeRed = await startNodeRed();
            say('node-red', 'Node-RED started again');
          })().catch((error: Error) => {
            say('demo', `restart failed: ${error.message}`);
            finished(1);
          });
        }
      }
      if (entry.state === 'fail') finished(1);
      if (entry.type === 'report_version' && entry.version === TARGET_VERSION) {
        say('cloud', `${DEVICE_NAME} now runs ${TARGET_VERSION}: update complete`);
        versionReported = true;
        // The flow logs the acknowledged done once the cloud has answered the version report too.
        setTimeout(() => finished(0), 5000);
        if (doneAcknowledged) finished(0);
      }
    });

    const timeout = setTimeout(() => {
      say('demo', `no complete update within ${options.timeoutSeconds} s`);
      finished(1);
    }, options.timeoutSeconds * 1000);
    const code = await outcome;
    clearTimeout(timeout);

    const served = (await sim.console.getFirmware(PRODUCT_ID, TARGET_VERSION)).served;
    const device = await sim.console.getDevice(PRODUCT_ID, DEVICE_NAME);
    console.log('');
    console.log('Firmware requests the server answered:');
    for (const request of served?.requests ?? []) {
      console.log(`  ${request.method} Range: ${request.range ?? '-'} → ${request.status}, ${mebibytes(request.bytes)}${request.fault ? ` (${request.fault})` : ''}`);
    }
    const reDownloaded = (served?.totalBytes ?? 0) - uploaded.file_size;
    console.log('');
    console.log(`Result:           ${device.ota.state ?? 'none'}, device version ${device.version}`);
    console.log(
      `Bytes served:     ${served?.totalBytes} for a ${uploaded.file_size}-byte file (${mebibytes(Math.max(0, reDownloaded))} downloaded twice after the restart)`,
    );
    if (firstDownloadAt && lastDownloadAt) {
      const seconds = (lastDownloadAt - firstDownloadAt) / 1000;
      console.log(
        `Download:         ${seconds.toFixed(1)} s from 0% to 100% including the restart, ${mebibytes(uploaded.file_size / seconds)}/s on average (server limit ${options.rateKiB} KiB/s)`,
      );
    }
    const onDisk = await fs.readFile(path.join(stateDir, 'running-version.json'), 'utf8').catch(() => '');
    console.log(`Running version:  ${onDisk ? (JSON.parse(onDisk) as { version: string }).version : 'not stored'} (stored in ${stateDir})`);
    console.log(`Firmware md5:     ${createHash('md5').update(firmware).digest('hex')}`);

    if (code === 0 && !options.once) {
      console.log('');
      console.log(`The demo keeps running: open ${nodeRed?.url} to explore the flow and ${sim.addresses.consolePage} to watch the stand-in. Press Ctrl-C to stop.`);
      console.log(`The stand-in's console API is at ${sim.addresses.console}; for another update:`);
      console.log(`  npm run sim -- firmware upload ${PRODUCT_ID} 1.1.0 <file> --api ${sim.addresses.http}`);
      console.log(`  npm run sim -- update start ${PRODUCT_ID} 1.1.0 --devices ${DEVICE_NAME} --api ${sim.addresses.http}`);
      await sim.console.setFirmwareFaults(PRODUCT_ID, TARGET_VERSION, {});
      const stopCode = await new Promise<number>((resolve) => {
        process.once('SIGINT', () => resolve(0));
        process.once('SIGTERM', () => resolve(0));
      });
      await shutdown();
      return stopCode;
    }
    await shutdown();
    return code;
  } catch (error) {
    console.error(`demo failed: ${(error as Error).message}`);
    if (nodeRed) console.error(nodeRed.output.split('\n').slice(-30).join('\n'));
    await shutdown();
    return 1;
  }
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    console.error(error);
    process.exit(1);
  },
);
