/**
 * The console's push channel, GET /api/events, read as a browser's EventSource reads it: the events
 * of a device coming online and reporting, of tasks and their statuses, of firmware; heartbeats; and
 * a connection that closes is forgotten.
 */
import { strict as assert } from 'assert';
import { randomBytes } from 'crypto';
import * as http from 'http';
import type { AddressInfo } from 'net';
import { ConsoleEventStream } from '../../simulator/console-events';
import { httpRequest } from '../support/http-request';
import { startSimulator, type SimulatorFixture } from '../support/simulator-fixture';

const PRODUCT = 'EVENTSPROD';

interface ServerSentEvent {
  event: string;
  data: Record<string, unknown>;
}

/** One open text/event-stream response, split into events and comments as they arrive. */
class EventStreamReader {
  readonly events: ServerSentEvent[] = [];
  readonly comments: string[] = [];
  ended = false;
  private buffer = '';
  private waiters: (() => void)[] = [];

  private constructor(
    readonly request: http.ClientRequest,
    readonly response: http.IncomingMessage,
  ) {
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => {
      this.buffer += chunk;
      let end: number;
      while ((end = this.buffer.indexOf('\n\n')) >= 0) {
        this.parse(this.buffer.slice(0, end));
        this.buffer = this.buffer.slice(end + 2);
      }
      this.wake();
    });
    response.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  static open(url: string): Promise<EventStreamReader> {
    return new Promise((resolve, reject) => {
      const request = http.get(url, { agent: false, headers: { Accept: 'text/event-stream' } }, (response) => resolve(new EventStreamReader(request, response)));
      request.on('error', reject);
    });
  }

  private parse(block: string): void {
    let event = 'message';
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) this.comments.push(line.slice(1).trim());
      else if (line.startsWith('event: ')) event = line.slice('event: '.length);
      else if (line.startsWith('data: ')) data.push(line.slice('data: '.length));
    }
    if (data.length > 0) this.events.push({ event, data: JSON.parse(data.join('\n')) as Record<string, unknown> });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Waits until `condition` holds for what has arrived. */
  async until<T>(condition: () => T | undefined, what: string, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = condition();
      if (found !== undefined) return found;
      if (this.ended) throw new Error(`the stream ended before ${what}; events: ${JSON.stringify(this.events)}`);
      if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms; events: ${JSON.stringify(this.events)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The first event of that name whose data matches, waiting for it if needed. */
  next(event: string, matches: (data: Record<string, unknown>) => boolean = () => true): Promise<Record<string, unknown>> {
    return this.until(() => this.events.find((candidate) => candidate.event === event && matches(candidate.data))?.data, `"${event}" event`);
  }

  close(): void {
    this.request.destroy();
  }
}

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('console push channel (GET /api/events)', () => {
  let sim: SimulatorFixture;
  let stream: EventStreamReader | undefined;

  beforeEach(async () => {
    sim = await startSimulator();
  });

  afterEach(async () => {
    stream?.close();
    stream = undefined;
    await sim.close();
  });

  it('is a text/event-stream that tells a device coming online, its report with time and QoS, and its going offline', async () => {
    await sim.createDevice(PRODUCT, 'dev1');
    stream = await EventStreamReader.open(`${sim.addresses.console}/events`);
    assert.equal(stream.response.statusCode, 200);
    assert.match(String(stream.response.headers['content-type']), /^text\/event-stream/);
    assert.equal(stream.response.headers['cache-control'], 'no-store');

    const device = await sim.connectDevice(PRODUCT, 'dev1', { transport: 'mqtt' });
    assert.deepEqual(await stream.next('device'), { productId: PRODUCT, deviceName: 'dev1', online: true });
    await device.reportVersion('1.0.0');
    const report = await stream.next('report');
    assert.equal(report.productId, PRODUCT);
    assert.equal(report.deviceName, 'dev1');
    const entry = report.entry as Record<string, unknown>;
    assert.deepEqual([entry.type, entry.version, entry.qos], ['report_version', '1.0.0', 1]);
    assert.ok(Math.abs(Date.parse(String(entry.time)) - Date.now()) < 10_000, `a report time: ${String(entry.time)}`);

    await device.close();
    assert.deepEqual(await stream.next('device', (data) => data.online === false), { productId: PRODUCT, deviceName: 'dev1', online: false });
  });

  it('tells a created device without its secret, firmware uploaded, changed, served and removed, and a task with its statuses', async () => {
    stream = await EventStreamReader.open(`${sim.addresses.console}/events`);
    const created = await sim.createDevice(PRODUCT, 'dev2');
    const announced = await stream.next('device-created');
    assert.deepEqual([announced.productId, announced.deviceName, announced.authMode, announced.deviceType], [PRODUCT, 'dev2', 'key', 'device']);
    assert.ok(created.deviceSecret);
    assert.ok(!JSON.stringify(stream.events).includes(created.deviceSecret), 'the secret is not pushed');

    const bytes = randomBytes(64 * 1024);
    const uploaded = await sim.uploadFirmware(PRODUCT, '2.0.0', bytes);
    const firmware = await stream.next('firmware');
    assert.deepEqual([firmware.version, firmware.md5sum, firmware.file_size], ['2.0.0', uploaded.md5sum, bytes.length]);
    assert.deepEqual(firmware.served, { totalBytes: 0, requestCount: 0 });
    await sim.console.setFirmwareFaults(PRODUCT, '2.0.0', { ignoreRange: true });
    assert.deepEqual((await stream.next('firmware', (data) => Object.keys(data.faults as object).length > 0)).faults, { ignoreRange: true });

    const device = await sim.connectDevice(PRODUCT, 'dev2', { transport: 'mqtt' });
    await device.reportVersion('1.0.0');
    const task = await sim.console.startUpdate({ productId: PRODUCT, version: '2.0.0', deviceNames: ['dev2'] });
    const taskEvent = await stream.next('task');
    assert.equal(taskEvent.taskId, task.taskId);
    assert.deepEqual(
      (taskEvent.devices as Record<string, unknown>[]).map((status) => [status.deviceName, status.state]),
      [['dev2', 'pending']],
    );
    const delivered = await stream.next('status', (data) => (data.status as Record<string, unknown>).state === 'delivered');
    assert.deepEqual([delivered.taskId, delivered.deviceName], [task.taskId, 'dev2']);

    const command = await device.nextMessage('update_firmware');
    const download = await httpRequest(String(command.url), { ca: sim.caPem, headers: { Range: 'bytes=1024-' } });
    assert.equal(download.status, 200, 'Range is ignored by the fault');
    const served = await stream.next('served');
    assert.deepEqual([served.version, served.totalBytes, served.requestCount], ['2.0.0', bytes.length, 1]);
    assert.deepEqual((({ range, status, bytes: count }) => ({ range, status, bytes: count }))(served.request as { range: string; status: number; bytes: number }), {
      range: 'bytes=1024-',
      status: 200,
      bytes: bytes.length,
    });

    await device.reportProgress('2.0.0', { state: 'downloading', percent: 50 });
    const downloading = await stream.next('status', (data) => (data.status as Record<string, unknown>).state === 'downloading');
    assert.equal((downloading.status as Record<string, unknown>).percent, 50);

    await sim.console.deleteFirmware(PRODUCT, '2.0.0');
    assert.deepEqual(await stream.next('firmware-removed'), { productId: PRODUCT, version: '2.0.0' });

    await sim.console.deleteDevice(PRODUCT, 'dev2');
    assert.deepEqual(await stream.next('device-removed'), { productId: PRODUCT, deviceName: 'dev2' });
  });

  it('refuses any method but GET', async () => {
    const answer = await httpRequest(`${sim.addresses.console}/events`, { method: 'POST' });
    assert.equal(answer.status, 405);
    assert.equal(answer.headers.allow, 'GET');
  });

  describe('its connections', () => {
    let server: http.Server;
    let events: ConsoleEventStream;
    let url: string;

    beforeEach(async () => {
      const simulator = sim.simulator;
      events = new ConsoleEventStream({
        broker: simulator.broker,
        registry: simulator.registry,
        otaService: simulator.otaService,
        firmwareStore: simulator.firmwareStore,
        heartbeatMs: 50,
      });
      server = http.createServer((request, response) => events.open(request, response));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/events`;
    });

    afterEach(async () => {
      events.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });

    it('carry a heartbeat comment while nothing happens', async () => {
      stream = await EventStreamReader.open(url);
      const reader = stream;
      await reader.until(() => (reader.comments.filter((comment) => comment === 'heartbeat').length >= 2 ? true : undefined), 'two heartbeats');
      assert.deepEqual(reader.events, []);
    });

    it('are forgotten as soon as the client closes them', async () => {
      const first = await EventStreamReader.open(url);
      const second = await EventStreamReader.open(url);
      await until(() => events.clientCount === 2, 'two clients');
      first.close();
      await until(() => events.clientCount === 1, 'the first client forgotten');
      await sim.createDevice(PRODUCT, 'dev3');
      await second.next('device-created');
      second.close();
      await until(() => events.clientCount === 0, 'every client forgotten');
    });

    it('end when the stand-in stops them', async () => {
      stream = await EventStreamReader.open(url);
      await until(() => events.clientCount === 1, 'a client');
      events.close();
      const reader = stream;
      await reader.until(() => (reader.ended ? true : undefined), 'the end of the stream');
      assert.equal(events.clientCount, 0);
    });
  });
});
