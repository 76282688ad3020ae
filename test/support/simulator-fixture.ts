/**
 * The whole stand-in (IotHubSimulator) on ephemeral ports in a fresh temp dir, for any test that
 * needs a cloud. Typical use:
 *
 *   let sim: SimulatorFixture;
 *   beforeEach(async () => { sim = await startSimulator(); });
 *   afterEach(async () => { await sim.close(); });
 *   ...
 *   const { deviceSecret } = await sim.createDevice('PRODUCT1', 'dev1');
 *   const device = await sim.connectDevice('PRODUCT1', 'dev1');          // a TestOtaDevice on mqtts
 *   await sim.uploadFirmware('PRODUCT1', '2.0.0', bytes);
 *   await sim.restart();                                                  // same data dir and ports
 */
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { ConsoleClient } from '../../simulator/console-client';
import type { UploadedFirmware } from '../../simulator/console-api';
import { IotHubSimulator, type IotHubSimulatorOptions, type SimulatorAddresses } from '../../simulator/iot-hub-simulator';
import { TestOtaDevice, type TestDeviceOptions } from './test-ota-device';

export type MqttTransport = 'mqtt' | 'mqtts' | 'wss';

export interface CreatedTestDevice {
  productId: string;
  deviceName: string;
  /** The device_info.json the console handed out. */
  deviceInfo: Record<string, unknown>;
  /** Key devices. */
  deviceSecret?: string;
  /** Cert devices. */
  certPem?: string;
  keyPem?: string;
}

export interface SimulatorFixture {
  /** The running stand-in (a new object after restart()). */
  readonly simulator: IotHubSimulator;
  readonly addresses: SimulatorAddresses;
  readonly console: ConsoleClient;
  readonly dataDir: string;
  /** PEM of the stand-in's CA: trust it for mqtts, wss and https. */
  readonly caPem: string;
  /** Creates a device (or a gateway) through the console API; the credentials are remembered for connectDevice. */
  createDevice(productId: string, deviceName: string, authMode?: 'key' | 'cert', deviceType?: 'device' | 'gateway'): Promise<CreatedTestDevice>;
  /** Connects a created device (mqtts by default), subscribed to its update topic. */
  connectDevice(productId: string, deviceName: string, options?: TestDeviceOptions & { transport?: MqttTransport }): Promise<TestOtaDevice>;
  /** Uploads through the console, replacing an earlier upload of the version: tests reuse versions from case to case. */
  uploadFirmware(productId: string, version: string, bytes: Buffer): Promise<UploadedFirmware>;
  /** Stops the stand-in, keeping its data dir; start() brings it back on the same ports. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** stop() then start(). */
  restart(): Promise<void>;
  /** Closes every device connected through the fixture, stops the stand-in and removes its data dir. */
  close(): Promise<void>;
}

export async function startSimulator(options: Partial<IotHubSimulatorOptions> = {}): Promise<SimulatorFixture> {
  const dataDir = options.dataDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'iot-hub-sim-')));
  let simulator: IotHubSimulator | undefined = await IotHubSimulator.start({ ...options, dataDir });
  const ports = simulator.addresses.ports;
  const caPem = await fs.readFile(simulator.addresses.caCertPath, 'utf8');
  const devices = new Map<string, CreatedTestDevice>();
  const connected = new Set<TestOtaDevice>();
  const running = (): IotHubSimulator => {
    if (!simulator) throw new Error('the simulator is stopped');
    return simulator;
  };

  const fixture: SimulatorFixture = {
    get simulator() {
      return running();
    },
    get addresses() {
      return running().addresses;
    },
    get console() {
      return running().console;
    },
    dataDir,
    caPem,
    async createDevice(productId, deviceName, authMode = 'key', deviceType = 'device') {
      const deviceInfo = await running().console.createDevice(productId, deviceName, authMode, deviceType);
      const created: CreatedTestDevice = { productId, deviceName, deviceInfo };
      const keyInfo = deviceInfo.key_deviceinfo as { deviceSecret?: string } | undefined;
      const certInfo = deviceInfo.cert_deviceinfo as { devCertPem?: string; devPrivateKeyPem?: string } | undefined;
      if (keyInfo?.deviceSecret) created.deviceSecret = keyInfo.deviceSecret;
      if (certInfo?.devCertPem) created.certPem = certInfo.devCertPem;
      if (certInfo?.devPrivateKeyPem) created.keyPem = certInfo.devPrivateKeyPem;
      devices.set(`${productId}/${deviceName}`, created);
      return created;
    },
    async connectDevice(productId, deviceName, connectOptions = {}) {
      const created = devices.get(`${productId}/${deviceName}`);
      if (!created) throw new Error(`create ${productId}/${deviceName} with createDevice first`);
      const transport = connectOptions.transport ?? 'mqtts';
      const device = await TestOtaDevice.connect(running().addresses[transport], created, { ca: caPem, ...connectOptions });
      connected.add(device);
      device.client.once('close', () => connected.delete(device));
      return device;
    },
    uploadFirmware: (productId, version, bytes) => running().console.uploadFirmware(productId, version, bytes, { replace: true }),
    async stop() {
      const current = simulator;
      simulator = undefined;
      await current?.close();
    },
    async start() {
      if (simulator) return;
      simulator = await IotHubSimulator.start({
        ...options,
        dataDir,
        mqttPort: ports.mqtt,
        mqttsPort: ports.mqtts,
        wssPort: ports.wss,
        httpPort: ports.http,
        httpsPort: ports.https,
      });
    },
    async restart() {
      await fixture.stop();
      await fixture.start();
    },
    async close() {
      await Promise.all([...connected].map((device) => device.close()));
      await fixture.stop();
      if (!options.dataDir) await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
  return fixture;
}
