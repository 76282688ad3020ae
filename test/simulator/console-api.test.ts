import { strict as assert } from 'assert';
import { createHash, randomBytes, X509Certificate } from 'crypto';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Readable } from 'stream';
import { parseDeviceInfo } from '../../lib/device-info';
import { signConnection } from '../../lib/device-signing';
import { ConsoleApiError } from '../../simulator/console-client';
import { httpRequest } from '../support/http-request';
import { attemptConnection, connectionClosed } from '../support/mqtt-connection-attempt';
import { startSimulator, type SimulatorFixture } from '../support/simulator-fixture';

const PRODUCT = 'CONSOLEPROD';

function md5Of(bytes: Buffer): string {
  return createHash('md5').update(bytes).digest('hex');
}

function sha256Of(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A raw request to the console, for answers the typed client does not expose (status codes, bad bodies). */
async function api(sim: SimulatorFixture, method: string, pathAndQuery: string, body?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const answer = await httpRequest(`${sim.addresses.http}${pathAndQuery}`, {
    method,
    body,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
  });
  assert.match(String(answer.headers['content-type']), /^application\/json/);
  return { status: answer.status, json: JSON.parse(answer.body.toString('utf8')) as Record<string, unknown> };
}

async function rejectsWith(promise: Promise<unknown>, status: number, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConsoleApiError, `expected a ConsoleApiError, got ${String(error)}`);
    assert.equal(error.status, status);
    assert.match(error.message, message);
    return true;
  });
}

describe('console API', () => {
  let sim: SimulatorFixture;

  beforeEach(async () => {
    sim = await startSimulator();
  });

  afterEach(async () => {
    await sim.close();
  });

  describe('devices', () => {
    it('creates a key device and answers 201 with its device_info.json', async () => {
      const { status, json } = await api(sim, 'POST', '/api/devices', JSON.stringify({ productId: PRODUCT, deviceName: 'dev1' }));
      assert.equal(status, 201);
      const info = parseDeviceInfo(JSON.stringify(json));
      assert.deepEqual([info.productId, info.deviceName, info.authMode], [PRODUCT, 'dev1', 'key']);
      assert.equal(Buffer.from(info.deviceSecret ?? '', 'base64').length, 16);
    });

    it('creates a cert device whose certificate is issued by the CA served at /api/ca', async () => {
      const { deviceInfo: info } = await sim.createDevice(PRODUCT, 'certdev', 'cert');
      assert.equal(info.auth_mode, 'CERT');
      const certInfo = info.cert_deviceinfo as Record<string, string>;
      const caPem = await sim.console.caPem();
      assert.equal(caPem, await fs.readFile(sim.addresses.caCertPath, 'utf8'));
      assert.ok(new X509Certificate(certInfo.devCertPem).verify(new X509Certificate(caPem).publicKey));
      const device = await sim.connectDevice(PRODUCT, 'certdev');
      await device.reportVersion('1.0.0');
      assert.equal((await device.nextMessage('report_version_rsp')).result_code, 0);
    });

    it('answers 409 for a device that exists and 400 for bad fields or bodies', async () => {
      await sim.console.createDevice(PRODUCT, 'dev1');
      await rejectsWith(sim.console.createDevice(PRODUCT, 'dev1'), 409, /already exists/);
      await rejectsWith(sim.console.createDevice('bad product', 'dev1'), 400, /productId/);
      const badMode = await api(sim, 'POST', '/api/devices', JSON.stringify({ productId: PRODUCT, deviceName: 'dev2', authMode: 'password' }));
      assert.deepEqual([badMode.status, badMode.json.error], [400, 'authMode must be "key" or "cert"']);
      const missing = await api(sim, 'POST', '/api/devices', JSON.stringify({ productId: PRODUCT }));
      assert.deepEqual([missing.status, missing.json.error], [400, 'deviceName is missing']);
      const notJson = await api(sim, 'POST', '/api/devices', '{"productId":');
      assert.deepEqual([notJson.status, notJson.json.error], [400, 'the request body is not valid JSON']);
    });

    it('lists the devices of one product with their online state and reported version', async () => {
      await sim.createDevice(PRODUCT, 'dev1');
      await sim.createDevice(PRODUCT, 'dev2');
      await sim.createDevice('OTHERPROD', 'dev1');
      const device = await sim.connectDevice(PRODUCT, 'dev1');
      await device.reportVersion('1.2.3');
      await device.nextMessage('report_version_rsp');
      const listed = await sim.console.listDevices(PRODUCT);
      assert.deepEqual(
        listed.map((entry) => [entry.deviceName, entry.online, entry.connectCount, entry.version]),
        [
          ['dev1', true, 1, '1.2.3'],
          ['dev2', false, 0, null],
        ],
      );
      assert.equal((await sim.console.listDevices()).length, 3);
      assert.ok(!JSON.stringify(listed).includes('deviceSecret'), 'the list does not hand out secrets');
    });

    it('shows one device with its OTA status, and 404 for an unknown one', async () => {
      await sim.createDevice(PRODUCT, 'dev1');
      const view = await sim.console.getDevice(PRODUCT, 'dev1');
      assert.deepEqual(view.ota, { taskId: null, targetVersion: null, state: null, percent: null, result_code: null, result_msg: null, history: [] });
      assert.deepEqual([view.productId, view.deviceName, view.authMode, view.online, view.connectCount, view.version], [PRODUCT, 'dev1', 'key', false, 0, null]);
      await rejectsWith(sim.console.getDevice(PRODUCT, 'nobody'), 404, /does not exist/);
    });

    it('deletes an online device: its connection ends at once, its update is cancelled and it can no longer connect', async () => {
      const created = await sim.createDevice(PRODUCT, 'dev1');
      const device = await sim.connectDevice(PRODUCT, 'dev1');
      await device.reportVersion('1.2.3');
      await device.nextMessage('report_version_rsp');
      await sim.uploadFirmware(PRODUCT, '2.0.0', randomBytes(100));
      const task = await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev1'] });
      const closed = connectionClosed(device.client);
      const deleted = await api(sim, 'DELETE', `/api/devices/${PRODUCT}/dev1`);
      assert.deepEqual([deleted.status, deleted.json], [200, { productId: PRODUCT, deviceName: 'dev1', deleted: true, disconnected: true }]);
      await closed;
      assert.equal((await sim.console.getTask(task.taskId)).devices[0].state, 'cancelled');
      const again = await attemptConnection(sim.addresses.mqtt, signConnection(created, created.deviceSecret ?? ''));
      assert.deepEqual([again.outcome, again.outcome === 'refused' ? again.returnCode : null], ['refused', 5]);
      await rejectsWith(sim.console.deleteDevice(PRODUCT, 'dev1'), 404, /does not exist/);

      await sim.restart();
      await rejectsWith(sim.console.getDevice(PRODUCT, 'dev1'), 404, /does not exist/);
      assert.deepEqual(await sim.console.listDevices(PRODUCT), []);
      await sim.createDevice(PRODUCT, 'dev1');
      const fresh = await sim.console.getDevice(PRODUCT, 'dev1');
      assert.deepEqual([fresh.version, fresh.ota.taskId, fresh.ota.history], [null, null, []], 'made again under its name, it starts afresh');
    });
  });

  describe('firmware', () => {
    it('streams an upload to disk and answers its md5 and size', async () => {
      const bytes = randomBytes(300 * 1024);
      const chunks = [bytes.subarray(0, 100000), bytes.subarray(100000, 200000), bytes.subarray(200000)];
      const uploaded = await sim.console.uploadFirmware(PRODUCT, '1.0.0', Readable.from(chunks));
      assert.deepEqual(uploaded, { productId: PRODUCT, version: '1.0.0', md5sum: md5Of(bytes), file_size: bytes.length, sha256: sha256Of(bytes), outcome: 'created' });
      assert.deepEqual(await fs.readFile(path.join(sim.dataDir, 'firmware', PRODUCT, '1.0.0.bin')), bytes);
    });

    it('uploads a file from disk', async () => {
      const bytes = randomBytes(5000);
      const file = path.join(sim.dataDir, 'upload-me.bin');
      await fs.writeFile(file, bytes);
      const uploaded = await sim.console.uploadFirmwareFile(PRODUCT, '1.0.1', file);
      assert.equal(uploaded.md5sum, md5Of(bytes));
    });

    it('answers 409 to other content under an uploaded version, keeping the stored firmware', async () => {
      const bytes = randomBytes(1000);
      await sim.console.uploadFirmware(PRODUCT, '1.0.0', bytes);
      const stored = await sim.console.getFirmware(PRODUCT, '1.0.0');
      await rejectsWith(sim.console.uploadFirmware(PRODUCT, '1.0.0', randomBytes(1000)), 409, /1\.0\.0 of product CONSOLEPROD already exists with other content/);
      // Announced with another size, it is refused before the body is read; the client still gets the answer.
      const file = path.join(sim.dataDir, 'other.bin');
      await fs.writeFile(file, randomBytes(300 * 1024));
      await rejectsWith(sim.console.uploadFirmwareFile(PRODUCT, '1.0.0', file), 409, /already exists with other content/);
      assert.deepEqual(await sim.console.getFirmware(PRODUCT, '1.0.0'), stored);
      assert.deepEqual(await fs.readFile(path.join(sim.dataDir, 'firmware', PRODUCT, '1.0.0.bin')), bytes);
    });

    it('answers 200 with the stored record to the same content again, the ETag unchanged', async () => {
      const bytes = randomBytes(1000);
      const url = `${sim.addresses.http}/api/firmware?productId=${PRODUCT}&version=1.0.0`;
      assert.equal((await httpRequest(url, { method: 'POST', body: bytes })).status, 201);
      const stored = await sim.console.getFirmware(PRODUCT, '1.0.0');
      const again = await httpRequest(url, { method: 'POST', body: bytes });
      assert.equal(again.status, 200);
      assert.deepEqual(JSON.parse(again.body.toString('utf8')), {
        productId: PRODUCT,
        version: '1.0.0',
        md5sum: md5Of(bytes),
        file_size: 1000,
        sha256: sha256Of(bytes),
        outcome: 'unchanged',
      });
      assert.equal((await sim.console.getFirmware(PRODUCT, '1.0.0')).etag, stored.etag);
    });

    it('replaces an uploaded version with ?replace=true, serving the new bytes under a new ETag', async () => {
      await sim.console.uploadFirmware(PRODUCT, '1.0.0', randomBytes(1000));
      const before = await sim.console.getFirmware(PRODUCT, '1.0.0');
      const replacement = randomBytes(2000);
      const answer = await httpRequest(`${sim.addresses.http}/api/firmware?productId=${PRODUCT}&version=1.0.0&replace=true`, { method: 'POST', body: replacement });
      assert.equal(answer.status, 200);
      assert.deepEqual(JSON.parse(answer.body.toString('utf8')), {
        productId: PRODUCT,
        version: '1.0.0',
        md5sum: md5Of(replacement),
        file_size: 2000,
        sha256: sha256Of(replacement),
        outcome: 'replaced',
      });
      const after = await sim.console.getFirmware(PRODUCT, '1.0.0');
      assert.notEqual(after.etag, before.etag);
      const served = await httpRequest(sim.simulator.firmwareServer.signedUrl(PRODUCT, '1.0.0', { scheme: 'http' }));
      assert.deepEqual(served.body, replacement);
      const again = await sim.console.uploadFirmware(PRODUCT, '1.0.0', randomBytes(10), { replace: true });
      assert.deepEqual([again.outcome, again.file_size], ['replaced', 10]);
      const badFlag = await httpRequest(`${sim.addresses.http}/api/firmware?productId=${PRODUCT}&version=1.0.0&replace=yes`, { method: 'POST', body: 'x' });
      assert.equal(badFlag.status, 400);
    });

    it('refuses an upload with a bad version or without its query parameters', async () => {
      await rejectsWith(sim.console.uploadFirmware(PRODUCT, 'v 1', randomBytes(10)), 400, /characters outside/);
      const missing = await httpRequest(`${sim.addresses.http}/api/firmware?productId=${PRODUCT}`, { method: 'POST', body: 'abc' });
      assert.equal(missing.status, 400);
      assert.match(JSON.parse(missing.body.toString()).error, /version query parameter/);
    });

    it('shows a firmware with its served statistics, and 404 for an unknown one', async () => {
      const bytes = randomBytes(2000);
      await sim.uploadFirmware(PRODUCT, '1.0.0', bytes);
      await httpRequest(sim.simulator.firmwareServer.signedUrl(PRODUCT, '1.0.0', { scheme: 'http' }), { headers: { Range: 'bytes=0-99' } });
      const record = await sim.console.getFirmware(PRODUCT, '1.0.0');
      assert.deepEqual([record.md5sum, record.file_size], [md5Of(bytes), 2000]);
      assert.equal(record.served.totalBytes, 100);
      assert.deepEqual(
        record.served.requests.map((request) => [request.method, request.range, request.status, request.bytes]),
        [['GET', 'bytes=0-99', 206, 100]],
      );
      await rejectsWith(sim.console.getFirmware(PRODUCT, '9.9.9'), 404, /no firmware 9\.9\.9/);
    });

    it('deletes a firmware so that its URL answers 404, and 404 for deleting it again', async () => {
      await sim.uploadFirmware(PRODUCT, '1.0.0', randomBytes(100));
      const url = sim.simulator.firmwareServer.signedUrl(PRODUCT, '1.0.0', { scheme: 'http' });
      await sim.console.deleteFirmware(PRODUCT, '1.0.0');
      assert.equal((await httpRequest(url)).status, 404);
      await rejectsWith(sim.console.getFirmware(PRODUCT, '1.0.0'), 404, /no firmware/);
      await rejectsWith(sim.console.deleteFirmware(PRODUCT, '1.0.0'), 404, /no firmware/);
    });

    it('replaces and clears the fault knobs, refusing unknown knobs and unknown firmware', async () => {
      const bytes = randomBytes(10000);
      await sim.uploadFirmware(PRODUCT, '1.0.0', bytes);
      const set = await sim.console.setFirmwareFaults(PRODUCT, '1.0.0', { closeAfterBytes: 1234, ignoreRange: true });
      assert.deepEqual(set.faults, { closeAfterBytes: 1234, closeAfterResponses: 1, ignoreRange: true });
      const url = sim.simulator.firmwareServer.signedUrl(PRODUCT, '1.0.0', { scheme: 'http' });
      const cut = await httpRequest(url, { headers: { Range: 'bytes=10-' } });
      assert.deepEqual([cut.status, cut.body.length, cut.complete], [200, 1234, false]);
      const cleared = await sim.console.setFirmwareFaults(PRODUCT, '1.0.0', {});
      assert.deepEqual(cleared.faults, {});
      assert.equal((await httpRequest(url, { headers: { Range: 'bytes=10-' } })).status, 206);
      await rejectsWith(sim.console.setFirmwareFaults(PRODUCT, '1.0.0', { stallAfterBytes: -3 }), 400, /stallAfterBytes/);
      await rejectsWith(sim.console.setFirmwareFaults(PRODUCT, '9.9.9', {}), 404, /no firmware/);
    });
  });

  describe('updates and tasks', () => {
    beforeEach(async () => {
      await sim.createDevice(PRODUCT, 'dev1');
      await sim.uploadFirmware(PRODUCT, '2.0.0', randomBytes(1000));
    });

    it('starts an update and shows its task with per-device status', async () => {
      const created = await api(sim, 'POST', '/api/updates', JSON.stringify({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev1'] }));
      assert.equal(created.status, 201);
      const taskId = String(created.json.taskId);
      const task = await sim.console.getTask(taskId);
      assert.deepEqual([task.productId, task.version, task.timeoutSeconds, task.urlScheme, task.urlTtlSeconds], [PRODUCT, '2.0.0', 900, 'https', 86400]);
      assert.deepEqual(
        task.devices.map((device) => [device.deviceName, device.state, device.deliveries]),
        [['dev1', 'pending', 0]],
      );
      assert.deepEqual(
        (await sim.console.listTasks(PRODUCT)).map((listed) => listed.taskId),
        [taskId],
      );
    });

    it('refuses updates of unknown firmware or devices and bad task knobs', async () => {
      await rejectsWith(sim.console.startUpdate({ productId: PRODUCT, version: '9.9.9' }), 404, /no firmware 9\.9\.9/);
      await rejectsWith(sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['ghost'] }), 404, /ghost does not exist/);
      await rejectsWith(sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', timeoutSeconds: 0 }), 400, /timeoutSeconds/);
      await rejectsWith(sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', timeoutSeconds: 3601 }), 400, /timeoutSeconds/);
      const badScheme = await api(sim, 'POST', '/api/updates', JSON.stringify({ productId: PRODUCT, version: '2.0.0', urlScheme: 'ftp' }));
      assert.deepEqual([badScheme.status, badScheme.json.error], [400, 'urlScheme must be "https" or "http"']);
      const badVersions = await api(sim, 'POST', '/api/updates', JSON.stringify({ productId: PRODUCT, version: '2.0.0', sourceVersions: [] }));
      assert.equal(badVersions.status, 400);
    });

    it('answers 404 for an unknown task', async () => {
      await rejectsWith(sim.console.getTask('12345'), 404, /no task 12345/);
    });
  });

  describe('routing', () => {
    it('answers 404 with a JSON error for an unknown route and 405 for a wrong method', async () => {
      const unknown = await api(sim, 'GET', '/api/nothing');
      assert.deepEqual([unknown.status, unknown.json.error], [404, 'no route /api/nothing']);
      const wrongMethod = await api(sim, 'DELETE', '/api/devices');
      assert.equal(wrongMethod.status, 405);
    });

    it('binds to the loopback address by default', () => {
      assert.equal(sim.addresses.host, '127.0.0.1');
      assert.match(sim.addresses.console, /^http:\/\/127\.0\.0\.1:\d+\/api$/);
    });
  });
});

describe('IotHubSimulator', () => {
  let dataDir: string;

  beforeEach(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'iot-hub-sim-restart-'));
  });

  afterEach(async () => {
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  it('starts again over the same data dir and ports with its devices and firmware', async () => {
    const first = await startSimulator({ dataDir });
    try {
      await first.createDevice(PRODUCT, 'dev1');
      await first.uploadFirmware(PRODUCT, '1.0.0', randomBytes(100));
      const ports = first.addresses.ports;
      await first.restart();
      assert.deepEqual(first.addresses.ports, ports);
      assert.equal((await first.console.getDevice(PRODUCT, 'dev1')).deviceName, 'dev1');
      assert.equal((await first.console.getFirmware(PRODUCT, '1.0.0')).file_size, 100);
      const device = await first.connectDevice(PRODUCT, 'dev1');
      await device.reportVersion('1.0.0');
      await device.nextMessage('report_version_rsp');
    } finally {
      await first.close();
    }
  });
});
