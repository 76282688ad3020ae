/**
 * The whole local stand-in for Tencent Cloud IoT Hub: CA, device registry, MQTT broker (mqtt, mqtts,
 * wss), firmware server (http, https), cloud OTA service, gateway service, console API with its push channel
 * and the web console, over one data dir.
 * Closing and starting again over the same data dir and ports picks up where it stopped.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { CertificateAuthority } from './certificate-authority';
import { ConsoleApi } from './console-api';
import { ConsoleClient } from './console-client';
import { ConsoleEventStream } from './console-events';
import { ConsolePage } from './console-page';
import { DeviceRegistry } from './device-registry';
import { FirmwareServer } from './firmware-server';
import { FirmwareStore, type FirmwareStoreOptions } from './firmware-store';
import { GatewayBindings } from './gateway-bindings';
import { GatewayService } from './gateway-service';
import { SimulatedMqttBroker } from './mqtt-broker';
import { CloudOtaService } from './ota-service';

export interface IotHubSimulatorOptions {
  dataDir: string;
  /** Address every server binds to (default 127.0.0.1). */
  host?: string;
  /** 0 (the default for each) = ephemeral. */
  mqttPort?: number;
  mqttsPort?: number;
  wssPort?: number;
  httpPort?: number;
  httpsPort?: number;
  /** Extra names the TLS server certificate covers besides localhost, 127.0.0.1 and ::1. */
  hostnames?: string[];
  firmwareStore?: FirmwareStoreOptions;
  now?: () => number;
}

export interface SimulatorPorts {
  mqtt: number;
  mqtts: number;
  wss: number;
  http: number;
  https: number;
}

export interface SimulatorAddresses {
  host: string;
  /** mqtt://host:port */
  mqtt: string;
  /** mqtts://host:port */
  mqtts: string;
  /** wss://host:port/mqtt */
  wss: string;
  /** Plain HTTP firmware downloads and the console API. */
  http: string;
  /** HTTPS firmware downloads. */
  https: string;
  /** The console API's base URL (http://host:port/api). */
  console: string;
  /** The web console (http://host:port/). */
  consolePage: string;
  /** The PEM file of the CA to trust for mqtts, wss and https. */
  caCertPath: string;
  dataDir: string;
  ports: SimulatorPorts;
}

/** Closes what was started, last first, ignoring parts that fail to close. */
async function closeAll(closers: (() => Promise<void>)[]): Promise<void> {
  for (const close of [...closers].reverse()) {
    try {
      await close();
    } catch {
      // Keep closing the rest.
    }
  }
}

export class IotHubSimulator {
  private closing?: Promise<void>;

  private constructor(
    readonly addresses: SimulatorAddresses,
    readonly certificateAuthority: CertificateAuthority,
    readonly registry: DeviceRegistry,
    readonly broker: SimulatedMqttBroker,
    readonly firmwareStore: FirmwareStore,
    readonly firmwareServer: FirmwareServer,
    readonly otaService: CloudOtaService,
    readonly gatewayService: GatewayService,
    readonly console: ConsoleClient,
    private readonly closers: (() => Promise<void>)[],
  ) {}

  static async start(options: IotHubSimulatorOptions): Promise<IotHubSimulator> {
    const dataDir = path.resolve(options.dataDir);
    const host = options.host ?? '127.0.0.1';
    await fs.mkdir(dataDir, { recursive: true });
    const closers: (() => Promise<void>)[] = [];
    try {
      const certificateAuthority = await CertificateAuthority.loadOrCreate(dataDir, options.hostnames ?? []);
      const registry = await DeviceRegistry.open(dataDir);
      const bindings = await GatewayBindings.open(dataDir, options.now);
      const broker = new SimulatedMqttBroker({ registry, certificateAuthority, now: options.now });
      const firmwareStore = await FirmwareStore.open(dataDir, options.firmwareStore);
      closers.push(() => firmwareStore.close());
      const brokerAddresses = await broker.listen({
        host,
        mqttPort: options.mqttPort ?? 0,
        mqttsPort: options.mqttsPort ?? 0,
        wssPort: options.wssPort ?? 0,
      });
      closers.push(() => broker.close());
      const firmwareServer = await FirmwareServer.open({ store: firmwareStore, dataDir, serverCertificate: certificateAuthority.serverCertificate, now: options.now });
      const otaService = await CloudOtaService.open({ dataDir, broker, registry, firmwareStore, firmwareServer, now: options.now });
      closers.push(() => otaService.close());
      const gatewayService = new GatewayService({ broker, registry, bindings, now: options.now });
      closers.push(() => gatewayService.close());
      const events = new ConsoleEventStream({ broker, registry, otaService, firmwareStore });
      const consoleApi = new ConsoleApi({ registry, certificateAuthority, broker, firmwareStore, otaService, gatewayService, events });
      const consolePage = new ConsolePage();
      const firmwareAddresses = await firmwareServer.listen({
        host,
        httpPort: options.httpPort ?? 0,
        httpsPort: options.httpsPort ?? 0,
        apiHandler: (request, response) => consoleApi.handle(request, response),
        pageHandler: (request, response) => consolePage.handle(request, response),
      });
      closers.push(() => firmwareServer.close());
      // Ends the open event streams before the servers close.
      closers.push(async () => events.close());
      const addresses: SimulatorAddresses = {
        host,
        mqtt: brokerAddresses.mqtt.url,
        mqtts: brokerAddresses.mqtts.url,
        wss: brokerAddresses.wss.url,
        http: firmwareAddresses.http.url,
        https: firmwareAddresses.https.url,
        console: `${firmwareAddresses.http.url}/api`,
        consolePage: `${firmwareAddresses.http.url}/`,
        caCertPath: certificateAuthority.caCertPath,
        dataDir,
        ports: {
          mqtt: brokerAddresses.mqtt.port,
          mqtts: brokerAddresses.mqtts.port,
          wss: brokerAddresses.wss.port,
          http: firmwareAddresses.http.port,
          https: firmwareAddresses.https.port,
        },
      };
      const consoleClient = new ConsoleClient(addresses.console);
      return new IotHubSimulator(addresses, certificateAuthority, registry, broker, firmwareStore, firmwareServer, otaService, gatewayService, consoleClient, closers);
    } catch (error) {
      await closeAll(closers);
      throw error;
    }
  }

  /** Stops every server (ending open connections) and writes all state; the ports are free when it resolves. */
  close(): Promise<void> {
    this.closing ??= closeAll(this.closers);
    return this.closing;
  }
}
