/**
 * The basic example flow in a real Node-RED child process, against the stand-in over real sockets:
 * what the cloud sees on the wire, on its firmware server and in the device's state folder.
 */
import { strict as assert } from 'assert';
import { createHash, randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadExampleFlow } from '../../demo/example-flow';
import { NodeRedProcess } from '../../demo/node-red-process';
import type { DevicePublish } from '../../simulator/mqtt-broker';
import type { DeviceView } from '../../simulator/console-api';
import type { FirmwareFaults } from '../../simulator/firmware-store';
import type { UpdateRequest } from '../../simulator/ota-service';
import { startSimulator, type SimulatorFixture } from '../support/simulator-fixture';

const MiB = 1024 * 1024;

interface WireMessage {
  qos: number;
  message: {
    type: string;
    report: { version: string; progress?: { state: string; percent?: string; result_code: string; result_msg: string } };
  };
}

describe('the OTA pipeline end to end (Node-RED child process and the stand-in)', function () {
  this.timeout(180_000);
  let sim: SimulatorFixture;
  let workDir: string;
  let nodeRed: NodeRedProcess | undefined;
  let deviceCount = 0;
  let deviceName: string;
  /** A product per test, so that firmware statistics and faults are the test's own. */
  let PRODUCT_ID: string;
  let stateDir: string;
  let userDir: string;
  let flows: object[];
  let credentials: Record<string, Record<string, string>>;
  let wire: WireMessage[];

  before(async function () {
    sim = await startSimulator();
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'ota-e2e-'));
    sim.simulator.broker.on('device-publish', (publish: DevicePublish) => {
      if (publish.deviceName === deviceName) wire.push({ qos: publish.qos, message: JSON.parse(publish.payload.toString()) as WireMessage['message'] });
    });
  });

  after(async function () {
    await nodeRed?.stop();
    await sim?.close();
    await fs.rm(workDir, { recursive: true, force: true });
  });

  /** A fresh device running 0.1.0 and a fresh Node-RED user directory with the basic example bound to it. */
  async function newDevice(tuning: { readTimeout?: number; maxRetries?: number } = {}): Promise<void> {
    await nodeRed?.stop();
    nodeRed = undefined;
    wire = [];
    deviceName = `pipeline${++deviceCount}`;
    PRODUCT_ID = `E2EPRODUCT${deviceCount}`;
    const created = await sim.createDevice(PRODUCT_ID, deviceName);
    stateDir = path.join(workDir, deviceName, 'state');
    userDir = path.join(workDir, deviceName, 'node-red');
    const bound = await loadExampleFlow('basic-ota-pipeline', {
      productId: PRODUCT_ID,
      deviceName,
      deviceSecret: created.deviceSecret ?? '',
      transport: 'mqtts',
      host: '127.0.0.1',
      port: sim.addresses.ports.mqtts,
      caCertPem: sim.caPem,
      stateDir,
      runningVersion: '0.1.0',
    });
    for (const node of bound.flows) {
      if (node.type === 'ota-download') Object.assign(node, { readTimeout: tuning.readTimeout ?? 3, maxRetries: tuning.maxRetries ?? 3 });
      if (node.type === 'delay') Object.assign(node, { timeout: '0.2' });
    }
    flows = bound.flows;
    credentials = bound.credentials;
  }

  async function startNodeRed(): Promise<void> {
    nodeRed = await NodeRedProcess.start({ userDir, flows, credentials });
  }

  function waitForDevice(condition: (device: DeviceView) => boolean, timeoutMs = 90_000): Promise<DeviceView> {
    return sim.console.waitForDevice(PRODUCT_ID, deviceName, condition, { timeoutMs, intervalMs: 100 }).catch((error: Error) => {
      throw new Error(`${error.message}\n--- Node-RED output ---\n${nodeRed?.output.split('\n').slice(-40).join('\n') ?? ''}`);
    });
  }

  async function upload(version: string, bytes: Buffer, faults?: FirmwareFaults): Promise<void> {
    await sim.uploadFirmware(PRODUCT_ID, version, bytes);
    if (faults) await sim.console.setFirmwareFaults(PRODUCT_ID, version, faults);
  }

  function startUpdate(version: string, extra: Partial<UpdateRequest> = {}) {
    return sim.console.startUpdate({ productId: PRODUCT_ID, version, deviceNames: [deviceName], ...extra });
  }

  const finished = (version: string) => (device: DeviceView) =>
    device.ota.targetVersion === version && (device.ota.state === 'fail' || (device.ota.state === 'done' && device.version === version));

  async function served(version: string) {
    const record = await sim.console.getFirmware(PRODUCT_ID, version);
    assert.ok(record.served, 'the firmware server keeps statistics');
    if (process.env.E2E_DEBUG) console.log(JSON.stringify(record.served.requests, null, 1), '\n', nodeRed?.output);
    return record.served;
  }

  it('runs a whole update with the exact messages on the wire', async function () {
    await newDevice();
    const firmware = randomBytes(3 * MiB + 12345);
    await upload('1.0.0', firmware);
    await startNodeRed();
    await waitForDevice((device) => device.version === '0.1.0');
    await startUpdate('1.0.0');
    const device = await waitForDevice(finished('1.0.0'));
    assert.equal(device.ota.state, 'done');
    assert.equal(device.version, '1.0.0');

    const reports = wire.filter((entry) => entry.message.type === 'report_progress');
    const downloading = reports.filter((entry) => entry.message.report.progress?.state === 'downloading');
    assert.deepEqual(reports[0], {
      qos: 0,
      message: { type: 'report_progress', report: { progress: { state: 'downloading', percent: '0', result_code: '0', result_msg: '' }, version: '1.0.0' } },
    });
    for (const entry of downloading) {
      assert.equal(entry.qos, 0);
      assert.equal(typeof entry.message.report.progress?.percent, 'string');
      assert.match(entry.message.report.progress?.percent ?? '', /^\d{1,3}$/);
    }
    assert.equal(downloading[downloading.length - 1].message.report.progress?.percent, '100');
    const percents = downloading.map((entry) => Number(entry.message.report.progress?.percent));
    assert.deepEqual(
      percents,
      [...percents].sort((a, b) => a - b),
      'percent never goes back',
    );
    const after = reports.slice(downloading.length);
    assert.deepEqual(after, [
      { qos: 1, message: { type: 'report_progress', report: { progress: { state: 'burning', result_code: '0', result_msg: '' }, version: '1.0.0' } } },
      { qos: 1, message: { type: 'report_progress', report: { progress: { state: 'done', result_code: '0', result_msg: '' }, version: '1.0.0' } } },
    ]);
    const versionReports = wire.filter((entry) => entry.message.type === 'report_version');
    assert.deepEqual(versionReports[versionReports.length - 1], { qos: 1, message: { type: 'report_version', report: { version: '1.0.0' } } });

    const stored = JSON.parse(await fs.readFile(path.join(stateDir, 'running-version.json'), 'utf8')) as { version: string };
    assert.equal(stored.version, '1.0.0');
    const left = await fs.readdir(path.join(stateDir, 'downloads')).catch(() => []);
    assert.deepEqual(left, [], 'the firmware file and its checkpoint are removed after done');
    assert.equal((await served('1.0.0')).totalBytes, firmware.length);
  });

  it('resumes from its checkpoint after Node-RED is killed with SIGKILL mid-download', async function () {
    await newDevice();
    const firmware = randomBytes(8 * MiB);
    await upload('1.0.0', firmware, { throttleBytesPerSecond: MiB });
    await startNodeRed();
    await waitForDevice((device) => device.version === '0.1.0');
    await startUpdate('1.0.0');
    await waitForDevice((device) => device.ota.state === 'downloading' && (device.ota.percent ?? 0) >= 40);
    await nodeRed?.kill('SIGKILL');
    const checkpointFile = path.join(stateDir, 'downloads', 'FW_1.0.0.json');
    const checkpoint = JSON.parse(await fs.readFile(checkpointFile, 'utf8')) as { bytesOnDisk: number };
    assert.ok(checkpoint.bytesOnDisk > 0, 'a checkpoint of the bytes on disk survived the kill');
    await startNodeRed();
    const device = await waitForDevice(finished('1.0.0'));
    assert.equal(device.ota.state, 'done');
    const statistics = await served('1.0.0');
    assert.ok(statistics.totalBytes < firmware.length + 2 * MiB, `served ${statistics.totalBytes} bytes for a ${firmware.length}-byte file`);
    const resumed = statistics.requests.find((request) => request.status === 206);
    assert.ok(resumed, 'the restarted download asked for a range');
    assert.match(resumed.range ?? '', /^bytes=[1-9]\d*-$/);
  });

  it('continues a download whose connection drops mid-body from the bytes on disk', async function () {
    await newDevice();
    const firmware = randomBytes(3 * MiB);
    await upload('1.0.0', firmware, { closeAfterBytes: MiB + 777 });
    await startNodeRed();
    await waitForDevice((device) => device.version === '0.1.0');
    await startUpdate('1.0.0');
    const device = await waitForDevice(finished('1.0.0'));
    assert.equal(device.ota.state, 'done');
    const statistics = await served('1.0.0');
    assert.equal(statistics.requests[0].fault, 'closed');
    assert.equal(statistics.requests[1].status, 206);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(statistics.requests[1].range ?? '')?.[1]);
    assert.ok(resumedAt > 0 && resumedAt <= MiB + 777, `resumed from byte ${resumedAt}, within what was received`);
    assert.ok(statistics.totalBytes <= firmware.length + 64 * 1024, `served ${statistics.totalBytes} bytes for a ${firmware.length}-byte file`);
  });

  it('starts from zero, without duplicate bytes, when the server ignores Range', async function () {
    await newDevice();
    const firmware = randomBytes(3 * MiB);
    await upload('1.0.0', firmware, { closeAfterBytes: MiB, ignoreRange: true });
    await startNodeRed();
    await waitForDevice((device) => device.version === '0.1.0');
    await startUpdate('1.0.0');
    const device = await waitForDevice(finished('1.0.0'));
    assert.equal(device.ota.state, 'done', 'the file passed its MD5 check');
    const statistics = await served('1.0.0');
    assert.equal(statistics.requests[1].status, 200);
    assert.equal(statistics.totalBytes, firmware.length + MiB);
  });

  it('starts from zero when the firmware changed (new ETag) while Node-RED was down', async function () {
    await newDevice();
    const firmware = randomBytes(6 * MiB);
    await upload('1.0.0', firmware, { throttleBytesPerSecond: 2 * MiB });
    await startNodeRed();
    await waitForDevice((device) => device.version === '0.1.0');
    await startUpdate('1.0.0');
    await waitForDevice((device) => device.ota.state === 'downloading' && (device.ota.percent ?? 0) >= 30);
    // Checkpoints are saved about once a second: wait for one that holds bytes and their ETag.
    const checkpointFile = path.join(stateDir, 'downloads', 'FW_1.0.0.json');
    for (const deadline = Date.now() + 30_000; ;) {
      const checkpoint = (await fs.readFile(checkpointFile, 'utf8').then(JSON.parse, () => undefined)) as { bytesOnDisk?: number; etag?: string } | undefined;
      if (checkpoint?.etag && (checkpoint.bytesOnDisk ?? 0) > 0) break;
      if (Date.now() > deadline) throw new Error('no checkpoint with bytes and an ETag was saved');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await nodeRed?.kill('SIGKILL');
    // The same bytes uploaded again: a new ETag, the same md5.
    await upload('1.0.0', firmware);
    await startNodeRed();
    const device = await waitForDevice(finished('1.0.0'));
    assert.equal(device.ota.state, 'done');
    const statistics = await served('1.0.0');
    const conditional = statistics.requests.find((request) => request.ifRange);
    assert.ok(conditional, 'the resumed request named the ETag it had');
    assert.equal(conditional.status, 200, 'the server answered the whole new file');
  });

  it('reports fail -3 with the reason when the signed URL has expired', async function () {
    await newDevice();
    await upload('1.0.0', randomBytes(64 * 1024));
    await startNodeRed();
    await waitForDevice((device) => device.version === '0.1.0');
    await startUpdate('1.0.0', { urlTtlSeconds: -60 });
    const device = await waitForDevice(finished('1.0.0'));
    assert.equal(device.ota.state, 'fail');
    assert.equal(device.ota.result_code, -3);
    assert.match(device.ota.result_msg ?? '', /403/);
    const failures = wire.filter((entry) => entry.message.report.progress?.state === 'fail');
    assert.equal(failures.length, 1, 'the failure is reported once');
    assert.equal(failures[0].qos, 1);
    assert.equal(failures[0].message.report.progress?.result_code, '-3');
  });

  it('reports fail -2 when the firmware file does not exist', async function () {
    await newDevice();
    await upload('1.0.0', randomBytes(64 * 1024));
    await startNodeRed();
    await waitForDevice((device) => device.version === '0.1.0');
    await nodeRed?.stop();
    await startUpdate('1.0.0');
    await sim.console.deleteFirmware(PRODUCT_ID, '1.0.0');
    await startNodeRed();
    const device = await waitForDevice(finished('1.0.0'));
    assert.equal(device.ota.state, 'fail');
    assert.equal(device.ota.result_code, -2);
    assert.match(device.ota.result_msg ?? '', /404/);
  });

  it('times out on a server that stalls, then resumes and finishes', async function () {
    await newDevice({ readTimeout: 1 });
    const firmware = randomBytes(2 * MiB);
    await upload('1.0.0', firmware, { stallAfterBytes: 512 * 1024 });
    await startNodeRed();
    await waitForDevice((device) => device.version === '0.1.0');
    await startUpdate('1.0.0');
    const device = await waitForDevice(finished('1.0.0'));
    assert.equal(device.ota.state, 'done');
    const statistics = await served('1.0.0');
    assert.match(statistics.requests[1].range ?? '', /^bytes=[1-9]\d*-$/, 'the retry continued from the bytes on disk');
  });

  it('reports fail -1 when every attempt is cut off before a byte arrives', async function () {
    await newDevice({ maxRetries: 2 });
    await upload('1.0.0', randomBytes(256 * 1024), { closeAfterBytes: 0, closeAfterResponses: 10 });
    await startNodeRed();
    await waitForDevice((device) => device.version === '0.1.0');
    await startUpdate('1.0.0');
    const device = await waitForDevice(finished('1.0.0'));
    assert.equal(device.ota.state, 'fail');
    assert.equal(device.ota.result_code, -1);
    assert.notEqual(device.ota.result_msg, 'time_out');
    assert.equal(wire.filter((entry) => entry.message.report.progress?.state === 'fail').length, 1);
  });

  it('reports fail -4 from verification, deleting the file, when the bytes served do not match the md5', async function () {
    await newDevice();
    await upload('1.0.0', randomBytes(MiB));
    // The stand-in's copy is damaged on its disk: same size, same record and md5, other bytes.
    await fs.writeFile(sim.simulator.firmwareStore.filePath(PRODUCT_ID, '1.0.0'), randomBytes(MiB));
    await startNodeRed();
    await waitForDevice((device) => device.version === '0.1.0');
    await startUpdate('1.0.0');
    const device = await waitForDevice(finished('1.0.0'));
    assert.equal(device.ota.state, 'fail');
    assert.equal(device.ota.result_code, -4);
    assert.match(device.ota.result_msg ?? '', /md5/i);
    assert.equal(device.version, '0.1.0');
    assert.equal(wire.filter((entry) => entry.message.report.progress?.state === 'fail').length, 1, 'the failure is reported once');
    const left = await fs.readdir(path.join(stateDir, 'downloads')).catch(() => []);
    assert.deepEqual(left, [], 'the bad file and its checkpoint are deleted');
  });

  it('drops a running download for a newer command and installs that one', async function () {
    await newDevice();
    const first = randomBytes(6 * MiB);
    const second = randomBytes(MiB);
    await upload('1.0.0', first, { throttleBytesPerSecond: MiB });
    await upload('1.1.0', second);
    await startNodeRed();
    await waitForDevice((device) => device.version === '0.1.0');
    await startUpdate('1.0.0');
    await waitForDevice((device) => device.ota.state === 'downloading' && (device.ota.percent ?? 0) >= 10);
    await startUpdate('1.1.0');
    const device = await waitForDevice(finished('1.1.0'));
    assert.equal(device.ota.state, 'done');
    assert.equal(device.version, '1.1.0');
    assert.ok((await served('1.0.0')).totalBytes < first.length, 'the first download was abandoned');
    assert.equal(createHash('md5').update(second).digest('hex'), (await sim.console.getFirmware(PRODUCT_ID, '1.1.0')).md5sum);
    const left = await fs.readdir(path.join(stateDir, 'downloads')).catch(() => []);
    assert.deepEqual(left, [], 'no partial file of the abandoned version is left');
  });
});
