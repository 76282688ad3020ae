/**
 * `npm run demo -- --gateway`: the gateway story. A gateway (this Node-RED) updates the two devices
 * behind it at once over its one connection, with the gateway example flow; half-way through one
 * download Node-RED is killed (SIGKILL) and started again, and the gateway brings its sub-devices
 * online again and resumes the download from its checkpoint. The "burn" copies each file to a
 * folder that stands for the sub-device's MCU.
 */
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { IotHubSimulator } from '../simulator/iot-hub-simulator';
import { describeReport, editorPort, mebibytes, pagesToOpen, say } from './demo-story';
import { loadExampleFlow } from './example-flow';
import { NodeRedProcess } from './node-red-process';
import type { DemoOptions } from './run-demo';

const GATEWAY = { productId: 'GWPRODUCT', deviceName: 'pi-gateway' };
const SUB_PRODUCT = 'SENSORS';
const SUB_DEVICES = ['sensor1', 'sensor2'];
const RUNNING_VERSION = '0.1.0';
const TARGET_VERSION = '1.0.0';
const RESTART_AT_PERCENT = 35;

export async function runGatewayDemo(options: DemoOptions): Promise<number> {
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'tencent-iot-ota-gateway-demo-'));
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
    const gatewayInfo = (await sim.console.createDevice(GATEWAY.productId, GATEWAY.deviceName, 'key', 'gateway')) as { key_deviceinfo: { deviceSecret: string } };
    say('console', `gateway ${GATEWAY.productId}/${GATEWAY.deviceName} created`);
    for (const deviceName of SUB_DEVICES) {
      await sim.console.createDevice(SUB_PRODUCT, deviceName);
      await sim.console.bindSubDevice(GATEWAY, { productId: SUB_PRODUCT, deviceName });
      say('console', `sub-device ${SUB_PRODUCT}/${deviceName} created and bound to the gateway`);
    }
    const size = Math.round(options.sizeMiB * 512 * 1024);
    const firmware = randomBytes(size);
    const uploaded = await sim.console.uploadFirmware(SUB_PRODUCT, TARGET_VERSION, firmware);
    say('console', `firmware ${TARGET_VERSION} for ${SUB_PRODUCT} uploaded: ${mebibytes(uploaded.file_size)}, md5 ${uploaded.md5sum}`);
    await sim.console.setFirmwareFaults(SUB_PRODUCT, TARGET_VERSION, { throttleBytesPerSecond: options.rateKiB * 1024 });
    say('console', `firmware server limited to ${options.rateKiB} KiB/s per download`);

    const homeDir = path.join(workDir, 'home');
    await fs.mkdir(homeDir, { recursive: true });
    const userDir = path.join(workDir, 'node-red');
    const port = await editorPort(options.port);
    const { flows, credentials } = await loadExampleFlow('gateway-subdevice-ota', {
      name: `${GATEWAY.productId}/${GATEWAY.deviceName} (stand-in)`,
      ...GATEWAY,
      deviceSecret: gatewayInfo.key_deviceinfo.deviceSecret,
      transport: 'mqtts',
      host: '127.0.0.1',
      port: sim.addresses.ports.mqtts,
      caCertPem: sim.certificateAuthority.caCertPem,
      stateDir: path.join(workDir, 'gateway-state'),
      runningVersion: RUNNING_VERSION,
      subDevices: SUB_DEVICES.map((deviceName) => ({
        productId: SUB_PRODUCT,
        deviceName,
        stateDir: path.join(workDir, `${deviceName}-state`),
        runningVersion: RUNNING_VERSION,
      })),
    });
    const startNodeRed = async () => {
      const runtime = await NodeRedProcess.start({ userDir, port, flows, credentials, env: { HOME: homeDir } });
      runtime.on('line', (line) => {
        if (/\[(ota-[a-z-]+|tencent-iot-[a-z]+)[:\]]/.test(line) || /\[(error|warn)\]/.test(line)) say('node-red', line.replace(/^.*? - /, ''));
      });
      return runtime;
    };
    nodeRed = await startNodeRed();
    say('node-red', `Node-RED started with the "Gateway sub-device OTA" example: ${pagesToOpen(nodeRed.url, sim.addresses.consolePage)}`);

    let connects = 0;
    const reportedRunning = new Set<string>();
    const updated = new Set<string>();
    let updateStarted = false;
    let restarted = false;
    sim.broker.on('device-connect', (info) => {
      if (info.deviceName !== GATEWAY.deviceName) return;
      connects += 1;
      say('cloud', `${GATEWAY.deviceName} connected over ${info.transport} (CONNECT #${connects})`);
    });
    sim.broker.on('device-disconnect', (info) => {
      if (info.deviceName === GATEWAY.deviceName) say('cloud', `${GATEWAY.deviceName} disconnected`);
    });
    sim.otaService.on('command', ({ deviceName, command }) => {
      say('cloud', `→ ${deviceName}: update_firmware ${command.version} (${mebibytes(command.file_size)})`);
    });
    sim.otaService.on('report', ({ productId, deviceName, entry }) => {
      if (productId !== SUB_PRODUCT) return;
      say('cloud', `${deviceName} ${describeReport(entry)}`);
      if (entry.type === 'report_version' && entry.version === RUNNING_VERSION) reportedRunning.add(deviceName);
      if (!updateStarted && reportedRunning.size === SUB_DEVICES.length) {
        updateStarted = true;
        sim.console
          .startUpdate({ productId: SUB_PRODUCT, version: TARGET_VERSION, deviceNames: SUB_DEVICES, timeoutSeconds: 900 })
          .then((task) => say('console', `update task ${task.taskId} started: ${SUB_DEVICES.join(' and ')} ${RUNNING_VERSION} → ${TARGET_VERSION}`))
          .catch((error: Error) => {
            say('console', `could not start the update: ${error.message}`);
            finished(1);
          });
      }
      if (entry.state === 'downloading' && deviceName === SUB_DEVICES[0] && !restarted && (entry.percent ?? 0) >= RESTART_AT_PERCENT) {
        restarted = true;
        void (async () => {
          say('demo', `killing Node-RED (SIGKILL) at ${entry.percent}% of ${deviceName} to show the gateway coming back`);
          await nodeRed?.kill('SIGKILL');
          say('demo', 'Node-RED is gone; starting it again with the same user directory');
          nodeRed = await startNodeRed();
          say('node-red', 'Node-RED started again');
        })().catch((error: Error) => {
          say('demo', `restart failed: ${error.message}`);
          finished(1);
        });
      }
      if (entry.state === 'fail') finished(1);
      if (entry.type === 'report_version' && entry.version === TARGET_VERSION) {
        updated.add(deviceName);
        say('cloud', `${deviceName} now runs ${TARGET_VERSION}`);
        if (updated.size === SUB_DEVICES.length) setTimeout(() => finished(0), 1000);
      }
    });

    const timeout = setTimeout(() => {
      say('demo', `no complete update within ${options.timeoutSeconds} s`);
      finished(1);
    }, options.timeoutSeconds * 1000);
    let code = await outcome;
    clearTimeout(timeout);

    const served = (await sim.console.getFirmware(SUB_PRODUCT, TARGET_VERSION)).served;
    const expectedMd5 = createHash('md5').update(firmware).digest('hex');
    console.log('');
    console.log(`Gateway:          ${connects} CONNECT(s) for the gateway and both sub-devices (one per Node-RED start)`);
    console.log(`Bytes served:     ${served?.totalBytes} for 2 × ${uploaded.file_size} bytes`);
    for (const deviceName of SUB_DEVICES) {
      const device = await sim.console.getDevice(SUB_PRODUCT, deviceName);
      const installed = await fs.readFile(path.join(homeDir, 'mcu', deviceName, 'firmware.bin')).catch(() => undefined);
      const md5 = installed ? createHash('md5').update(installed).digest('hex') : undefined;
      if (md5 !== expectedMd5) code = code || 1;
      console.log(
        `${deviceName.padEnd(17)} ${device.ota.state ?? 'none'}, version ${device.version}; its MCU has ${md5 === expectedMd5 ? 'the verified file' : 'no matching file'}`,
      );
    }
    if (code === 0 && !options.once) {
      console.log('');
      console.log(`The demo keeps running: open ${nodeRed?.url} to explore the flow and ${sim.addresses.consolePage} to watch the stand-in. Press Ctrl-C to stop.`);
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
