/**
 * What the tests of the OTA flow nodes share: the stand-in with one key device, a state folder in
 * a fresh temp dir, the device's config node for a test flow, a way to push any payload as the
 * cloud, and a record of every report the cloud receives as it was on the wire.
 */
import { strict as assert } from 'assert';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { otaReportTopic, otaUpdateTopic, type DeviceIdentity } from '../../lib/ota-topics';
import type { NodeStatus } from '../../nodes/common/node-red-runtime';
import { parseStatusText, type ParsedStatusText } from '../../nodes/common/status-text';
import type { DevicePublish, SimulatedMqttBroker } from '../../simulator/mqtt-broker';
import { LANGUAGES, messageOf } from './message-catalogs';
import { startSimulator, type SimulatorFixture } from './simulator-fixture';

export const DEVICE: DeviceIdentity = { productId: 'PRODUCT1', deviceName: 'device1' };

/** A device report as the cloud received it: the JSON exactly as sent (numbers stay strings) and its QoS. */
export interface WireReport {
  qos: 0 | 1;
  message: {
    type?: string;
    report?: { version?: string; progress?: { state?: string; percent?: string; result_code?: string; result_msg?: string } };
  };
}

/** Matches report_progress with this state (and version, when given). */
export const isProgress = (state: string, version?: string) => (report: WireReport) =>
  report.message.type === 'report_progress' && report.message.report?.progress?.state === state && (version === undefined || report.message.report?.version === version);

export class WireRecorder {
  readonly reports: WireReport[] = [];
  private broker?: SimulatedMqttBroker;
  private waiters: { matches: (report: WireReport) => boolean; resolve: (report: WireReport) => void }[] = [];
  private readonly onPublish = (publish: DevicePublish) => {
    if (publish.topic !== otaReportTopic(DEVICE)) return;
    const report: WireReport = { qos: publish.qos, message: JSON.parse(publish.payload.toString('utf8')) as WireReport['message'] };
    this.reports.push(report);
    const due = this.waiters.filter((waiter) => waiter.matches(report));
    this.waiters = this.waiters.filter((waiter) => !due.includes(waiter));
    for (const waiter of due) waiter.resolve(report);
  };

  /** Listens to a (new) broker, e.g. after the stand-in was started again. */
  attach(broker: SimulatedMqttBroker): void {
    this.broker?.off('device-publish', this.onPublish);
    this.broker = broker;
    broker.on('device-publish', this.onPublish);
  }

  detach(): void {
    this.broker?.off('device-publish', this.onPublish);
    this.broker = undefined;
  }

  /** The first report received (or to be received) that matches. */
  waitFor(matches: (report: WireReport) => boolean, timeoutMs = 30_000): Promise<WireReport> {
    const found = this.reports.find(matches);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((waiter) => waiter.resolve !== done);
        reject(new Error(`no matching report within ${timeoutMs} ms; received: ${JSON.stringify(this.reports)}`));
      }, timeoutMs);
      const done = (report: WireReport) => {
        clearTimeout(timer);
        resolve(report);
      };
      this.waiters.push({ matches, resolve: done });
    });
  }

  /** report_progress messages with this state (and version, when given). */
  progress(state: string, version?: string): WireReport[] {
    return this.reports.filter(isProgress(state, version));
  }
}

/** The message key and parameters of a node status (the editor translates it; the runtime sends the key). */
export function shownStatus(status: NodeStatus | undefined): ParsedStatusText | undefined {
  return typeof status?.text === 'string' ? parseStatusText(status.text) : undefined;
}

/** Matches a node status by its message key, which both catalogs must have, and the parameters given. */
export function withStatus(key: string, parameters: Record<string, string> = {}): (status: NodeStatus) => boolean {
  for (const language of LANGUAGES) assert.ok(messageOf(language, key) !== undefined, `${key} is in the ${language} catalog`);
  return (status) => {
    const shown = shownStatus(status);
    return shown?.key === key && Object.entries(parameters).every(([name, value]) => shown.parameters[name] === value);
  };
}

export interface OtaFlowContext {
  sim: SimulatorFixture;
  deviceSecret: string;
  /** The device's state folder (running version, downloads). */
  stateDir: string;
  downloadsDir: string;
  wire: WireRecorder;
  /** The tencent-iot-device config node `dev` over plain MQTT to the stand-in. */
  deviceNode(overrides?: Record<string, unknown>): Record<string, unknown>;
  credentials: Record<string, Record<string, string>>;
  /** Resolves once the device has subscribed to its update topic (call before the flow is loaded). */
  subscribed(): Promise<void>;
  /** Publishes a payload on the device's update topic as the cloud does (QoS 0). */
  push(payload: string | object): Promise<void>;
  close(): Promise<void>;
}

export async function startOtaFlowContext(): Promise<OtaFlowContext> {
  const sim = await startSimulator();
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ota-flow-state-'));
  try {
    const created = await sim.createDevice(DEVICE.productId, DEVICE.deviceName);
    if (!created.deviceSecret) throw new Error('the stand-in gave no device secret');
    const deviceSecret = created.deviceSecret;
    const wire = new WireRecorder();
    wire.attach(sim.simulator.broker);
    return {
      sim,
      deviceSecret,
      stateDir,
      downloadsDir: path.join(stateDir, 'downloads'),
      wire,
      deviceNode: (overrides = {}) => ({
        id: 'dev',
        type: 'tencent-iot-device',
        productId: DEVICE.productId,
        deviceName: DEVICE.deviceName,
        authMode: 'key',
        transport: 'mqtt',
        host: '127.0.0.1',
        port: sim.addresses.ports.mqtt,
        runningVersion: '0.1.0',
        stateDir,
        ...overrides,
      }),
      credentials: { dev: { deviceSecret } },
      subscribed: () =>
        new Promise<void>((resolve) => {
          const broker = sim.simulator.broker;
          const onSubscribe = (event: { topic: string }) => {
            if (event.topic !== otaUpdateTopic(DEVICE)) return;
            broker.off('device-subscribe', onSubscribe);
            resolve();
          };
          broker.on('device-subscribe', onSubscribe);
        }),
      push: (payload) => sim.simulator.broker.publishToDevice(DEVICE, otaUpdateTopic(DEVICE), typeof payload === 'string' ? payload : JSON.stringify(payload), 0),
      async close() {
        wire.detach();
        await sim.close();
        await fs.rm(stateDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await sim.close();
    await fs.rm(stateDir, { recursive: true, force: true });
    throw error;
  }
}
