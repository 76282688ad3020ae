/**
 * One chaos run: a fresh device bound to the basic example flow in a real Node-RED child process,
 * a firmware of the plan's size, an update started through the console, the plan's faults struck
 * at their moments, a bounded wait for the update to end at the stand-in, then the faults cleared
 * and, when the update did not end in done, the same update started again to see that the device
 * takes it up and finishes it. Everything is judged by what the stand-in saw: the broker's
 * device-publish events, the console's device view (report history with QoS) and the firmware
 * server's statistics.
 */
import { createHash } from 'crypto';
import { createReadStream, createWriteStream, promises as fs, type WriteStream } from 'fs';
import * as path from 'path';
import { loadExampleFlow } from '../demo/example-flow';
import { NodeRedProcess, prepareUserDir } from '../demo/node-red-process';
import type { DeviceView } from '../simulator/console-api';
import type { FirmwareFaults } from '../simulator/firmware-store';
import type { OtaHistoryEntry } from '../simulator/ota-service';
import type { SimulatorFixture } from '../test/support/simulator-fixture';
import { describeFault, describeStep, firmwareBytes, MIN_SPEED_KIB_PER_SECOND, MIN_SPEED_WINDOW_SECONDS, type Fault, type FaultStep, type RunPlan } from './fault-plan';
import { giveTree, makeReadOnly, makeWritable, type ChildIdentity } from './read-only-state';
import type { WireObserver, WireReport } from './wire-observer';

export const RUNNING_VERSION = '0.1.0';
export const TARGET_VERSION = '1.0.0';

/** The flow's settings for quick runs (as the e2e test shortens them). */
const DOWNLOAD_TUNING = {
  readTimeout: 3,
  connectTimeout: 3,
  maxRetries: 3,
  // Not honoured by every version of ota-download yet; set so that a slow server trips it once it is.
  minSpeed: MIN_SPEED_KIB_PER_SECOND,
  minSpeedWindow: MIN_SPEED_WINDOW_SECONDS,
};
/** The example's "simulated burn" delay, long enough for a fault to land inside it. */
const BURN_DELAY_SECONDS = '1';

export interface ChaosContext {
  fixture: SimulatorFixture;
  observer: WireObserver;
  /** Where each run gets its folder (run-<seed>). */
  workDir: string;
  /** Who the Node-RED child runs as (see read-only-state.ts). */
  identity?: ChildIdentity;
  /** Longest wait for an update to end after its console start. */
  updateWaitMs: number;
  /** Longest wait for a re-started update to be taken up (downloading 0 %). */
  takeUpWaitMs: number;
  /** Wait after an update ended before the next step, so that a late duplicate final report is seen. */
  settleMs: number;
  /** Prints the run's events as they happen. */
  trace?: (text: string) => void;
}

export type UpdateOutcome =
  /** done reported and the new version reported after it. */
  | 'done'
  /** fail reported with a result code. */
  | 'fail'
  /** done reported, but the device never reported the new version within the wait. */
  | 'done-no-version'
  /** No final report within the wait. */
  | 'stuck'
  /** A re-start the device did not take up (no downloading 0 % within the wait). */
  | 'not-taken-up';

export interface FinalReport {
  time: number;
  state: 'done' | 'fail';
  qos: 0 | 1;
  resultCode?: number;
  resultMessage?: string;
}

export interface UpdateRecord {
  /** 1 for the first console start of the run, 2 for the re-start. */
  number: number;
  taskId: string;
  /** The task's createdAt, on the stand-in's clock (which the report history also uses). */
  startedAt: number;
  outcome: UpdateOutcome;
  resultCode?: number;
  resultMessage?: string;
  /** done/fail reports for the target version between this start and the next (console history). */
  finals: FinalReport[];
  /** The same count from the broker's device-publish events. */
  wireFinalCount: number;
  waitedMs: number;
}

export interface FiredFault {
  fault: Fault;
  /** Where it struck, e.g. "at 41%"; undefined when its moment never came. */
  struckAt?: string;
}

export interface RunResult {
  index: number;
  plan: RunPlan;
  productId: string;
  deviceName: string;
  firmwareMd5: string;
  updates: UpdateRecord[];
  faults: FiredFault[];
  /** MD5 of the firmware file on disk each time the stand-in saw burning. */
  burnFileMd5s: string[];
  /** MD5s the verify node logged as matching. */
  verifiedMd5s: string[];
  bytesServed: number;
  /** The run's reports and fault marks in one line. */
  timeline: string;
  /** Progress reports whose QoS was not the protocol's (downloading 0, burning/done/fail 1). */
  qosProblems: string[];
  notes: string[];
  harnessError?: string;
  durationMs: number;
  runDir: string;
}

/** The run ended in done and the file the device burned had the firmware's MD5. */
export function doneWithMatchingMd5(result: RunResult): boolean {
  const last = result.updates[result.updates.length - 1];
  if (last?.outcome !== 'done') return false;
  const lastBurn = result.burnFileMd5s[result.burnFileMd5s.length - 1];
  if (lastBurn !== undefined && !lastBurn.startsWith('unreadable')) return lastBurn === result.firmwareMd5;
  // The file was gone before it could be read: what the verify node computed from it then.
  const lastVerified = result.verifiedMd5s[result.verifiedMd5s.length - 1];
  return lastVerified === result.firmwareMd5;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function md5OfFile(file: string): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function mark(text: string): { time: number; text: string } {
  return { time: Date.now(), text };
}

function describeReport(report: WireReport): string {
  if (report.type === 'report_version') return `v${report.version}`;
  if (report.type !== 'report_progress') return report.type;
  const target = report.version === TARGET_VERSION ? '' : `[${report.version}]`;
  switch (report.state) {
    case 'downloading':
      return `dl${report.percent}${target}`;
    case 'burning':
      return `burn${target}`;
    case 'done':
      return `DONE${target}`;
    case 'fail':
      return `FAIL${report.resultCode}${target}`;
    default:
      return `${report.state}${target}`;
  }
}

/** Reports and marks in time order, consecutive downloading reports folded into dl<first>..<last>. */
function buildTimeline(reports: WireReport[], marks: { time: number; text: string }[]): string {
  const items = [
    ...reports.map((report) => ({ time: report.time, text: describeReport(report), report })),
    ...marks.map((entry) => ({ ...entry, report: undefined })),
  ].sort((a, b) => a.time - b.time);
  const parts: string[] = [];
  let downloading: string[] = [];
  const flush = () => {
    if (downloading.length === 0) return;
    const first = downloading[0];
    const last = downloading[downloading.length - 1];
    parts.push(downloading.length === 1 ? `dl${first}` : `dl${first}..${last}`);
    downloading = [];
  };
  for (const item of items) {
    const report = item.report;
    if (report?.type === 'report_progress' && report.state === 'downloading' && report.version === TARGET_VERSION && report.qos === 0) {
      downloading.push(report.percent ?? '?');
      continue;
    }
    flush();
    const expectedQos = report?.type === 'report_progress' ? (report.state === 'downloading' ? 0 : 1) : report ? 1 : undefined;
    parts.push(report && report.qos !== expectedQos ? `${item.text}(QoS${report.qos})` : item.text);
  }
  flush();
  return parts.join(' ');
}

function finalsOf(entries: OtaHistoryEntry[]): FinalReport[] {
  const finals: FinalReport[] = [];
  for (const entry of entries) {
    if (entry.type !== 'report_progress' || entry.version !== TARGET_VERSION) continue;
    if (entry.state !== 'done' && entry.state !== 'fail') continue;
    const final: FinalReport = { time: Date.parse(entry.time), state: entry.state, qos: entry.qos };
    if (entry.state === 'fail') {
      if (entry.result_code !== undefined) final.resultCode = entry.result_code;
      if (entry.result_msg !== undefined) final.resultMessage = entry.result_msg;
    }
    finals.push(final);
  }
  return finals;
}

export async function runChaos(context: ChaosContext, plan: RunPlan, index: number): Promise<RunResult> {
  const { fixture, observer } = context;
  const started = Date.now();
  const trace = (text: string) => context.trace?.(`  [${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${text}`);
  const productId = `CHAOS${index}S${plan.seed}`.slice(0, 32);
  const deviceName = `gateway-${plan.seed}`;
  const runDir = path.join(context.workDir, `run-${plan.seed}`);
  const stateDir = path.join(runDir, 'state');
  const userDir = path.join(runDir, 'node-red');
  await fs.rm(runDir, { recursive: true, force: true });
  await fs.mkdir(stateDir, { recursive: true });
  await fs.mkdir(userDir, { recursive: true });

  const firmware = firmwareBytes(plan);
  const result: RunResult = {
    index,
    plan,
    productId,
    deviceName,
    firmwareMd5: createHash('md5').update(firmware).digest('hex'),
    updates: [],
    faults: plan.faults.map((fault) => ({ fault })),
    burnFileMd5s: [],
    verifiedMd5s: [],
    bytesServed: 0,
    timeline: '',
    qosProblems: [],
    notes: [],
    durationMs: 0,
    runDir,
  };
  const marks: { time: number; text: string }[] = [];
  const addMark = (text: string) => {
    marks.push(mark(text));
    trace(text);
  };

  let nodeRed: NodeRedProcess | undefined;
  let nodeRedLog: WriteStream | undefined;
  let standInDown = false;
  let readOnly = false;
  let armed = false;
  /** Fault actions run one after another; the run waits for them before it clears the faults. */
  let actions: Promise<void> = Promise.resolve();
  const burnReads: Promise<void>[] = [];

  const startNodeRed = async () => {
    const runtime = await NodeRedProcess.start({
      userDir,
      flows,
      credentials,
      uid: context.identity?.uid,
      gid: context.identity?.gid,
      env: { HOME: userDir },
    });
    runtime.on('line', (line) => {
      nodeRedLog?.write(line + '\n');
      const verified = /verified: MD5 ([0-9a-f]{32}) matches/.exec(line);
      if (verified) result.verifiedMd5s.push(verified[1]);
    });
    nodeRedLog?.write(runtime.output + '\n');
    return runtime;
  };

  /** Marks the fault as struck and queues its action behind the actions already under way. */
  const strike = (fired: FiredFault, where: string) => {
    if (fired.struckAt !== undefined) return;
    fired.struckAt = where;
    const fault = fired.fault;
    actions = actions.then(async () => {
      try {
        if (fault.kind === 'kill') {
          addMark('!kill');
          await nodeRed?.kill('SIGKILL');
          nodeRed = undefined;
          await sleep(fault.downMs);
          nodeRed = await startNodeRed();
          addMark('!up');
        } else if (fault.kind === 'restart') {
          addMark('!stop');
          standInDown = true;
          await fixture.stop();
          await sleep(fault.downMs);
          await fixture.start();
          observer.attach(fixture.simulator);
          standInDown = false;
          addMark('!start');
        } else if (fault.kind === 'readonly') {
          await makeReadOnly(stateDir);
          readOnly = true;
          addMark('!ro');
        }
      } catch (error) {
        result.harnessError ??= `${describeFault(fault)}: ${(error as Error).message.split('\n')[0]}`;
      }
    });
  };
  /** Faults due a while after the command, each timed from the command itself. */
  const delayed: Promise<void>[] = [];
  const strikeLater = (fired: FiredFault, where: string, delayMs: number) => {
    fired.struckAt = 'pending';
    delayed.push(
      sleep(delayMs).then(() => {
        fired.struckAt = undefined;
        strike(fired, where);
      }),
    );
  };

  const stepOf = (fault: Fault): FaultStep | undefined => ('step' in fault ? fault.step : undefined);
  /** The faults waiting for this step that have not struck yet. */
  const stepFaults = (at: FaultStep['at']) => result.faults.filter((fired) => stepOf(fired.fault)?.at === at && fired.struckAt === undefined);

  const onCommand = (command: { version: string }) => {
    if (!armed || command.version !== TARGET_VERSION) return;
    for (const fired of stepFaults('command')) {
      const step = stepOf(fired.fault);
      const delayMs = step?.at === 'command' ? step.delayMs : 0;
      strikeLater(fired, `${delayMs}ms after the command`, delayMs);
    }
  };
  const onReport = (report: WireReport) => {
    if (report.type !== 'report_progress' || report.version !== TARGET_VERSION) return;
    if (report.state === 'burning') {
      // The file the device is about to burn, as it is on disk now.
      const file = path.join(stateDir, 'downloads', `FW_${TARGET_VERSION}.bin`);
      burnReads.push(
        md5OfFile(file).then(
          (md5) => void result.burnFileMd5s.push(md5),
          (error: NodeJS.ErrnoException) => void result.burnFileMd5s.push(`unreadable (${error.code ?? error.message})`),
        ),
      );
    }
    if (!armed) return;
    if (report.state === 'downloading') {
      const percent = Number(report.percent);
      for (const fired of stepFaults('download')) {
        const step = stepOf(fired.fault);
        if (step?.at === 'download' && percent >= step.percent) strike(fired, `at ${percent}%`);
      }
    }
    if (report.state === 'burning') for (const fired of stepFaults('burning')) strike(fired, 'at burning');
  };

  /** The console's view of the device, or undefined while the stand-in is down or answering nothing. */
  const deviceView = async (): Promise<DeviceView | undefined> => {
    if (standInDown) return undefined;
    try {
      return await fixture.console.getDevice(productId, deviceName);
    } catch {
      return undefined;
    }
  };

  const waitFor = async <T>(probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number): Promise<T | undefined> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) return undefined;
      await sleep(200);
    }
  };

  const startUpdate = async (number: number): Promise<UpdateRecord> => {
    const task = await fixture.console.startUpdate({ productId, version: TARGET_VERSION, deviceNames: [deviceName] });
    addMark(number === 1 ? '#start' : '#re-start');
    return { number, taskId: task.taskId, startedAt: Date.parse(task.createdAt), outcome: 'stuck', finals: [], wireFinalCount: 0, waitedMs: 0 };
  };

  /** Waits (bounded) until the console shows the update ended: fail, or done with the new version reported. */
  const waitForEnd = async (update: UpdateRecord, budgetMs: number): Promise<void> => {
    const began = Date.now();
    const ended = await waitFor(async () => {
      const view = await deviceView();
      if (!view || view.ota.taskId !== update.taskId) return undefined;
      if (view.ota.state === 'fail') return view;
      if (view.ota.state === 'done' && view.version === TARGET_VERSION) return view;
      return undefined;
    }, budgetMs);
    update.waitedMs = Date.now() - began;
    if (ended) {
      update.outcome = ended.ota.state === 'fail' ? 'fail' : 'done';
      if (ended.ota.result_code !== null && ended.ota.state === 'fail') update.resultCode = ended.ota.result_code;
      if (ended.ota.result_msg && ended.ota.state === 'fail') update.resultMessage = ended.ota.result_msg;
      return;
    }
    const view = await deviceView();
    const doneSeen = view?.ota.taskId === update.taskId && view.ota.state === 'done';
    update.outcome = doneSeen ? 'done-no-version' : 'stuck';
    trace(
      `update ${update.number} ${update.outcome} after ${(update.waitedMs / 1000).toFixed(1)}s (console: ${view?.ota.state ?? 'unreachable'}, version ${view?.version ?? '?'})`,
    );
  };

  /** Waits (bounded) for a downloading 0 % report after the re-start: a download begun anew. */
  const waitForTakeUp = async (update: UpdateRecord): Promise<boolean> => {
    const seen = await waitFor(
      () =>
        observer.reports.find(
          (report) =>
            report.time >= update.startedAt &&
            report.type === 'report_progress' &&
            report.version === TARGET_VERSION &&
            report.state === 'downloading' &&
            report.percent === '0',
        ),
      context.takeUpWaitMs,
    );
    return seen !== undefined;
  };

  let flows: object[] = [];
  let credentials: Record<string, Record<string, string>> = {};

  try {
    // The flow, bound to a fresh device, with quick settings.
    const created = await fixture.createDevice(productId, deviceName);
    const bound = await loadExampleFlow('basic-ota-pipeline', {
      productId,
      deviceName,
      deviceSecret: created.deviceSecret ?? '',
      transport: 'mqtts',
      host: '127.0.0.1',
      port: fixture.addresses.ports.mqtts,
      caCertPem: fixture.caPem,
      stateDir,
      runningVersion: RUNNING_VERSION,
    });
    for (const node of bound.flows) {
      if (node.type === 'ota-download') Object.assign(node, DOWNLOAD_TUNING);
      if (node.type === 'delay') Object.assign(node, { timeout: BURN_DELAY_SECONDS });
      // Errors the Catch node takes go to node-red.log too (the example shows them only in the sidebar).
      if (node.type === 'debug' && node.complete === 'error') Object.assign(node, { console: true });
    }
    flows = bound.flows;
    credentials = bound.credentials;

    await fixture.uploadFirmware(productId, TARGET_VERSION, firmware);
    const serverFaults: FirmwareFaults = {};
    for (const { fault } of result.faults) {
      if (fault.kind === 'cut') Object.assign(serverFaults, { closeAfterBytes: fault.closeAfterBytes, closeAfterResponses: fault.closeAfterResponses });
      if (fault.kind === 'slow') serverFaults.throttleBytesPerSecond = fault.bytesPerSecond;
    }
    if (plan.pacingBytesPerSecond !== undefined && serverFaults.throttleBytesPerSecond === undefined) {
      serverFaults.throttleBytesPerSecond = plan.pacingBytesPerSecond;
    }
    if (Object.keys(serverFaults).length > 0) await fixture.console.setFirmwareFaults(productId, TARGET_VERSION, serverFaults);
    for (const fired of result.faults) if (fired.fault.kind === 'cut' || fired.fault.kind === 'slow') fired.struckAt = 'from the start';

    await prepareUserDir(userDir, flows, credentials);
    await giveTree(runDir, context.identity);
    nodeRedLog = createWriteStream(path.join(runDir, 'node-red.log'));
    observer.watch({ productId, deviceName });
    observer.on('command', onCommand);
    observer.on('report', onReport);

    nodeRed = await startNodeRed();
    const reported = await waitFor(() => observer.reports.find((report) => report.type === 'report_version' && report.version === RUNNING_VERSION), 30_000);
    if (!reported) throw new Error(`the device never reported ${RUNNING_VERSION} after Node-RED started`);

    // The first update, with the faults.
    armed = true;
    const first = await startUpdate(1);
    result.updates.push(first);
    await waitForEnd(first, context.updateWaitMs);
    armed = false;
    await Promise.all(delayed);
    await actions;

    // Faults cleared: the server behaves, the state folder is writable, Node-RED and the stand-in run.
    if (!standInDown) await fixture.console.setFirmwareFaults(productId, TARGET_VERSION, {});
    if (readOnly) {
      await makeWritable(stateDir);
      readOnly = false;
      addMark('!rw');
    }
    if (!nodeRed) {
      nodeRed = await startNodeRed();
      addMark('!up');
    }
    await sleep(context.settleMs);

    // An update that did not end in done must be released: started again, it is taken up and finishes.
    if (first.outcome !== 'done') {
      const again = await startUpdate(2);
      result.updates.push(again);
      const takeUpStarted = Date.now();
      if (await waitForTakeUp(again)) {
        await waitForEnd(again, Math.max(0, context.updateWaitMs - (Date.now() - takeUpStarted)));
      } else {
        again.outcome = 'not-taken-up';
        again.waitedMs = Date.now() - takeUpStarted;
        trace(`re-start not taken up within ${(again.waitedMs / 1000).toFixed(1)}s`);
      }
      await sleep(context.settleMs);
    }
  } catch (error) {
    result.harnessError ??= (error as Error).message.split('\n')[0];
  } finally {
    armed = false;
    await Promise.all(delayed);
    await actions;
    await Promise.all(burnReads);
    observer.off('command', onCommand);
    observer.off('report', onReport);
    await nodeRed?.stop(5000).catch(() => undefined);
    nodeRedLog?.end();
    await makeWritable(stateDir).catch(() => undefined);
    await sleep(300); // the firmware server records a response once its socket is closed
  }

  // The tally, from the stand-in.
  try {
    if (standInDown) throw new Error('the stand-in did not come back');
    const view = await fixture.console.getDevice(productId, deviceName);
    const firmwareRecord = await fixture.console.getFirmware(productId, TARGET_VERSION);
    result.bytesServed = firmwareRecord.served.totalBytes;
    for (const [i, update] of result.updates.entries()) {
      const until = result.updates[i + 1]?.startedAt ?? Infinity;
      const inWindow = (time: number) => time >= update.startedAt && time < until;
      update.finals = finalsOf(view.ota.history.filter((entry) => inWindow(Date.parse(entry.time))));
      update.wireFinalCount = observer.reports.filter(
        (report) =>
          inWindow(report.time) && report.type === 'report_progress' && report.version === TARGET_VERSION && (report.state === 'done' || report.state === 'fail'),
      ).length;
      if (update.wireFinalCount !== update.finals.length) {
        result.notes.push(`update ${update.number}: ${update.finals.length} final reports in the console history, ${update.wireFinalCount} on the wire`);
      }
    }
  } catch (error) {
    result.harnessError ??= `tally: ${(error as Error).message}`;
  }
  for (const report of observer.reports) {
    if (report.type !== 'report_progress' && report.type !== 'report_version') continue;
    const expected = report.type === 'report_progress' && report.state === 'downloading' ? 0 : 1;
    if (report.qos !== expected) result.qosProblems.push(`${describeReport(report)} at QoS ${report.qos}`);
  }
  for (const fired of result.faults) {
    const step = stepOf(fired.fault);
    if (step && fired.struckAt === undefined) result.notes.push(`${describeFault(fired.fault)}: its moment (${describeStep(step)}) never came`);
  }
  result.timeline = buildTimeline(observer.reports, marks);
  result.durationMs = Date.now() - started;
  return result;
}
