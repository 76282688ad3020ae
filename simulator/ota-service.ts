/**
 * The cloud's side of OTA (PROTOCOL.md §3-4): answers report_version, pushes update_firmware for
 * update tasks, follows report_progress and keeps each device's status and report history. A device
 * is the one its topic names, so a gateway's sub-devices (reporting on their own topics through the
 * gateway's connection) are updated like devices.
 * Tasks, statuses and histories live in `<dataDir>/ota-state.json` and the journal of the changes
 * since, `ota-state.journal.jsonl` (see StateJournal), so that a restarted stand-in resumes them:
 * a report costs a line or two appended, however long the histories have grown.
 */
import { EventEmitter } from 'events';
import * as path from 'path';
import { describeInvalidDeviceName, describeInvalidProductId } from '../lib/device-info';
import { describeInvalidFirmwareVersion } from '../lib/firmware-version';
import {
  buildReportVersionResponse,
  buildUpdateFirmwareCommand,
  parseDeviceReport,
  type DeviceReport,
  type ProgressState,
  type UpdateFirmwareCommand,
} from '../lib/ota-messages';
import { otaUpdateTopic, parseOtaTopic, type DeviceIdentity } from '../lib/ota-topics';
import type { DeviceRegistry } from './device-registry';
import { DEFAULT_URL_TTL_SECONDS, type FirmwareServer, type FirmwareUrlScheme } from './firmware-server';
import type { FirmwareStore } from './firmware-store';
import type { DevicePublish, SimulatedMqttBroker } from './mqtt-broker';
import { StateJournal } from './state-journal';

/** The cloud's status of one device in one task; `cancelled` when a newer task replaced it. */
export type DeviceUpdateState = 'pending' | 'delivered' | 'downloading' | 'burning' | 'done' | 'fail' | 'timeout' | 'cancelled';

/** States in which the cloud still waits for the device (and re-pushes the command after a report_version). */
const OPEN_STATES: readonly DeviceUpdateState[] = ['pending', 'delivered', 'downloading', 'burning'];

/** One report from a device as the cloud received it. */
export interface OtaHistoryEntry {
  time: string;
  qos: 0 | 1;
  type: 'report_version' | 'report_progress' | 'invalid';
  version?: string;
  state?: ProgressState;
  percent?: number;
  result_code?: number;
  result_msg?: string;
  /** Why the payload was refused (type 'invalid'). */
  error?: string;
  /** Why a valid report did not move the status, if it did not. */
  note?: string;
  /** The raw payload of an invalid report, cut to 512 characters. */
  payload?: string;
  /** The gateway whose connection carried the report of a sub-device (PROTOCOL.md §6). */
  via?: DeviceIdentity;
}

export interface TaskDeviceStatus {
  deviceName: string;
  state: DeviceUpdateState;
  /** The version the device ran when the task was made, if known. */
  fromVersion?: string;
  percent?: number;
  result_code?: number;
  result_msg?: string;
  /** update_firmware commands sent for this task. */
  deliveries: number;
  deliveredAt?: string;
  updatedAt: string;
}

export type UpdateTaskMode = 'all-devices' | 'source-versions' | 'devices-on-source-versions' | 'devices';

export interface UpdateTask {
  taskId: string;
  productId: string;
  version: string;
  md5sum: string;
  file_size: number;
  mode: UpdateTaskMode;
  sourceVersions?: string[];
  deviceNames?: string[];
  timeoutSeconds: number;
  urlScheme: FirmwareUrlScheme;
  urlTtlSeconds: number;
  createdAt: string;
  devices: TaskDeviceStatus[];
}

export interface UpdateRequest {
  productId: string;
  version: string;
  sourceVersions?: string[];
  deviceNames?: string[];
  timeoutSeconds?: number;
  urlScheme?: FirmwareUrlScheme;
  urlTtlSeconds?: number;
}

export interface DeviceOtaStatus {
  /** The last version the device reported, if any. */
  version?: string;
  versionReportedAt?: string;
  taskId?: string;
  targetVersion?: string;
  state?: DeviceUpdateState;
  percent?: number;
  result_code?: number;
  result_msg?: string;
  history: OtaHistoryEntry[];
}

export const DEFAULT_TASK_TIMEOUT_SECONDS = 900;
export const MAX_TASK_TIMEOUT_SECONDS = 3600;
const MAX_HISTORY_ENTRIES = 500;

/** A console request the cloud refuses: 400 for a bad request, 404 for something unknown. */
export class UpdateRequestError extends Error {
  constructor(
    readonly status: 400 | 404,
    message: string,
  ) {
    super(message);
    this.name = 'UpdateRequestError';
  }
}

interface DeviceHeader extends DeviceIdentity {
  version?: string;
  versionReportedAt?: string;
  taskId?: string;
}

interface DeviceRecord extends DeviceHeader {
  history: OtaHistoryEntry[];
}

/** ota-state.json, the snapshot; earlier versions wrote it alone, pretty-printed, after every change. */
interface OtaStateFile {
  nextTaskId: number;
  tasks: UpdateTask[];
  devices: DeviceRecord[];
}

/**
 * One line of the journal: a new task (with its first statuses), a status, a device's header, a report
 * added to a history, or a deleted device whose record goes.
 */
type OtaStateChange =
  | { removedDevice: DeviceIdentity }
  | { task: UpdateTask; nextTaskId: number }
  | { taskId: string; status: TaskDeviceStatus }
  | { device: DeviceHeader }
  | { report: OtaHistoryEntry; productId: string; deviceName: string };

export interface CloudOtaServiceEvents {
  /** An update task was made, with the first status of each device it targets. */
  task: [UpdateTask];
  /** A device report was received and recorded (after the status moved). */
  report: [DeviceIdentity & { entry: OtaHistoryEntry }];
  /** An update_firmware command was published to a device. */
  command: [DeviceIdentity & { taskId: string; command: UpdateFirmwareCommand }];
  /** A device's status in a task changed. */
  status: [DeviceIdentity & { taskId: string; status: TaskDeviceStatus }];
}

export interface CloudOtaServiceOptions {
  dataDir: string;
  broker: SimulatedMqttBroker;
  registry: DeviceRegistry;
  firmwareStore: FirmwareStore;
  firmwareServer: FirmwareServer;
  now?: () => number;
  /** Delay that gathers changes into one append to the journal. */
  stateWriteDelayMs?: number;
}

function keyOf(device: DeviceIdentity): string {
  return `${device.productId}/${device.deviceName}`;
}

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isIdentity(value: unknown): value is DeviceIdentity {
  return isObject(value) && typeof value.productId === 'string' && typeof value.deviceName === 'string';
}

function headerOf(record: DeviceRecord): DeviceHeader {
  const { history: _history, ...header } = record;
  return header;
}

function trimHistory(history: OtaHistoryEntry[]): void {
  if (history.length > MAX_HISTORY_ENTRIES) history.splice(0, history.length - MAX_HISTORY_ENTRIES);
}

function readStringList(value: unknown, field: string, check: (item: string) => string | undefined): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.length === 0) throw new UpdateRequestError(400, `${field} must be a non-empty array of strings`);
  for (const item of value) {
    if (typeof item !== 'string') throw new UpdateRequestError(400, `${field} must be a non-empty array of strings`);
    const problem = check(item);
    if (problem) throw new UpdateRequestError(400, `${field}: ${problem}`);
  }
  return [...new Set(value as string[])];
}

function readInteger(value: unknown, field: string, minimum: number, maximum: number, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < minimum || value > maximum) {
    throw new UpdateRequestError(400, `${field} must be an integer from ${minimum} to ${maximum}`);
  }
  return value;
}

/** Checks a console request body for POST /api/updates. */
export function parseUpdateRequest(body: unknown): UpdateRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new UpdateRequestError(400, 'the request must be a JSON object');
  const fields = body as Record<string, unknown>;
  if (typeof fields.productId !== 'string') throw new UpdateRequestError(400, 'productId is missing');
  const productProblem = describeInvalidProductId(fields.productId);
  if (productProblem) throw new UpdateRequestError(400, productProblem);
  const versionProblem = describeInvalidFirmwareVersion(fields.version);
  if (versionProblem) throw new UpdateRequestError(400, versionProblem);
  const request: UpdateRequest = { productId: fields.productId, version: fields.version as string };
  const sourceVersions = readStringList(fields.sourceVersions, 'sourceVersions', describeInvalidFirmwareVersion);
  if (sourceVersions) request.sourceVersions = sourceVersions;
  const deviceNames = readStringList(fields.deviceNames, 'deviceNames', describeInvalidDeviceName);
  if (deviceNames) request.deviceNames = deviceNames;
  request.timeoutSeconds = readInteger(fields.timeoutSeconds, 'timeoutSeconds', 1, MAX_TASK_TIMEOUT_SECONDS, DEFAULT_TASK_TIMEOUT_SECONDS);
  request.urlTtlSeconds = readInteger(fields.urlTtlSeconds, 'urlTtlSeconds', -3600, 30 * 24 * 3600, DEFAULT_URL_TTL_SECONDS);
  if (fields.urlScheme !== undefined && fields.urlScheme !== 'https' && fields.urlScheme !== 'http') {
    throw new UpdateRequestError(400, 'urlScheme must be "https" or "http"');
  }
  request.urlScheme = (fields.urlScheme as FirmwareUrlScheme | undefined) ?? 'https';
  return request;
}

export class CloudOtaService extends EventEmitter<CloudOtaServiceEvents> {
  private readonly broker: SimulatedMqttBroker;
  private readonly registry: DeviceRegistry;
  private readonly firmwareStore: FirmwareStore;
  private readonly firmwareServer: FirmwareServer;
  private readonly now: () => number;
  private readonly stateWriteDelayMs: number;
  private readonly tasks = new Map<string, UpdateTask>();
  private readonly devices = new Map<string, DeviceRecord>();
  private nextTaskId = 1;
  private readonly timeouts = new Map<string, NodeJS.Timeout>();
  /** Reports of one device are handled one after another, in the order they arrived. */
  private readonly deviceQueues = new Map<string, Promise<void>>();
  private readonly journal: StateJournal;
  /** What changed since the last append, written as journal lines when the write timer fires. */
  private readonly createdTasks = new Set<UpdateTask>();
  private readonly changedStatuses = new Map<string, { task: UpdateTask; status: TaskDeviceStatus }>();
  private readonly changedDevices = new Set<DeviceRecord>();
  private readonly addedReports: { record: DeviceRecord; entry: OtaHistoryEntry }[] = [];
  private readonly removedDevices: DeviceIdentity[] = [];
  private writeTimer?: NodeJS.Timeout;
  private closed = false;
  private readonly onPublish = (publish: DevicePublish) => this.enqueueReport(publish);

  private constructor(options: CloudOtaServiceOptions, journal: StateJournal) {
    super();
    this.journal = journal;
    this.broker = options.broker;
    this.registry = options.registry;
    this.firmwareStore = options.firmwareStore;
    this.firmwareServer = options.firmwareServer;
    this.now = options.now ?? Date.now;
    this.stateWriteDelayMs = options.stateWriteDelayMs ?? 50;
  }

  /**
   * Loads ota-state.json (if any) and the journal after it, folds them into a new ota-state.json when
   * the journal held anything, re-arms the timeouts of open tasks and starts listening to the broker.
   */
  static async open(options: CloudOtaServiceOptions): Promise<CloudOtaService> {
    const stored = await StateJournal.open<Partial<OtaStateFile>>({
      snapshotPath: path.join(options.dataDir, 'ota-state.json'),
      journalPath: path.join(options.dataDir, 'ota-state.journal.jsonl'),
    });
    const service = new CloudOtaService(options, stored.journal);
    if (stored.snapshot) {
      service.nextTaskId = stored.snapshot.nextTaskId ?? 1;
      for (const task of stored.snapshot.tasks ?? []) service.tasks.set(task.taskId, task);
      for (const device of stored.snapshot.devices ?? []) service.devices.set(keyOf(device), device);
    }
    for (const change of stored.changes) service.applyChange(change);
    await stored.journal.compact(() => service.snapshotState());
    for (const task of service.tasks.values()) {
      for (const status of task.devices) {
        if (status.deliveredAt && OPEN_STATES.includes(status.state) && status.state !== 'pending') {
          service.armTimeout(task, { productId: task.productId, deviceName: status.deviceName }, status);
        }
      }
    }
    options.broker.on('device-publish', service.onPublish);
    return service;
  }

  /** Replays one journal line over the state loaded so far; a line of an unknown shape is skipped. */
  private applyChange(change: unknown): void {
    if (!isObject(change)) return;
    if (isIdentity(change.removedDevice)) {
      this.devices.delete(keyOf(change.removedDevice));
    } else if (isObject(change.task) && typeof change.task.taskId === 'string' && Array.isArray(change.task.devices)) {
      const task = change.task as unknown as UpdateTask;
      this.tasks.set(task.taskId, task);
      if (typeof change.nextTaskId === 'number') this.nextTaskId = Math.max(this.nextTaskId, change.nextTaskId);
    } else if (typeof change.taskId === 'string' && isObject(change.status) && typeof change.status.deviceName === 'string') {
      const task = this.tasks.get(change.taskId);
      const status = change.status as unknown as TaskDeviceStatus;
      if (!task) return;
      const index = task.devices.findIndex((entry) => entry.deviceName === status.deviceName);
      if (index >= 0) task.devices[index] = status;
      else task.devices.push(status);
    } else if (isIdentity(change.device)) {
      const header = change.device as DeviceHeader;
      const record = this.deviceRecord(header);
      this.devices.set(keyOf(header), { ...header, history: record.history });
    } else if (isObject(change.report) && isIdentity(change)) {
      const record = this.deviceRecord(change);
      record.history.push(change.report as unknown as OtaHistoryEntry);
      trimHistory(record.history);
    }
  }

  private snapshotState(): OtaStateFile {
    return { nextTaskId: this.nextTaskId, tasks: [...this.tasks.values()], devices: [...this.devices.values()] };
  }

  private isoNow(): string {
    return new Date(this.now()).toISOString();
  }

  /** Starts an update task (PROTOCOL.md §4, console side) and delivers it to the targeted devices that are online. */
  async startUpdate(request: UpdateRequest): Promise<UpdateTask> {
    const checked = parseUpdateRequest(request);
    const firmware = this.firmwareStore.get(checked.productId, checked.version);
    if (!firmware) throw new UpdateRequestError(404, `no firmware ${checked.version} uploaded for product ${checked.productId}`);
    for (const deviceName of checked.deviceNames ?? []) {
      if (!this.registry.find(checked.productId, deviceName)) {
        throw new UpdateRequestError(404, `device ${checked.productId}/${deviceName} does not exist`);
      }
    }
    const mode: UpdateTaskMode = checked.deviceNames
      ? checked.sourceVersions
        ? 'devices-on-source-versions'
        : 'devices'
      : checked.sourceVersions
        ? 'source-versions'
        : 'all-devices';
    const candidates = checked.deviceNames ?? this.registry.list(checked.productId).map((device) => device.deviceName);
    const targets = candidates.filter((deviceName) => {
      if (!checked.sourceVersions) return true;
      const version = this.devices.get(keyOf({ productId: checked.productId, deviceName }))?.version;
      return version !== undefined && checked.sourceVersions.includes(version);
    });

    const createdAt = this.isoNow();
    const task: UpdateTask = {
      taskId: String(this.nextTaskId++),
      productId: checked.productId,
      version: checked.version,
      md5sum: firmware.md5sum,
      file_size: firmware.file_size,
      mode,
      timeoutSeconds: checked.timeoutSeconds ?? DEFAULT_TASK_TIMEOUT_SECONDS,
      urlScheme: checked.urlScheme ?? 'https',
      urlTtlSeconds: checked.urlTtlSeconds ?? DEFAULT_URL_TTL_SECONDS,
      createdAt,
      devices: [],
    };
    if (checked.sourceVersions) task.sourceVersions = checked.sourceVersions;
    if (checked.deviceNames) task.deviceNames = checked.deviceNames;
    for (const deviceName of targets) {
      const device = this.deviceRecord({ productId: task.productId, deviceName });
      const status: TaskDeviceStatus = { deviceName, state: 'pending', deliveries: 0, updatedAt: createdAt };
      if (device.version !== undefined) status.fromVersion = device.version;
      task.devices.push(status);
      this.replaceOpenTask(device, task.taskId);
      device.taskId = task.taskId;
      this.changedDevices.add(device);
    }
    this.tasks.set(task.taskId, task);
    this.createdTasks.add(task);
    this.scheduleWrite();
    this.emit('task', clone(task));

    for (const status of task.devices) {
      const device = { productId: task.productId, deviceName: status.deviceName };
      if (this.broker.isOnline(device)) await this.runForDevice(device, () => this.deliver(task, device, status));
    }
    return clone(task);
  }

  getTask(taskId: string): UpdateTask | undefined {
    const task = this.tasks.get(taskId);
    return task ? clone(task) : undefined;
  }

  listTasks(productId?: string): UpdateTask[] {
    return [...this.tasks.values()].filter((task) => productId === undefined || task.productId === productId).map(clone);
  }

  /** What the console shows for a device: its reported version, its current task's status and its report history. */
  deviceStatus(device: DeviceIdentity): DeviceOtaStatus {
    const record = this.devices.get(keyOf(device));
    const view: DeviceOtaStatus = { history: record ? clone(record.history) : [] };
    if (!record) return view;
    if (record.version !== undefined) view.version = record.version;
    if (record.versionReportedAt !== undefined) view.versionReportedAt = record.versionReportedAt;
    const task = record.taskId ? this.tasks.get(record.taskId) : undefined;
    const status = task?.devices.find((entry) => entry.deviceName === device.deviceName);
    if (task && status) {
      view.taskId = task.taskId;
      view.targetVersion = task.version;
      view.state = status.state;
      if (status.percent !== undefined) view.percent = status.percent;
      if (status.result_code !== undefined) view.result_code = status.result_code;
      if (status.result_msg !== undefined) view.result_msg = status.result_msg;
    }
    return view;
  }

  /**
   * Forgets a deleted device, as the cloud does: an update still open for it ends `cancelled`, and its
   * reported version and report history go, so that a device made again under its name starts afresh.
   */
  forgetDevice(device: DeviceIdentity): Promise<void> {
    return this.runForDevice(device, async () => {
      const record = this.devices.get(keyOf(device));
      if (!record) return;
      const current = this.currentStatus(record);
      if (current && OPEN_STATES.includes(current.status.state)) {
        this.clearTimeout(current.task.taskId, record.deviceName);
        this.setStatus(current.task, current.status, { state: 'cancelled', result_msg: 'device deleted' });
      }
      this.devices.delete(keyOf(device));
      this.changedDevices.delete(record);
      for (let index = this.addedReports.length - 1; index >= 0; index--) {
        if (this.addedReports[index].record === record) this.addedReports.splice(index, 1);
      }
      this.removedDevices.push({ productId: device.productId, deviceName: device.deviceName });
      this.scheduleWrite();
    });
  }

  private deviceRecord(device: DeviceIdentity): DeviceRecord {
    const key = keyOf(device);
    let record = this.devices.get(key);
    if (!record) {
      record = { productId: device.productId, deviceName: device.deviceName, history: [] };
      this.devices.set(key, record);
    }
    return record;
  }

  private currentStatus(record: DeviceRecord): { task: UpdateTask; status: TaskDeviceStatus } | undefined {
    const task = record.taskId ? this.tasks.get(record.taskId) : undefined;
    const status = task?.devices.find((entry) => entry.deviceName === record.deviceName);
    return task && status ? { task, status } : undefined;
  }

  private replaceOpenTask(record: DeviceRecord, newTaskId: string): void {
    const current = this.currentStatus(record);
    if (!current || !OPEN_STATES.includes(current.status.state)) return;
    this.clearTimeout(current.task.taskId, record.deviceName);
    this.setStatus(current.task, current.status, { state: 'cancelled', result_msg: `replaced by task ${newTaskId}` });
  }

  private setStatus(task: UpdateTask, status: TaskDeviceStatus, change: Partial<TaskDeviceStatus>): void {
    Object.assign(status, change, { updatedAt: this.isoNow() });
    if (change.state !== undefined && change.state !== 'downloading') delete status.percent;
    if (change.percent !== undefined) status.percent = change.percent;
    this.changedStatuses.set(this.statusKey(task.taskId, status.deviceName), { task, status });
    this.scheduleWrite();
    this.emit('status', { productId: task.productId, deviceName: status.deviceName, taskId: task.taskId, status: clone(status) });
  }

  private runForDevice(device: DeviceIdentity, work: () => Promise<void>): Promise<void> {
    const key = keyOf(device);
    const previous = this.deviceQueues.get(key) ?? Promise.resolve();
    const next = previous.then(work).catch(() => undefined);
    this.deviceQueues.set(key, next);
    void next.then(() => {
      if (this.deviceQueues.get(key) === next) this.deviceQueues.delete(key);
    });
    return next;
  }

  private enqueueReport(publish: DevicePublish): void {
    const topic = parseOtaTopic(publish.topic);
    if (!topic || topic.direction !== 'report' || this.closed) return;
    const device = { productId: topic.productId, deviceName: topic.deviceName };
    void this.runForDevice(device, () => this.handleReport(device, publish));
  }

  private async handleReport(device: DeviceIdentity, publish: DevicePublish): Promise<void> {
    const record = this.deviceRecord(device);
    const entry: OtaHistoryEntry = { time: publish.time.toISOString(), qos: publish.qos, type: 'invalid' };
    // The device is the one the topic names; a gateway publishes there for its sub-devices.
    if (publish.productId !== device.productId || publish.deviceName !== device.deviceName) {
      entry.via = { productId: publish.productId, deviceName: publish.deviceName };
    }
    const parsed = parseDeviceReport(publish.payload);
    if (!parsed.ok) {
      entry.error = `${parsed.field}: ${parsed.error}`;
      entry.payload = publish.payload.toString('utf8').slice(0, 512);
      this.recordReport(record, entry);
      return;
    }
    const report = parsed.value;
    entry.type = report.type;
    entry.version = report.version;
    if (report.type === 'report_version') {
      await this.handleReportVersion(record, report.version, entry);
    } else {
      this.handleProgress(record, report, entry);
    }
  }

  private recordReport(record: DeviceRecord, entry: OtaHistoryEntry): void {
    record.history.push(entry);
    trimHistory(record.history);
    this.addedReports.push({ record, entry });
    this.scheduleWrite();
    this.emit('report', { productId: record.productId, deviceName: record.deviceName, entry: clone(entry) });
  }

  private async handleReportVersion(record: DeviceRecord, version: string, entry: OtaHistoryEntry): Promise<void> {
    record.version = version;
    record.versionReportedAt = entry.time;
    this.changedDevices.add(record);
    const current = this.currentStatus(record);
    if (current && current.status.state !== 'done' && current.status.state !== 'cancelled' && version === current.task.version) {
      this.clearTimeout(current.task.taskId, record.deviceName);
      this.setStatus(current.task, current.status, { state: 'done', result_code: 0, result_msg: '' });
    }
    this.recordReport(record, entry);
    const device = { productId: record.productId, deviceName: record.deviceName };
    await this.publish(device, JSON.stringify(buildReportVersionResponse(version)));
    // A device that restarts mid-update reports its old version: the cloud pushes the pending command again.
    const after = this.currentStatus(record);
    if (after && OPEN_STATES.includes(after.status.state) && version !== after.task.version) {
      await this.deliver(after.task, device, after.status);
    }
  }

  private handleProgress(record: DeviceRecord, report: Extract<DeviceReport, { type: 'report_progress' }>, entry: OtaHistoryEntry): void {
    const progress = report.progress;
    entry.state = progress.state;
    if (progress.state === 'downloading') entry.percent = progress.percent;
    if (progress.state === 'fail') {
      entry.result_code = progress.resultCode;
      entry.result_msg = progress.resultMessage;
    } else {
      entry.result_code = 0;
    }
    const current = this.currentStatus(record);
    if (!current) {
      entry.note = 'no update task for this device';
    } else if (current.task.version !== report.version) {
      entry.note = `the device's task targets ${current.task.version}`;
    } else if (current.status.state === 'done' || current.status.state === 'cancelled') {
      entry.note = `the device's status is already ${current.status.state}`;
    } else {
      const { task, status } = current;
      switch (progress.state) {
        case 'downloading':
          this.setStatus(task, status, { state: 'downloading', percent: progress.percent });
          break;
        case 'burning':
          this.setStatus(task, status, { state: 'burning' });
          break;
        case 'done':
          this.clearTimeout(task.taskId, record.deviceName);
          this.setStatus(task, status, { state: 'done', result_code: 0, result_msg: '' });
          break;
        case 'fail':
          this.clearTimeout(task.taskId, record.deviceName);
          this.setStatus(task, status, { state: 'fail', result_code: progress.resultCode, result_msg: progress.resultMessage });
          break;
      }
    }
    this.recordReport(record, entry);
  }

  /** Sends update_firmware with a fresh signed URL; a device that is offline stays pending. */
  private async deliver(task: UpdateTask, device: DeviceIdentity, status: TaskDeviceStatus): Promise<void> {
    if (this.closed || !this.broker.isOnline(device)) return;
    const firmware = this.firmwareStore.get(task.productId, task.version);
    const command = buildUpdateFirmwareCommand({
      version: task.version,
      url: this.firmwareServer.signedUrl(task.productId, task.version, { scheme: task.urlScheme, ttlSeconds: task.urlTtlSeconds }),
      // A firmware removed after the task was made is still announced: the device then meets the 404.
      md5sum: firmware?.md5sum ?? task.md5sum,
      file_size: firmware?.file_size ?? task.file_size,
      user_defined: firmware?.user_defined,
    });
    await this.publish(device, JSON.stringify(command));
    this.setStatus(task, status, { state: 'delivered', deliveries: status.deliveries + 1, deliveredAt: this.isoNow() });
    this.armTimeout(task, device, status);
    this.emit('command', { ...device, taskId: task.taskId, command });
  }

  private async publish(device: DeviceIdentity, payload: string): Promise<void> {
    try {
      await this.broker.publishToDevice(device, otaUpdateTopic(device), payload, 0);
    } catch {
      // The broker is closing or the device just left; a later report_version brings the command again.
    }
  }

  private statusKey(taskId: string, deviceName: string): string {
    return `${taskId}/${deviceName}`;
  }

  private armTimeout(task: UpdateTask, device: DeviceIdentity, status: TaskDeviceStatus): void {
    this.clearTimeout(task.taskId, device.deviceName);
    if (this.closed || !status.deliveredAt) return;
    const dueAt = Date.parse(status.deliveredAt) + task.timeoutSeconds * 1000;
    const timer = setTimeout(
      () => {
        this.timeouts.delete(this.statusKey(task.taskId, device.deviceName));
        void this.runForDevice(device, async () => {
          if (!OPEN_STATES.includes(status.state) || this.closed) return;
          this.setStatus(task, status, { state: 'timeout', result_code: -1, result_msg: `no result within ${task.timeoutSeconds} s of delivery` });
        });
      },
      Math.max(0, dueAt - this.now()),
    );
    this.timeouts.set(this.statusKey(task.taskId, device.deviceName), timer);
  }

  private clearTimeout(taskId: string, deviceName: string): void {
    const key = this.statusKey(taskId, deviceName);
    const timer = this.timeouts.get(key);
    if (timer) clearTimeout(timer);
    this.timeouts.delete(key);
  }

  private scheduleWrite(): void {
    if (this.writeTimer || this.closed) return;
    this.writeTimer = setTimeout(() => {
      this.writeTimer = undefined;
      void this.journal.record(this.takeChanges(), () => this.snapshotState()).catch(() => undefined);
    }, this.stateWriteDelayMs);
  }

  /** The journal lines for what changed since the last call: each changed record as it is now, each new report once. */
  private takeChanges(): OtaStateChange[] {
    // Removals first: what a removed record changed before is dropped with it, and a record made again after comes later.
    const changes: OtaStateChange[] = this.removedDevices.map((device) => ({ removedDevice: device }));
    // A new task's line holds its statuses as they are now, so they need no line of their own.
    for (const task of this.createdTasks) changes.push({ task, nextTaskId: this.nextTaskId });
    for (const record of this.changedDevices) changes.push({ device: headerOf(record) });
    for (const { task, status } of this.changedStatuses.values()) {
      if (!this.createdTasks.has(task)) changes.push({ taskId: task.taskId, status });
    }
    for (const { record, entry } of this.addedReports) changes.push({ report: entry, productId: record.productId, deviceName: record.deviceName });
    this.clearChanges();
    return changes;
  }

  private clearChanges(): void {
    this.createdTasks.clear();
    this.changedDevices.clear();
    this.changedStatuses.clear();
    this.addedReports.length = 0;
    this.removedDevices.length = 0;
  }

  /** Waits for the reports being handled, folds the state into ota-state.json and stops listening. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.broker.off('device-publish', this.onPublish);
    await Promise.all([...this.deviceQueues.values()]);
    this.closed = true;
    for (const timer of this.timeouts.values()) clearTimeout(timer);
    this.timeouts.clear();
    if (this.writeTimer) clearTimeout(this.writeTimer);
    this.writeTimer = undefined;
    const unrecorded = this.createdTasks.size + this.changedDevices.size + this.changedStatuses.size + this.addedReports.length + this.removedDevices.length > 0;
    this.clearChanges();
    await this.journal.compact(() => this.snapshotState(), unrecorded);
  }
}
