/**
 * The console's push channel, GET /api/events: server-sent events (text/event-stream) of what changes
 * on the stand-in, so that the web console follows it without polling. Each event is one JSON object:
 *
 *   device           {productId, deviceName, online}      connected or disconnected (a sub-device: online through its gateway)
 *   device-created   {productId, deviceName, authMode, deviceType, createdAt}
 *   report           {productId, deviceName, entry}       a device report as its history records it
 *   task             the UpdateTask just made
 *   status           {productId, deviceName, taskId, status}  a device's status in a task changed
 *   firmware         the firmware's record, served statistics as totals only (uploaded, or its faults changed)
 *   firmware-removed {productId, version}
 *   served           {productId, version, request, totalBytes, requestCount}  the firmware server answered a request
 *
 * A comment line every heartbeat keeps an idle connection open through proxies and tells a client the
 * server is still there; a client that goes away is forgotten at once, and one that stops reading is dropped.
 */
import type * as http from 'http';
import type { DeviceIdentity } from '../lib/ota-topics';
import type { DeviceAuthMode, DeviceRegistry, DeviceType, RegisteredDevice } from './device-registry';
import type { FirmwareRecord, FirmwareStore, ServedEvent } from './firmware-store';
import type { DeviceConnectInfo, SimulatedMqttBroker, SubDeviceState } from './mqtt-broker';
import type { CloudOtaService, OtaHistoryEntry, TaskDeviceStatus, UpdateTask } from './ota-service';

/** A firmware as the push channel announces it: its served statistics without the list of requests. */
export interface FirmwareSummary extends Omit<FirmwareRecord, 'served'> {
  served: { totalBytes: number; requestCount: number };
}

/** A created device as the push channel announces it (never its secret). */
export interface CreatedDeviceEvent extends DeviceIdentity {
  authMode: DeviceAuthMode;
  deviceType: DeviceType;
  createdAt: string;
}

/** Each event name and its data. */
export interface ConsoleEvents {
  device: DeviceIdentity & { online: boolean };
  'device-created': CreatedDeviceEvent;
  'device-removed': DeviceIdentity;
  report: DeviceIdentity & { entry: OtaHistoryEntry };
  task: UpdateTask;
  status: DeviceIdentity & { taskId: string; status: TaskDeviceStatus };
  firmware: FirmwareSummary;
  'firmware-removed': { productId: string; version: string };
  served: ServedEvent;
}

export interface ConsoleEventStreamOptions {
  broker: SimulatedMqttBroker;
  registry: DeviceRegistry;
  otaService: CloudOtaService;
  firmwareStore: FirmwareStore;
  /** Time between two heartbeat comments (default 15 s). */
  heartbeatMs?: number;
  /** A client with more than this many bytes not yet sent is dropped: it reconnects and loads afresh (default 1 MiB). */
  maxBufferedBytes?: number;
}

export const DEFAULT_HEARTBEAT_MS = 15_000;
/** How long a browser waits before it reconnects (the `retry:` field). */
const RECONNECT_DELAY_MS = 2000;

function summaryOf(record: FirmwareRecord): FirmwareSummary {
  return { ...record, served: { totalBytes: record.served.totalBytes, requestCount: record.served.requestCount } };
}

export class ConsoleEventStream {
  private readonly broker: SimulatedMqttBroker;
  private readonly registry: DeviceRegistry;
  private readonly otaService: CloudOtaService;
  private readonly firmwareStore: FirmwareStore;
  private readonly heartbeatMs: number;
  private readonly maxBufferedBytes: number;
  private readonly clients = new Set<http.ServerResponse>();
  private heartbeat?: NodeJS.Timeout;
  private closed = false;

  private readonly onConnect = (info: DeviceConnectInfo) => this.send('device', { productId: info.productId, deviceName: info.deviceName, online: true });
  private readonly onDisconnect = (device: DeviceIdentity) => this.send('device', { productId: device.productId, deviceName: device.deviceName, online: false });
  private readonly onSubDeviceState = (state: SubDeviceState) => this.send('device', { productId: state.productId, deviceName: state.deviceName, online: state.online });
  private readonly onCreated = (device: RegisteredDevice) =>
    this.send('device-created', {
      productId: device.productId,
      deviceName: device.deviceName,
      authMode: device.authMode,
      deviceType: device.deviceType,
      createdAt: device.createdAt,
    });
  private readonly onRemoved = (device: RegisteredDevice) => this.send('device-removed', { productId: device.productId, deviceName: device.deviceName });
  private readonly onReport = (report: ConsoleEvents['report']) => this.send('report', report);
  private readonly onTask = (task: UpdateTask) => this.send('task', task);
  private readonly onStatus = (status: ConsoleEvents['status']) => this.send('status', status);
  private readonly onFirmwareChange = (record: FirmwareRecord) => this.send('firmware', summaryOf(record));
  private readonly onFirmwareRemoved = (firmware: ConsoleEvents['firmware-removed']) => this.send('firmware-removed', firmware);
  private readonly onServed = (served: ServedEvent) => this.send('served', served);

  constructor(options: ConsoleEventStreamOptions) {
    this.broker = options.broker;
    this.registry = options.registry;
    this.otaService = options.otaService;
    this.firmwareStore = options.firmwareStore;
    this.heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.maxBufferedBytes = options.maxBufferedBytes ?? 1024 * 1024;
    this.broker.on('device-connect', this.onConnect);
    this.broker.on('device-disconnect', this.onDisconnect);
    this.broker.on('sub-device-state', this.onSubDeviceState);
    this.registry.on('created', this.onCreated);
    this.registry.on('removed', this.onRemoved);
    this.otaService.on('report', this.onReport);
    this.otaService.on('task', this.onTask);
    this.otaService.on('status', this.onStatus);
    this.firmwareStore.on('change', this.onFirmwareChange);
    this.firmwareStore.on('removed', this.onFirmwareRemoved);
    this.firmwareStore.on('served', this.onServed);
  }

  /** Clients connected now. */
  get clientCount(): number {
    return this.clients.size;
  }

  /** Answers GET /api/events: the response stays open and carries every event from now on. */
  open(request: http.IncomingMessage, response: http.ServerResponse): void {
    if (this.closed) {
      response.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8' });
      response.end('the stand-in is stopping\n');
      return;
    }
    response.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    request.socket.setNoDelay(true);
    response.write(`retry: ${RECONNECT_DELAY_MS}\n: connected\n\n`);
    this.clients.add(response);
    response.once('close', () => this.forget(response));
    this.heartbeat ??= setInterval(() => this.write(': heartbeat\n\n'), this.heartbeatMs);
    this.heartbeat.unref();
  }

  private send<Name extends keyof ConsoleEvents>(name: Name, data: ConsoleEvents[Name]): void {
    if (this.clients.size === 0) return;
    this.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  private write(frame: string): void {
    for (const client of this.clients) {
      if (client.writableLength > this.maxBufferedBytes) {
        client.destroy();
        this.forget(client);
        continue;
      }
      client.write(frame);
    }
  }

  private forget(client: http.ServerResponse): void {
    this.clients.delete(client);
    if (this.clients.size === 0 && this.heartbeat) {
      clearInterval(this.heartbeat);
      this.heartbeat = undefined;
    }
  }

  /** Stops listening and ends every open stream. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.broker.off('device-connect', this.onConnect);
    this.broker.off('device-disconnect', this.onDisconnect);
    this.broker.off('sub-device-state', this.onSubDeviceState);
    this.registry.off('created', this.onCreated);
    this.registry.off('removed', this.onRemoved);
    this.otaService.off('report', this.onReport);
    this.otaService.off('task', this.onTask);
    this.otaService.off('status', this.onStatus);
    this.firmwareStore.off('change', this.onFirmwareChange);
    this.firmwareStore.off('removed', this.onFirmwareRemoved);
    this.firmwareStore.off('served', this.onServed);
    for (const client of [...this.clients]) {
      client.end();
      this.forget(client);
    }
  }
}
