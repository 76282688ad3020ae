/**
 * The fleet benchmark: one real Node-RED holding N devices, each with the basic example pipeline on
 * its own tab, all updated at once by one task over HTTPS from the stand-in. For each N, a fresh
 * stand-in and a fresh Node-RED: the time until every device's update ended, the aggregate
 * throughput, Node-RED's CPU per MiB, its memory per device and its admin API's latency meanwhile.
 *
 *   node dist/bench/fleet.js [--fleet 1,10,50,100] [--mib 8]
 *
 * `npm run bench` runs it last (`--fleet 0` or `--no-fleet` leaves it out).
 */
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadExampleFlow, type BoundFlow } from '../demo/example-flow';
import { NodeRedProcess } from '../demo/node-red-process';
import type { TaskDeviceStatus, UpdateTask } from '../simulator/ota-service';
import { IotHubSimulator } from '../simulator/iot-hub-simulator';
import { clockTicksPerSecond, cpuTicks, residentKiB } from './process-usage';
import { watchStorm, type StormWatch } from './storm-watch';

export const DEFAULT_FLEET_COUNTS = [1, 10, 50, 100];
export const DEFAULT_FIRMWARE_MIB = 8;

const MiB = 1024 * 1024;
const PRODUCT_ID = 'FLEETBENCH';
const RUNNING_VERSION = '0.1.0';
const TARGET_VERSION = '1.0.0';
/** The example's "simulated burn" delay, short so that the storm is mostly download. */
const BURN_DELAY_SECONDS = '0.1';
const DEFAULT_STORM_LIMIT_SECONDS = 600;
const SAMPLE_INTERVAL_MS = 50;
const ENDED_STATES: readonly TaskDeviceStatus['state'][] = ['done', 'fail', 'timeout', 'cancelled'];

export interface FleetOptions {
  counts: number[];
  firmwareMiB: number;
  log: (line: string) => void;
  /** Longest wait for the storm to end (default 600 s); the row then counts what ended. */
  stormLimitSeconds?: number;
}

export interface FleetFailure {
  deviceName: string;
  /** fail, timeout or cancelled, as the console's task status shows it. */
  state: string;
  code: number | null;
  message: string;
}

export interface FleetRow {
  devices: number;
  firmwareMiB: number;
  /** Every device's update ended in done. */
  allDone: boolean;
  done: number;
  failed: number;
  unfinished: number;
  /** The first three failures. */
  failures: FleetFailure[];
  /** From the task's creation to the last device's final status (stand-in clock); the limit when some never ended. */
  seconds: number;
  /** devices × firmwareMiB / seconds. */
  mibPerSecond: number;
  /** mibPerSecond divided by the N=10 row's, when there is one. */
  ratioToTen?: number;
  /** Node-RED's utime + stime during the storm, per MiB delivered to the fleet (devices × firmwareMiB). */
  cpuSecondsPerMiB: number;
  /** Node-RED's RSS after deploy with every device online, before the task. */
  rssBeforeMiB: number;
  peakRssMiB: number;
  /** (peak RSS − the baseline Node-RED's RSS) / devices. */
  rssGrowthPerDeviceMiB: number;
  adminP50Ms: number;
  adminMaxMs: number;
  adminSamples: number;
  adminFailedRequests: number;
  /** What the stand-in's firmware server answered for the firmware: body bytes, requests and how many of them over https. */
  servedMiB: number;
  firmwareRequests: number;
  httpsRequests: number;
  /** Seconds from Node-RED's start until every device was online and had reported its version. */
  onlineSeconds: number;
  /** Lines Node-RED logged (warn and above) from its start to the end of the storm, the first few, and how many. */
  nodeRedLogLines: string[];
  nodeRedLogCount: number;
  /** Set when the harness could not measure the row; the other figures are then zero. */
  error?: string;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function mebibytesOfKiB(kib: number): number {
  return kib / 1024;
}

function percentile(values: number[], fraction: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))];
}

/** Gives every node of one device's copy of the flow an id of its own, and every reference to it the same. */
function suffixIds(bound: BoundFlow, suffix: string): BoundFlow {
  const ids = new Set(bound.flows.map((node) => node.id as string));
  const renamed = (value: unknown): unknown => {
    if (typeof value === 'string') return ids.has(value) ? `${value}-${suffix}` : value;
    if (Array.isArray(value)) return value.map(renamed);
    if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, renamed(inner)]));
    return value;
  };
  const flows = bound.flows.map((node) => renamed(node) as Record<string, unknown>);
  const credentials = Object.fromEntries(Object.entries(bound.credentials).map(([id, values]) => [renamed(id) as string, values]));
  return { flows, credentials };
}

/** Cleanups of what is running now, so that an interrupted bench can still run them. */
class Cleanups {
  private readonly pending = new Set<() => Promise<unknown>>();

  /** Runs `work`, and `cleanup` after it even on failure (or when the bench is interrupted meanwhile). */
  async around<T>(cleanup: () => Promise<unknown>, work: () => Promise<T>): Promise<T> {
    this.pending.add(cleanup);
    try {
      return await work();
    } finally {
      this.pending.delete(cleanup);
      await cleanup().catch(() => undefined);
    }
  }

  async runAll(): Promise<void> {
    for (const cleanup of [...this.pending].reverse()) await cleanup().catch(() => undefined);
    this.pending.clear();
  }
}

/** A Node-RED with nothing deployed and this package installed: what the runtime costs before any device. */
async function measureBaselineKiB(workDir: string, cleanups: Cleanups): Promise<number> {
  let nodeRed: NodeRedProcess | undefined;
  return cleanups.around(
    async () => nodeRed?.stop(5000),
    async () => {
      nodeRed = await NodeRedProcess.start({ userDir: path.join(workDir, 'baseline-node-red'), flows: [], logLevel: 'warn' });
      await sleep(2000);
      const rss = nodeRed.pid === undefined ? undefined : residentKiB(nodeRed.pid);
      if (rss === undefined) throw new Error('the baseline Node-RED has no RSS to read');
      return rss;
    },
  );
}

function emptyRow(devices: number, firmwareMiB: number): FleetRow {
  return {
    devices,
    firmwareMiB,
    allDone: false,
    done: 0,
    failed: 0,
    unfinished: devices,
    failures: [],
    seconds: 0,
    mibPerSecond: 0,
    cpuSecondsPerMiB: 0,
    rssBeforeMiB: 0,
    peakRssMiB: 0,
    rssGrowthPerDeviceMiB: 0,
    adminP50Ms: 0,
    adminMaxMs: 0,
    adminSamples: 0,
    adminFailedRequests: 0,
    servedMiB: 0,
    firmwareRequests: 0,
    httpsRequests: 0,
    onlineSeconds: 0,
    nodeRedLogLines: [],
    nodeRedLogCount: 0,
  };
}

async function measureFleet(devices: number, firmwareMiB: number, baselineKiB: number, stormLimitSeconds: number, cleanups: Cleanups): Promise<FleetRow> {
  const row = emptyRow(devices, firmwareMiB);

  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), `ota-fleet-${devices}-`));
  let sim: IotHubSimulator | undefined;
  let nodeRed: NodeRedProcess | undefined;
  let watch: StormWatch | undefined;
  let recordingLog = true;
  const onLine = (line: string) => {
    if (!recordingLog || /Started flows/.test(line) || line.trim() === '') return;
    row.nodeRedLogCount++;
    if (row.nodeRedLogLines.length < 5) row.nodeRedLogLines.push(line.replace(/^\d+ \w+ [\d:]+ - /, ''));
  };
  const cleanup = async () => {
    await watch?.stop().catch(() => undefined);
    watch = undefined;
    await nodeRed?.stop(5000).catch(() => nodeRed?.kill());
    await sim?.close().catch(() => undefined);
    await fs.rm(workDir, { recursive: true, force: true });
  };
  return cleanups.around(cleanup, async () => {
    sim = await IotHubSimulator.start({ dataDir: path.join(workDir, 'stand-in') });
    const deviceNames = Array.from({ length: devices }, (_, index) => `fleet-${String(index + 1).padStart(3, '0')}`);
    const flows: Array<Record<string, unknown>> = [];
    const credentials: BoundFlow['credentials'] = {};
    for (const [index, deviceName] of deviceNames.entries()) {
      const info = (await sim.console.createDevice(PRODUCT_ID, deviceName)) as { key_deviceinfo: { deviceSecret: string } };
      const stateDir = path.join(workDir, 'devices', deviceName);
      await fs.mkdir(stateDir, { recursive: true });
      const bound = await loadExampleFlow('basic-ota-pipeline', {
        productId: PRODUCT_ID,
        deviceName,
        deviceSecret: info.key_deviceinfo.deviceSecret,
        transport: 'mqtts',
        host: '127.0.0.1',
        port: sim.addresses.ports.mqtts,
        caCertPem: sim.certificateAuthority.caCertPem,
        stateDir,
        runningVersion: RUNNING_VERSION,
      });
      for (const node of bound.flows) {
        if (node.type === 'tab') Object.assign(node, { label: `${String(node.label)} ${deviceName}` });
        if (node.type === 'delay') Object.assign(node, { timeout: BURN_DELAY_SECONDS });
      }
      const copy = suffixIds(bound, String(index + 1));
      flows.push(...copy.flows);
      Object.assign(credentials, copy.credentials);
    }

    const started = Date.now();
    nodeRed = await NodeRedProcess.start({ userDir: path.join(workDir, 'node-red'), flows, credentials, logLevel: 'warn', startTimeoutMs: 120_000 });
    nodeRed.on('line', onLine);
    const pid = nodeRed.pid;
    if (pid === undefined) throw new Error('Node-RED has no process id');

    const onlineDeadline = Date.now() + 60_000 + devices * 1000;
    for (;;) {
      const listed = await sim.console.listDevices(PRODUCT_ID);
      const ready = listed.filter((device) => device.online && device.version === RUNNING_VERSION).length;
      if (ready === devices) break;
      if (Date.now() > onlineDeadline)
        throw new Error(`only ${ready} of ${devices} devices were online with version ${RUNNING_VERSION}:\n${nodeRed.output.slice(-3000)}`);
      await sleep(250);
    }
    row.onlineSeconds = (Date.now() - started) / 1000;
    await sleep(1000);
    row.rssBeforeMiB = mebibytesOfKiB(residentKiB(pid) ?? 0);

    await sim.console.uploadFirmware(PRODUCT_ID, TARGET_VERSION, randomBytes(Math.round(firmwareMiB * MiB)));
    watch = await watchStorm({ pid, adminUrl: `${nodeRed.url}/settings`, intervalMs: SAMPLE_INTERVAL_MS });
    const ticksBefore = cpuTicks(pid);
    const task = await sim.console.startUpdate({
      productId: PRODUCT_ID,
      version: TARGET_VERSION,
      deviceNames,
      urlScheme: 'https',
      timeoutSeconds: Math.min(3600, stormLimitSeconds + 60),
    });
    const stormDeadline = Date.parse(task.createdAt) + stormLimitSeconds * 1000;
    let status: UpdateTask;
    for (;;) {
      status = await sim.console.getTask(task.taskId);
      if (status.devices.every((device) => ENDED_STATES.includes(device.state)) || Date.now() > stormDeadline) break;
      await sleep(SAMPLE_INTERVAL_MS);
    }
    const ticksAfter = cpuTicks(pid);
    const watched = await watch.stop();
    watch = undefined;
    recordingLog = false;

    const ended = status.devices.filter((device) => ENDED_STATES.includes(device.state));
    row.done = status.devices.filter((device) => device.state === 'done').length;
    row.failed = ended.length - row.done;
    row.unfinished = devices - ended.length;
    row.allDone = row.done === devices;
    row.failures = ended
      .filter((device) => device.state !== 'done')
      .slice(0, 3)
      .map((device) => ({ deviceName: device.deviceName, state: device.state, code: device.result_code ?? null, message: device.result_msg ?? '' }));
    const endedAt = row.unfinished === 0 ? Math.max(...ended.map((device) => Date.parse(device.updatedAt))) : Date.now();
    row.seconds = Math.max(0.001, (endedAt - Date.parse(task.createdAt)) / 1000);
    row.mibPerSecond = (devices * firmwareMiB) / row.seconds;
    row.cpuSecondsPerMiB = (ticksAfter - ticksBefore) / clockTicksPerSecond() / (devices * firmwareMiB);
    row.peakRssMiB = mebibytesOfKiB(watched.peakRssKiB);
    row.rssGrowthPerDeviceMiB = mebibytesOfKiB(watched.peakRssKiB - baselineKiB) / devices;
    row.adminP50Ms = percentile(watched.latenciesMs, 0.5);
    row.adminMaxMs = Math.max(0, ...watched.latenciesMs);
    row.adminSamples = watched.latenciesMs.length;
    row.adminFailedRequests = watched.failedRequests;
    // The firmware server records a response once its socket has closed.
    await sleep(300);
    const served = (await sim.console.getFirmware(PRODUCT_ID, TARGET_VERSION)).served;
    row.servedMiB = served.totalBytes / MiB;
    row.firmwareRequests = served.requestCount;
    row.httpsRequests = served.requests.filter((request) => request.scheme === 'https').length;
    return row;
  });
}

const COLUMNS = '      N  all done  done  fail  unfin.  seconds    MiB/s  vs N=10  CPU s/MiB  RSS before   peak RSS  RSS/device  admin p50  admin max  samples';

function formatRow(row: FleetRow): string {
  if (row.error) return `  ${String(row.devices).padStart(5)}  harness error: ${row.error.split('\n')[0]}`;
  const mib = (value: number) => `${value.toFixed(1)} MiB`;
  return [
    `  ${String(row.devices).padStart(5)}`,
    (row.allDone ? 'yes' : 'no').padStart(8),
    String(row.done).padStart(5),
    String(row.failed).padStart(5),
    String(row.unfinished).padStart(7),
    row.seconds.toFixed(2).padStart(8),
    row.mibPerSecond.toFixed(1).padStart(8),
    (row.ratioToTen === undefined ? '-' : `${row.ratioToTen.toFixed(2)}×`).padStart(8),
    row.cpuSecondsPerMiB.toFixed(4).padStart(10),
    mib(row.rssBeforeMiB).padStart(11),
    mib(row.peakRssMiB).padStart(10),
    mib(row.rssGrowthPerDeviceMiB).padStart(11),
    `${row.adminP50Ms.toFixed(1)} ms`.padStart(10),
    `${row.adminMaxMs.toFixed(0)} ms`.padStart(10),
    String(row.adminSamples).padStart(8),
  ].join(' ');
}

/** Runs one fleet row per count (a fresh stand-in and Node-RED each) and prints the table. */
export async function runFleetBench(options: FleetOptions): Promise<FleetRow[]> {
  const { log, firmwareMiB } = options;
  const stormLimitSeconds = options.stormLimitSeconds ?? DEFAULT_STORM_LIMIT_SECONDS;
  const cleanups = new Cleanups();
  const interrupted = (signal: NodeJS.Signals) => {
    log(`fleet: ${signal}, stopping Node-RED and the stand-in`);
    void cleanups.runAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  const rows: FleetRow[] = [];
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ota-fleet-'));
  try {
    await cleanups.around(
      () => fs.rm(workDir, { recursive: true, force: true }),
      async () => {
        const baselineKiB = await measureBaselineKiB(workDir, cleanups);
        log(
          `Fleet: one Node-RED holding N devices (the basic example pipeline each, burn ${BURN_DELAY_SECONDS} s), one update task for all of them; ` +
            `${os.cpus().length} cores, firmware ${firmwareMiB} MiB random, scheme https; ` +
            `RSS baseline = a Node-RED with an empty flow, ${mebibytesOfKiB(baselineKiB).toFixed(1)} MiB`,
        );
        for (const devices of options.counts) {
          let row: FleetRow;
          try {
            row = await measureFleet(devices, firmwareMiB, baselineKiB, stormLimitSeconds, cleanups);
            log(
              `  N=${devices}: all online after ${row.onlineSeconds.toFixed(1)} s; storm ${row.seconds.toFixed(1)} s, ${row.done} done, ${row.failed} failed, ` +
                `${row.unfinished} unfinished; firmware server: ${row.servedMiB.toFixed(1)} MiB in ${row.firmwareRequests} requests (${row.httpsRequests} https); ` +
                `admin API: ${row.adminFailedRequests} failed requests`,
            );
          } catch (error) {
            row = { ...emptyRow(devices, firmwareMiB), error: (error as Error).message };
            log(`  N=${devices}: ${(error as Error).message}`);
          }
          rows.push(row);
        }
      },
    );
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  }

  const ten = rows.find((row) => row.devices === 10 && !row.error && row.mibPerSecond > 0);
  if (ten) for (const row of rows) if (!row.error) row.ratioToTen = row.mibPerSecond / ten.mibPerSecond;
  log(COLUMNS);
  for (const row of rows) log(formatRow(row));
  for (const row of rows) {
    for (const failure of row.failures) {
      log(`  N=${row.devices}: ${failure.deviceName} ${failure.state}, code ${failure.code ?? '-'}: ${failure.message}`);
    }
    if (row.nodeRedLogCount > 0) {
      log(`  N=${row.devices}: Node-RED logged ${row.nodeRedLogCount} warnings or errors, first: ${row.nodeRedLogLines.slice(0, 3).join(' | ')}`);
    }
  }
  return rows;
}

/** `--fleet 1,10,50,100` (the default; `--fleet 0` or `--no-fleet`: none) and `--mib 8`. */
export function fleetOptionsFromArguments(argv: string[]): { counts: number[]; firmwareMiB: number } {
  const value = (name: string) => {
    const index = argv.indexOf(name);
    return index >= 0 ? argv[index + 1] : undefined;
  };
  const fleet = value('--fleet');
  let counts = fleet === undefined ? DEFAULT_FLEET_COUNTS : fleet.split(',').map(Number);
  if (counts.some((count) => !Number.isInteger(count) || count < 0)) throw new Error(`--fleet needs counts of devices such as 1,10,50,100, not ${fleet}`);
  counts = counts.filter((count) => count > 0);
  if (argv.includes('--no-fleet')) counts = [];
  const mib = value('--mib');
  const firmwareMiB = mib === undefined ? DEFAULT_FIRMWARE_MIB : Number(mib);
  if (!Number.isFinite(firmwareMiB) || firmwareMiB <= 0) throw new Error(`--mib needs a positive size in MiB, not ${mib}`);
  return { counts, firmwareMiB };
}

/** The bench's fleet section: a blank line, then the table, unless the arguments leave it out. */
export async function runFleetSection(argv: string[], log: (line: string) => void): Promise<FleetRow[]> {
  const { counts, firmwareMiB } = fleetOptionsFromArguments(argv);
  if (counts.length === 0) return [];
  log('');
  return runFleetBench({ counts, firmwareMiB, log });
}

if (require.main === module) {
  runFleetSection(process.argv.slice(2), console.log).then(
    (rows) => process.exit(rows.every((row) => !row.error) ? 0 : 1),
    (error: Error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
