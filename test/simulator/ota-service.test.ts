import { strict as assert } from 'assert';
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as path from 'path';
import { parseUpdateFirmwareCommand } from '../../lib/ota-messages';
import type { DeviceView } from '../../simulator/console-api';
import { httpRequest } from '../support/http-request';
import { startSimulator, type SimulatorFixture } from '../support/simulator-fixture';
import type { TestOtaDevice } from '../support/test-ota-device';

const PRODUCT = 'OTAPRODUCT';
const OTHER_PRODUCT = 'OTHERPRODUCT';

function md5Of(bytes: Buffer): string {
  return createHash('md5').update(bytes).digest('hex');
}

/** Connects the device and reports its running version, returning once the cloud has answered. */
async function online(sim: SimulatorFixture, deviceName: string, version: string, productId = PRODUCT): Promise<TestOtaDevice> {
  const device = await sim.connectDevice(productId, deviceName);
  await device.reportVersion(version);
  await device.nextMessage('report_version_rsp');
  return device;
}

function stateOf(device: DeviceView): string | null {
  return device.ota.state;
}

interface JournalLine {
  seq: number;
  change: { report?: { type: string; version?: string }; deviceName?: string };
}

function journalPath(sim: SimulatorFixture): string {
  return path.join(sim.dataDir, 'ota-state.journal.jsonl');
}

async function readJournal(sim: SimulatorFixture): Promise<JournalLine[]> {
  const text = await fs.readFile(journalPath(sim), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as JournalLine);
}

/** Waits until the journal holds a line that matches (appends come in batches, a little after the report). */
async function waitForJournal(sim: SimulatorFixture, matches: (lines: JournalLine[]) => boolean): Promise<JournalLine[]> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const lines = await readJournal(sim);
    if (matches(lines)) return lines;
    if (Date.now() > deadline) throw new Error(`the journal never held the expected lines; it holds ${lines.length}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function reportedVersion(line: JournalLine, version: string): boolean {
  return line.change.report?.type === 'report_version' && line.change.report.version === version;
}

/** Updates the devices to the version through every step a device reports, and waits until the journal holds its last reports. */
async function updateThroughEveryStep(sim: SimulatorFixture, devices: Record<string, TestOtaDevice>, version: string): Promise<void> {
  await sim.console.startUpdate({ productId: PRODUCT, version, deviceNames: Object.keys(devices) });
  await Promise.all(
    Object.values(devices).map(async (device) => {
      await device.nextMessage('update_firmware');
      await device.reportProgress(version, { state: 'downloading', percent: 50 });
      await device.reportProgress(version, { state: 'downloading', percent: 100 });
      await device.reportProgress(version, { state: 'burning' });
      await device.reportProgress(version, { state: 'done' });
      await device.reportVersion(version);
      await device.nextMessage('report_version_rsp');
    }),
  );
  const count = Object.keys(devices).length;
  await waitForJournal(sim, (lines) => lines.filter((line) => reportedVersion(line, version)).length === count);
}

/** What the console shows of the OTA state: every task and each device's version, status and history. */
async function consoleState(sim: SimulatorFixture, deviceNames: string[]): Promise<unknown> {
  const devices = await Promise.all(deviceNames.map((name) => sim.console.getDevice(PRODUCT, name)));
  return { tasks: await sim.console.listTasks(), devices: devices.map((device) => ({ version: device.version, ota: device.ota })) };
}

describe('cloud OTA service', () => {
  let sim: SimulatorFixture;
  let firmware: Buffer;

  beforeEach(async () => {
    sim = await startSimulator();
    firmware = randomBytes(64 * 1024 + 3);
    await sim.uploadFirmware(PRODUCT, '2.0.0', firmware);
    for (const name of ['dev1', 'dev2', 'dev3']) await sim.createDevice(PRODUCT, name);
  });

  afterEach(async () => {
    await sim.close();
  });

  describe('report_version', () => {
    it('answers with report_version_rsp carrying result_code as the number 0 and the reported version', async () => {
      const device = await sim.connectDevice(PRODUCT, 'dev1');
      await device.reportVersion('1.0.0');
      const answer = await device.nextMessage('report_version_rsp');
      assert.deepEqual(answer, { type: 'report_version_rsp', result_code: 0, result_msg: 'success', version: '1.0.0' });
      const view = await sim.console.getDevice(PRODUCT, 'dev1');
      assert.equal(view.version, '1.0.0');
      assert.equal(view.online, true);
      assert.deepEqual(
        view.ota.history.map((entry) => [entry.type, entry.version, entry.qos]),
        [['report_version', '1.0.0', 1]],
      );
    });

    it('accepts an MQTT 3.1 device', async () => {
      const device = await sim.connectDevice(PRODUCT, 'dev1', { protocolVersion: 3, transport: 'mqtt' });
      await device.reportVersion('1.0.0');
      assert.equal((await device.nextMessage('report_version_rsp')).result_code, 0);
    });

    it('records a malformed report as an error in the history and answers nothing', async () => {
      const device = await sim.connectDevice(PRODUCT, 'dev1');
      await device.publish('{"type":"report_version","report":{"version":"not a version!"}}', 1);
      await device.publish('not json', 0);
      const view = await sim.console.waitForDevice(PRODUCT, 'dev1', (seen) => seen.ota.history.length === 2);
      assert.deepEqual(
        view.ota.history.map((entry) => [entry.type, entry.qos]),
        [
          ['invalid', 1],
          ['invalid', 0],
        ],
      );
      assert.match(view.ota.history[0].error ?? '', /report\.version/);
      assert.match(view.ota.history[1].error ?? '', /not valid JSON/);
      assert.equal(view.version, null);
      await device.reportVersion('1.0.0');
      await device.nextMessage('report_version_rsp');
      assert.deepEqual(
        device.received.map((message) => message.type),
        ['report_version_rsp'],
      );
    });
  });

  describe('choosing the devices of an update', () => {
    let devices: Record<string, TestOtaDevice>;

    beforeEach(async () => {
      await sim.createDevice(OTHER_PRODUCT, 'dev1');
      devices = {
        dev1: await online(sim, 'dev1', '1.0.0'),
        dev2: await online(sim, 'dev2', '1.1.0'),
        // dev3 has never connected, so its version is unknown.
        other: await online(sim, 'dev1', '1.0.0', OTHER_PRODUCT),
      };
    });

    it('(1) targets the devices of the product on one of the source versions', async () => {
      const task = await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', sourceVersions: ['1.0.0'] });
      assert.equal(task.mode, 'source-versions');
      assert.deepEqual(
        task.devices.map((device) => [device.deviceName, device.state, device.fromVersion]),
        [['dev1', 'delivered', '1.0.0']],
      );
      const command = await devices.dev1.nextMessage('update_firmware');
      assert.equal(command.version, '2.0.0');
      assert.equal(command.md5sum, md5Of(firmware));
      assert.equal(command.file_size, firmware.length);
      assert.deepEqual(devices.dev2.unreadMessages(), []);
      assert.deepEqual(devices.other.unreadMessages(), []);
    });

    it('(2) targets the named devices that are on one of the source versions', async () => {
      const task = await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev1', 'dev2', 'dev3'], sourceVersions: ['1.1.0'] });
      assert.equal(task.mode, 'devices-on-source-versions');
      assert.deepEqual(
        task.devices.map((device) => device.deviceName),
        ['dev2'],
      );
      await devices.dev2.nextMessage('update_firmware');
      assert.deepEqual(devices.dev1.unreadMessages(), []);
    });

    it('(3) targets the named devices whatever they run, leaving offline ones pending', async () => {
      const task = await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev2', 'dev3'] });
      assert.equal(task.mode, 'devices');
      assert.deepEqual(
        task.devices.map((device) => [device.deviceName, device.state]),
        [
          ['dev2', 'delivered'],
          ['dev3', 'pending'],
        ],
      );
      await devices.dev2.nextMessage('update_firmware');
      assert.deepEqual(devices.dev1.unreadMessages(), []);
    });

    it('targets every device of the product when neither devices nor versions are given', async () => {
      const task = await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0' });
      assert.equal(task.mode, 'all-devices');
      assert.deepEqual(
        task.devices.map((device) => device.deviceName),
        ['dev1', 'dev2', 'dev3'],
      );
      await devices.dev1.nextMessage('update_firmware');
      await devices.dev2.nextMessage('update_firmware');
      assert.deepEqual(devices.other.unreadMessages(), []);
    });
  });

  describe('delivering the command', () => {
    it('sends update_firmware with QoS 0 and a signed HTTPS URL that downloads the firmware', async () => {
      const device = await online(sim, 'dev1', '1.0.0');
      const delivered = new Promise<number>((resolve) =>
        device.client.on('message', (_topic, _payload, packet) => {
          if (JSON.parse(_payload.toString()).type === 'update_firmware') resolve(packet.qos);
        }),
      );
      await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev1'] });
      const command = parseUpdateFirmwareCommand(await device.nextMessage('update_firmware'));
      assert.ok(command.ok, 'the command parses strictly');
      assert.equal(await delivered, 0);
      assert.match(command.value.url, /^https:\/\/127\.0\.0\.1:\d+\/\d+_OTAPRODUCT_2\.0\.0\?sign=[0-9a-f]{64}&t=\d+$/);
      const download = await httpRequest(command.value.url, { ca: sim.caPem });
      assert.equal(download.status, 200);
      assert.equal(md5Of(download.body), command.value.md5sum);
    });

    it('uses a plain HTTP URL and the given lifetime when the task asks for them', async () => {
      const device = await online(sim, 'dev1', '1.0.0');
      await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev1'], urlScheme: 'http', urlTtlSeconds: -10 });
      const command = await device.nextMessage('update_firmware');
      assert.match(String(command.url), /^http:\/\//);
      assert.equal((await httpRequest(String(command.url))).status, 403);
    });

    it('pushes a pending command right after the report_version_rsp of a device that comes online', async () => {
      await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev3'] });
      assert.equal(stateOf(await sim.console.getDevice(PRODUCT, 'dev3')), 'pending');
      const device = await sim.connectDevice(PRODUCT, 'dev3');
      await device.reportVersion('1.0.0');
      await device.nextMessage('update_firmware');
      assert.deepEqual(
        device.received.map((message) => message.type),
        ['report_version_rsp', 'update_firmware'],
      );
      const view = await sim.console.getDevice(PRODUCT, 'dev3');
      assert.equal(view.ota.state, 'delivered');
      assert.equal(view.ota.targetVersion, '2.0.0');
    });

    it('pushes the command again to a device that restarts mid-download and reports its old version', async () => {
      const first = await online(sim, 'dev1', '1.0.0');
      const task = await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev1'] });
      await first.nextMessage('update_firmware');
      await first.reportProgress('2.0.0', { state: 'downloading', percent: 40 });
      await sim.console.waitForDevice(PRODUCT, 'dev1', (view) => view.ota.state === 'downloading');
      await first.close();
      const second = await sim.connectDevice(PRODUCT, 'dev1');
      await second.reportVersion('1.0.0');
      await second.nextMessage('update_firmware');
      assert.deepEqual(
        second.received.map((message) => message.type),
        ['report_version_rsp', 'update_firmware'],
      );
      const status = (await sim.console.getTask(task.taskId)).devices[0];
      assert.equal(status.deliveries, 2);
      assert.equal(status.state, 'delivered');
    });

    it('does not push again once the device reports the target version, and marks it done', async () => {
      const device = await online(sim, 'dev1', '1.0.0');
      await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev1'] });
      await device.nextMessage('update_firmware');
      await device.reportVersion('2.0.0');
      await device.nextMessage('report_version_rsp');
      const view = await sim.console.getDevice(PRODUCT, 'dev1');
      assert.equal(view.ota.state, 'done');
      assert.equal(view.version, '2.0.0');
      assert.equal((await sim.console.getTask(view.ota.taskId ?? '')).devices[0].deliveries, 1);
      assert.deepEqual(device.unreadMessages(), []);
    });
  });

  describe('following progress', () => {
    let device: TestOtaDevice;
    let taskId: string;

    beforeEach(async () => {
      device = await online(sim, 'dev1', '1.0.0');
      taskId = (await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev1'] })).taskId;
      await device.nextMessage('update_firmware');
    });

    it('moves through downloading, burning and done, recording each report with its QoS', async () => {
      await device.reportProgress('2.0.0', { state: 'downloading', percent: 0 });
      await device.reportProgress('2.0.0', { state: 'downloading', percent: 57 });
      const downloading = await sim.console.waitForDevice(PRODUCT, 'dev1', (view) => view.ota.percent === 57);
      assert.equal(downloading.ota.state, 'downloading');
      await device.reportProgress('2.0.0', { state: 'burning' });
      assert.equal(stateOf(await sim.console.waitForDevice(PRODUCT, 'dev1', (view) => view.ota.state !== 'downloading')), 'burning');
      await device.reportProgress('2.0.0', { state: 'done' });
      await device.reportVersion('2.0.0');
      await device.nextMessage('report_version_rsp');
      const view = await sim.console.getDevice(PRODUCT, 'dev1');
      assert.equal(view.ota.state, 'done');
      assert.equal(view.ota.result_code, 0);
      assert.equal(view.version, '2.0.0');
      assert.deepEqual(
        view.ota.history.map((entry) => [entry.type, entry.state ?? null, entry.percent ?? null, entry.qos, entry.version]),
        [
          ['report_version', null, null, 1, '1.0.0'],
          ['report_progress', 'downloading', 0, 0, '2.0.0'],
          ['report_progress', 'downloading', 57, 0, '2.0.0'],
          ['report_progress', 'burning', null, 1, '2.0.0'],
          ['report_progress', 'done', null, 1, '2.0.0'],
          ['report_version', null, null, 1, '2.0.0'],
        ],
      );
      for (const entry of view.ota.history) assert.ok(!Number.isNaN(Date.parse(entry.time)), 'each report has its time');
      assert.equal((await sim.console.getTask(taskId)).devices[0].state, 'done');
    });

    it('records the result code and message of a failure', async () => {
      await device.reportProgress('2.0.0', { state: 'fail', resultCode: -4, resultMessage: 'md5 mismatch: got 0123' });
      const view = await sim.console.waitForDevice(PRODUCT, 'dev1', (seen) => seen.ota.state === 'fail');
      assert.equal(view.ota.result_code, -4);
      assert.equal(view.ota.result_msg, 'md5 mismatch: got 0123');
      const entry = view.ota.history[view.ota.history.length - 1];
      assert.deepEqual([entry.state, entry.result_code, entry.result_msg, entry.qos], ['fail', -4, 'md5 mismatch: got 0123', 1]);
    });

    it('records but does not apply progress for a version the task does not target', async () => {
      await device.reportProgress('9.9.9', { state: 'done' });
      const view = await sim.console.waitForDevice(PRODUCT, 'dev1', (seen) => seen.ota.history.length === 2);
      assert.equal(view.ota.state, 'delivered');
      assert.match(view.ota.history[1].note ?? '', /targets 2\.0\.0/);
    });

    it('replaces the unfinished task of a device with a newer one', async () => {
      await sim.uploadFirmware(PRODUCT, '3.0.0', randomBytes(1000));
      const newer = await sim.console.startUpdate({ productId: PRODUCT, version: '3.0.0', deviceNames: ['dev1'] });
      assert.equal((await device.nextMessage('update_firmware')).version, '3.0.0');
      const older = await sim.console.getTask(taskId);
      assert.equal(older.devices[0].state, 'cancelled');
      const view = await sim.console.getDevice(PRODUCT, 'dev1');
      assert.deepEqual([view.ota.taskId, view.ota.targetVersion, view.ota.state], [newer.taskId, '3.0.0', 'delivered']);
    });
  });

  it('times a device out after timeoutSeconds from delivery without a result', async () => {
    const device = await online(sim, 'dev1', '1.0.0');
    await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev1'], timeoutSeconds: 1 });
    await device.nextMessage('update_firmware');
    await device.reportProgress('2.0.0', { state: 'downloading', percent: 10 });
    const view = await sim.console.waitForDevice(PRODUCT, 'dev1', (seen) => seen.ota.state === 'timeout');
    assert.equal(view.ota.result_code, -1);
  });

  describe('across a restart of the stand-in', () => {
    it('keeps tasks, statuses and reported versions in ota-state.json and still delivers a pending command', async () => {
      const device1 = await online(sim, 'dev1', '1.0.0');
      const task = await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev1', 'dev3'] });
      await device1.nextMessage('update_firmware');
      await device1.reportProgress('2.0.0', { state: 'downloading', percent: 20 });
      await sim.console.waitForDevice(PRODUCT, 'dev1', (view) => view.ota.state === 'downloading');
      await sim.restart();
      const state = JSON.parse(await fs.readFile(path.join(sim.dataDir, 'ota-state.json'), 'utf8'));
      assert.equal(state.tasks.length, 1);
      const restored = await sim.console.getTask(task.taskId);
      assert.deepEqual(
        restored.devices.map((device) => [device.deviceName, device.state, device.percent ?? null]),
        [
          ['dev1', 'downloading', 20],
          ['dev3', 'pending', null],
        ],
      );
      assert.equal((await sim.console.getDevice(PRODUCT, 'dev1')).version, '1.0.0');
      const device3 = await sim.connectDevice(PRODUCT, 'dev3');
      await device3.reportVersion('0.9.0');
      assert.equal((await device3.nextMessage('update_firmware')).version, '2.0.0');
    });

    it('keeps every task, status and report history after many updates, across one restart and the next', async () => {
      const devices = { dev1: await online(sim, 'dev1', '1.0.0'), dev2: await online(sim, 'dev2', '1.0.0') };
      for (let update = 1; update <= 8; update++) {
        await sim.uploadFirmware(PRODUCT, `3.0.${update}`, firmware.subarray(0, 1000 + update));
        await updateThroughEveryStep(sim, devices, `3.0.${update}`);
      }
      const before = await consoleState(sim, ['dev1', 'dev2', 'dev3']);
      await sim.restart();
      assert.deepEqual(await consoleState(sim, ['dev1', 'dev2', 'dev3']), before);
      await sim.restart();
      assert.deepEqual(await consoleState(sim, ['dev1', 'dev2', 'dev3']), before);
      const dev1 = await sim.console.getDevice(PRODUCT, 'dev1');
      assert.equal(dev1.version, '3.0.8');
      // The first report_version, then five reports for each update.
      assert.equal(dev1.ota.history.length, 1 + 8 * 5);
      const tasks = await sim.console.listTasks(PRODUCT);
      assert.equal(tasks.length, 8);
      assert.ok(tasks.every((task) => task.devices.every((status) => status.state === 'done')));
    });

    it('picks up what the journal held at a crash, skipping the torn line the crash left at its end', async () => {
      const device = await online(sim, 'dev1', '1.0.0');
      const task = await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev1'] });
      await device.nextMessage('update_firmware');
      await device.reportProgress('2.0.0', { state: 'downloading', percent: 40 });
      await waitForJournal(sim, (lines) => lines.some((line) => line.change.report?.type === 'report_progress'));
      // What a crash leaves on disk: the files as they are now, without the folding a clean stop does.
      const snapshotPath = path.join(sim.dataDir, 'ota-state.json');
      const snapshotAtCrash = await fs.readFile(snapshotPath, 'utf8').catch(() => undefined);
      const journalAtCrash = await fs.readFile(journalPath(sim), 'utf8');
      await sim.stop();
      if (snapshotAtCrash === undefined) await fs.rm(snapshotPath, { force: true });
      else await fs.writeFile(snapshotPath, snapshotAtCrash);
      await fs.writeFile(journalPath(sim), `${journalAtCrash}{"seq":${Number.MAX_SAFE_INTEGER},"change":{"report":{"time":"20`);
      await sim.start();

      const restored = await sim.console.getTask(task.taskId);
      assert.deepEqual(
        restored.devices.map((status) => [status.deviceName, status.state, status.percent, status.deliveries]),
        [['dev1', 'downloading', 40, 1]],
      );
      const view = await sim.console.getDevice(PRODUCT, 'dev1');
      assert.deepEqual(
        view.ota.history.map((entry) => [entry.type, entry.percent]),
        [
          ['report_version', undefined],
          ['report_progress', 40],
        ],
      );
      // Opening folded the journal into ota-state.json, and the next reports are journaled on whole lines.
      assert.equal(await fs.readFile(journalPath(sim), 'utf8'), '');
      const again = await sim.connectDevice(PRODUCT, 'dev1');
      await again.reportProgress('2.0.0', { state: 'downloading', percent: 60 });
      await sim.console.waitForDevice(PRODUCT, 'dev1', (seen) => seen.ota.percent === 60);
      await sim.restart();
      assert.equal((await sim.console.getDevice(PRODUCT, 'dev1')).ota.percent, 60);
    });

    it('loads an ota-state.json written by the earlier version, alone and pretty-printed, and goes on from it', async () => {
      await sim.stop();
      const time = new Date().toISOString();
      const earlier = {
        nextTaskId: 8,
        tasks: [
          {
            taskId: '7',
            productId: PRODUCT,
            version: '2.0.0',
            md5sum: md5Of(firmware),
            file_size: firmware.length,
            mode: 'devices',
            deviceNames: ['dev1'],
            timeoutSeconds: 900,
            urlScheme: 'https',
            urlTtlSeconds: 86400,
            createdAt: time,
            devices: [{ deviceName: 'dev1', state: 'downloading', fromVersion: '1.0.0', percent: 30, deliveries: 1, deliveredAt: time, updatedAt: time }],
          },
        ],
        devices: [
          {
            productId: PRODUCT,
            deviceName: 'dev1',
            version: '1.0.0',
            versionReportedAt: time,
            taskId: '7',
            history: [{ time, qos: 1, type: 'report_version', version: '1.0.0' }],
          },
        ],
      };
      await fs.writeFile(path.join(sim.dataDir, 'ota-state.json'), `${JSON.stringify(earlier, null, 2)}\n`);
      await sim.start();

      const view = await sim.console.getDevice(PRODUCT, 'dev1');
      assert.deepEqual([view.version, view.ota.taskId, view.ota.state, view.ota.percent, view.ota.history.length], ['1.0.0', '7', 'downloading', 30, 1]);
      const device = await sim.connectDevice(PRODUCT, 'dev1');
      await device.reportProgress('2.0.0', { state: 'downloading', percent: 70 });
      await sim.console.waitForDevice(PRODUCT, 'dev1', (seen) => seen.ota.percent === 70);
      assert.equal((await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev2'] })).taskId, '8');
      await sim.restart();
      assert.equal((await sim.console.getDevice(PRODUCT, 'dev1')).ota.percent, 70);
      assert.deepEqual(
        (await sim.console.listTasks(PRODUCT)).map((task) => task.taskId),
        ['7', '8'],
      );
    });
  });

  describe('the state files during a storm of reports', () => {
    it('appends about the same bytes for each update however many came before, and leaves ota-state.json alone', async () => {
      const devices = { dev1: await online(sim, 'dev1', '1.0.0'), dev2: await online(sim, 'dev2', '1.0.0'), dev3: await online(sim, 'dev3', '1.0.0') };
      const versions = Array.from({ length: 10 }, (_, index) => `3.0.${index + 1}`);
      for (const version of versions) await sim.uploadFirmware(PRODUCT, version, firmware.subarray(0, 1000));
      await updateThroughEveryStep(sim, devices, versions[0]);
      // A clean stop folds the journal into ota-state.json, so the storm below starts from a snapshot and an empty journal.
      await sim.restart();
      for (const name of ['dev1', 'dev2', 'dev3'] as const) devices[name] = await online(sim, name, versions[0]);
      const snapshotPath = path.join(sim.dataDir, 'ota-state.json');
      const snapshotBefore = await fs.stat(snapshotPath);

      const appended: number[] = [];
      for (const version of versions.slice(1)) {
        const sizeBefore = (await fs.stat(journalPath(sim))).size;
        await updateThroughEveryStep(sim, devices, version);
        appended.push((await fs.stat(journalPath(sim))).size - sizeBefore);
      }
      const snapshotAfter = await fs.stat(snapshotPath);
      assert.deepEqual([snapshotAfter.ino, snapshotAfter.size], [snapshotBefore.ino, snapshotBefore.size], 'ota-state.json was not rewritten');
      // How many lines a batch holds depends on timing (a status changed twice in one batch is written once), hence the factor 2.
      assert.ok(Math.max(...appended) <= 2 * Math.min(...appended), `bytes appended per update: ${appended.join(', ')}`);
      await sim.restart();
      const stateSize = (await fs.stat(snapshotPath)).size;
      assert.ok(appended[appended.length - 1] * 3 < stateSize, `the last update appended ${appended[appended.length - 1]} bytes to a state of ${stateSize}`);
      assert.equal((await sim.console.getDevice(PRODUCT, 'dev3')).ota.history.length, 1 + 1 + 10 * 5);
    });
  });
});
