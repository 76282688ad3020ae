/**
 * What the stand-in sees of one device, live: every OTA report the broker receives from it (as it
 * was on the wire, numbers still strings, with its QoS) and every update_firmware the cloud sends
 * it. Re-attached to the new stand-in objects after each restart of the stand-in.
 */
import { EventEmitter } from 'events';
import { parseOtaTopic, type DeviceIdentity } from '../lib/ota-topics';
import type { IotHubSimulator } from '../simulator/iot-hub-simulator';
import type { DevicePublish } from '../simulator/mqtt-broker';
import type { CloudOtaServiceEvents } from '../simulator/ota-service';

export interface WireReport {
  /** Milliseconds since the epoch, as the broker stamped it. */
  time: number;
  qos: 0 | 1;
  type: string;
  /** report_version: the version; report_progress: the target version. */
  version?: string;
  state?: string;
  percent?: string;
  resultCode?: string;
  resultMessage?: string;
}

export interface WireCommand {
  time: number;
  version: string;
  md5sum: string;
}

export interface WireObserverEvents {
  report: [WireReport];
  command: [WireCommand];
}

interface WirePayload {
  type?: unknown;
  report?: { version?: unknown; progress?: { state?: unknown; percent?: unknown; result_code?: unknown; result_msg?: unknown } };
}

const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

export function parseWireReport(publish: DevicePublish): WireReport {
  const report: WireReport = { time: publish.time.getTime(), qos: publish.qos, type: 'invalid' };
  let payload: WirePayload;
  try {
    payload = JSON.parse(publish.payload.toString('utf8')) as WirePayload;
  } catch {
    return report;
  }
  report.type = text(payload.type) ?? 'invalid';
  const version = text(payload.report?.version);
  if (version !== undefined) report.version = version;
  const progress = payload.report?.progress;
  if (progress) {
    const state = text(progress.state);
    const percent = text(progress.percent);
    const resultCode = text(progress.result_code);
    const resultMessage = text(progress.result_msg);
    if (state !== undefined) report.state = state;
    if (percent !== undefined) report.percent = percent;
    if (resultCode !== undefined) report.resultCode = resultCode;
    if (resultMessage !== undefined) report.resultMessage = resultMessage;
  }
  return report;
}

export class WireObserver extends EventEmitter<WireObserverEvents> {
  /** The device watched now; reports of other devices are ignored. */
  device?: DeviceIdentity;
  readonly reports: WireReport[] = [];
  private detach?: () => void;

  private readonly onPublish = (publish: DevicePublish) => {
    if (!this.watching(publish)) return;
    const topic = parseOtaTopic(publish.topic);
    if (!topic || topic.direction !== 'report') return;
    const report = parseWireReport(publish);
    this.reports.push(report);
    this.emit('report', report);
  };

  private readonly onCommand = (event: CloudOtaServiceEvents['command'][0]) => {
    if (!this.watching(event)) return;
    this.emit('command', { time: Date.now(), version: event.command.version, md5sum: event.command.md5sum });
  };

  private watching(identity: DeviceIdentity): boolean {
    return this.device !== undefined && identity.productId === this.device.productId && identity.deviceName === this.device.deviceName;
  }

  /** Starts watching a (new) device with an empty record. */
  watch(device: DeviceIdentity): void {
    this.device = device;
    this.reports.length = 0;
  }

  /** Listens to this stand-in (after a restart: the new one), leaving the previous one. */
  attach(simulator: IotHubSimulator): void {
    this.detach?.();
    simulator.broker.on('device-publish', this.onPublish);
    simulator.otaService.on('command', this.onCommand);
    this.detach = () => {
      simulator.broker.off('device-publish', this.onPublish);
      simulator.otaService.off('command', this.onCommand);
    };
  }
}
